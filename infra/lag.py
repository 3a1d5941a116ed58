"""
How far the scaled profile's log readers trail the event store.

The relay's lag is notifications not yet on Kafka; a consumer group's lag is
records on the topic past the group's committed offsets. Neither reading
joins a group or moves anything.
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaException, TopicPartition

from infra.kafka import LogUnavailableError
from infra.relay import RELAY_NAME, PositionStore

QUERY_TIMEOUT = 5.0


def relay_lag(head: int, positions: PositionStore) -> int:
    """
    Notifications recorded but not yet acknowledged by Kafka.
    """
    return max(0, head - positions.get(RELAY_NAME))


class GroupLag:
    """
    Reads one consumer group's committed offsets against the topic's ends.
    """

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self._topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
            }
        )

    def records_behind(self) -> int:
        return sum(max(0, end - done) for done, end in self.offsets().values())

    def offsets(self) -> dict[int, tuple[int, int]]:
        """
        Per partition: the group's committed offset and the topic's end.
        """
        try:
            partitions = self._partitions()
            committed = self._consumer.committed(partitions, timeout=QUERY_TIMEOUT)
            places = {}
            for place in committed:
                low, end = self._consumer.get_watermark_offsets(
                    place, timeout=QUERY_TIMEOUT
                )
                # Nothing committed yet: the group starts from the beginning.
                done = place.offset if place.offset >= 0 else low
                places[place.partition] = (done, end)
            return places
        except KafkaException as e:
            raise LogUnavailableError(f"cannot read lag of {self._topic}: {e}") from e

    def close(self) -> None:
        self._consumer.close()

    def _partitions(self) -> list[TopicPartition]:
        metadata = self._consumer.list_topics(self._topic, timeout=QUERY_TIMEOUT)
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            return []
        return [TopicPartition(self._topic, number) for number in topic.partitions]
