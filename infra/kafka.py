"""
Kafka at the edge: the log's topic, an exact producer, and a batch consumer.

confluent-kafka errors are translated here into ``LogUnavailableError``, so
callers decide about positions and retries without knowing the driver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from infra.records import LogRecord

logger = logging.getLogger(__name__)

TOPIC_CONFIG = {
    # The log is the audit trail and the source of every rebuild: keep it all.
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
}


class LogUnavailableError(Exception):
    """
    Kafka did not take or give records in time; nothing was committed.
    """


def ensure_topic(bootstrap: str, topic: str, *, partitions: int) -> None:
    """
    Create the log's topic, keyed by conversation, if it does not exist yet.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        metadata = admin.list_topics(timeout=15)
        if topic in metadata.topics:
            return
        new = NewTopic(topic, num_partitions=partitions, config=TOPIC_CONFIG)
        for future in admin.create_topics([new]).values():
            future.result(timeout=30)
        logger.info("created topic %s with %s partitions", topic, partitions)
    except KafkaException as e:
        if e.args and e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise LogUnavailableError(f"cannot create topic {topic}: {e}") from e


@dataclass
class _Deliveries:
    """
    Which records of one flush Kafka has acknowledged.
    """

    acked: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)

    def callback(
        self, notification_id: int
    ) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is None:
                self.acked.add(notification_id)
            else:
                self.failed[notification_id] = str(error)

        return delivered


class LogProducer:
    """
    Writes records with the idempotent producer and says which were acked.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "compression.type": "lz4",
                # Keep retrying through a broker outage; the relay waits.
                "delivery.timeout.ms": 300_000,
            }
        )

    def publish(self, records: Sequence[LogRecord], *, timeout: float) -> int:
        """
        Produce ``records`` in order; return how many from the start were acked.

        Only that acknowledged prefix may be counted as relayed.
        """
        deliveries = _Deliveries()
        for record in records:
            self._produce(record, deliveries)
        self._producer.flush(timeout)
        acked = 0
        for record in records:
            if record.notification_id not in deliveries.acked:
                break
            acked += 1
        for notification_id, reason in deliveries.failed.items():
            logger.warning("notification %s not acked: %s", notification_id, reason)
        return acked

    def _produce(self, record: LogRecord, deliveries: _Deliveries) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=record.key,
                    value=record.to_json(),
                    on_delivery=deliveries.callback(record.notification_id),
                )
                return
            except BufferError:
                self._producer.poll(0.1)  # The local queue is full: let it drain.

    def close(self, timeout: float) -> int:
        """
        Flush with a bounded wait; return how many records were still unsent.
        """
        return int(self._producer.flush(timeout))


@dataclass(frozen=True)
class Consumed:
    """
    A record together with where it sits in the topic.
    """

    partition: int
    offset: int
    record: LogRecord


ConsumedBatch = list[Consumed]


class LogConsumer:
    """
    Reads the log as one member of a consumer group, committing only by hand.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        start_at: str = "earliest",
        on_assign: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": start_at,
                "enable.partition.eof": False,
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                "max.poll.interval.ms": 300_000,
            }
        )
        self._topic = topic
        self._on_assign = on_assign
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked
        )

    def poll(self, *, max_records: int, timeout: float) -> ConsumedBatch:
        try:
            messages = self._wait_for_records(max_records, timeout)
        except KafkaException as e:
            raise LogUnavailableError(str(e)) from e
        batch: ConsumedBatch = []
        for message in messages:
            value, partition, offset = (
                message.value(),
                message.partition(),
                message.offset(),
            )
            if message.error() is not None or value is None:
                logger.warning("consume error: %s", message.error())
                continue
            if partition is None or offset is None:
                continue  # Only records carry a place, and only they are wanted.
            batch.append(Consumed(partition, offset, LogRecord.from_json(value)))
        return batch

    def _wait_for_records(self, max_records: int, timeout: float) -> list[Message]:
        # consume() waits out its whole timeout unless max_records arrive, so
        # wait for the first record alone, then take whatever else is ready.
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        more = self._consumer.consume(num_messages=max_records - 1, timeout=0)
        return [first, *more]

    def commit(self, batch: ConsumedBatch) -> None:
        """
        Commit past the last record of each partition in ``batch``.
        """
        offsets: dict[int, int] = {}
        for item in batch:
            offsets[item.partition] = max(offsets.get(item.partition, -1), item.offset)
        partitions = [
            TopicPartition(self._topic, partition, offset + 1)
            for partition, offset in offsets.items()
        ]
        try:
            self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as e:
            raise LogUnavailableError(f"commit failed: {e}") from e

    def rewind(self, batch: ConsumedBatch) -> None:
        """
        Seek back to the first record of each partition in ``batch``, to retry.
        """
        first: dict[int, int] = {}
        for item in batch:
            first[item.partition] = min(
                first.get(item.partition, item.offset), item.offset
            )
        for partition, offset in first.items():
            self._consumer.seek(TopicPartition(self._topic, partition, offset))

    def assigned(self) -> list[int]:
        """
        The partitions this member holds now.
        """
        return [p.partition for p in self._consumer.assignment()]

    def seek_to(self, offsets: dict[int, int]) -> None:
        """
        Read each held partition in ``offsets`` from the offset given there.
        """
        held = set(self.assigned())
        for partition, offset in offsets.items():
            if partition in held:
                self._consumer.seek(TopicPartition(self._topic, partition, offset))

    def close(self) -> None:
        self._consumer.close()

    def _assigned(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [p.partition for p in partitions]
        logger.info("assigned partitions %s", numbers)
        if self._on_assign is not None:
            self._on_assign(numbers)

    def _revoked(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("revoked partitions %s", [p.partition for p in partitions])


def wait_for_broker(bootstrap: str, *, timeout: float) -> None:
    """
    Block until the broker answers a metadata request, or raise.
    """
    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while True:
        try:
            admin.list_topics(timeout=2)
            return
        except KafkaException as e:
            if time.monotonic() > deadline:
                raise LogUnavailableError(f"no broker at {bootstrap}") from e
