"""
The log as an auditor reads it: one stream of records per source.

``store`` reads the event store's notification log and chains each event's
hash exactly as the relay does (``infra.records.record_of``), so its records
equal what the relay produced. ``kafka`` reads the topic from the start of
every partition up to its end at the time of asking, without joining a
consumer group, so an audit never moves anyone's offsets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder

from infra.records import ChainHeads, LogRecord

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
STALL_SECONDS = 30.0


@dataclass(frozen=True)
class Logged:
    """
    A record as a source holds it, with the event id the source claims.

    The store's event id is always the derived one; a Kafka record carries its
    own, which a tampered copy may get wrong.
    """

    record: LogRecord
    event_id: UUID
    where: str


def store_size(recorder: ApplicationRecorder) -> int:
    return recorder.max_notification_id() or 0


def store_records(
    recorder: ApplicationRecorder,
    *,
    start: int = 1,
    stop: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Logged]:
    """
    The notification log from ``start`` to ``stop`` (inclusive), in order.
    """
    chains = ChainHeads(recorder)
    position = start
    while True:
        batch = recorder.select_notifications(
            start=position, limit=batch_size, stop=stop
        )
        for notification in batch:
            record = chains.record(notification)
            yield Logged(record, record.event_id, f"notification {notification.id}")
        if len(batch) < batch_size:
            return
        position = batch[-1].id + 1


class KafkaReader:
    """
    Reads every partition of a topic from its start, outside any group.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._topic = topic
        self._consumer: Consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                # Needed by the client, never used: nothing subscribes or commits.
                "group.id": "duetto-audit",
                "enable.auto.commit": False,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=15).topics[topic]
        self._ends: dict[int, int] = {}
        self.size = 0
        starts = []
        for partition in metadata.partitions:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=15
            )
            if high > low:
                self._ends[partition] = high
                self.size += high - low
                starts.append(TopicPartition(topic, partition, low))
        self._consumer.assign(starts)

    def records(self, *, batch_size: int = BATCH_SIZE) -> Iterator[Logged]:
        """
        Every record up to the ends the topic had when this reader was made.
        """
        remaining = set(self._ends)
        last_progress = time.monotonic()
        while remaining:
            messages = self._consumer.consume(num_messages=batch_size, timeout=1.0)
            if messages:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_SECONDS:
                msg = f"kafka gave no records of {self._topic} for {STALL_SECONDS}s"
                raise TimeoutError(msg)
            for message in messages:
                logged = self._logged(message, remaining)
                if logged is not None:
                    yield logged

    def _logged(self, message: Message, remaining: set[int]) -> Logged | None:
        error = message.error()
        if error is not None:
            raise RuntimeError(f"kafka error reading {self._topic}: {error}")
        partition, offset, value = (
            message.partition(),
            message.offset(),
            message.value(),
        )
        if partition is None or offset is None or value is None:
            return None  # Only records carry a place and a value.
        if offset + 1 >= self._ends[partition]:
            remaining.discard(partition)
        if offset >= self._ends[partition]:
            return None  # Written after the audit began: not part of it.
        claimed = UUID(json.loads(value)["event_id"])
        where = f"partition {partition} offset {offset}"
        return Logged(LogRecord.from_json(value), claimed, where)

    def close(self) -> None:
        self._consumer.close()
