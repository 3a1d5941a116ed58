"""
The scaled profile's history versions: Cassandra keyspaces fed from Kafka.

A rebuild reads the topic from the start of every partition, outside any
consumer group, into a fresh keyspace ``<keyspace>_vN``. With each batch it
stores, in the new keyspace, the next offset of every partition it read
(projector ``history@<partition>``): a killed rebuild resumes there, and
after the switch the live projectors seek their partitions there, so what
they had applied only to the old version since is applied again to the new.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from cassandra.cluster import Cluster
from confluent_kafka import Consumer, TopicPartition

from commands.service import ChatService
from infra.cassandra.catalog import CassandraCatalog, keyspace_of
from infra.cassandra.cluster import build_cluster
from infra.cassandra.errors import translated
from infra.cassandra.migrate import drop_keyspace, migrate
from infra.cassandra.store import CassandraHistory
from infra.catalog import REFRESH_SECONDS, SwitchableHistory, SwitchableStore
from infra.deadletters import decode_logged, encoder
from infra.kafka import Consumed, LogConsumer
from infra.readmodels.status import (
    ReaderStatus,
    RebuildStatus,
    Status,
    parked_status,
)
from infra.records import LogRecord, event_mapper
from infra.settings import Settings
from projections.deadletter import ParkingProjector
from projections.ports import LoggedEvent

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000
# Large single-partition batches: far fewer round trips for a rebuild.
REBUILD_BATCH_LIMITS = (400, 40_000)
DROP_GRACE_SECONDS = 2 * REFRESH_SECONDS + 1
HEAD_EVERY_SECONDS = 1.0
KAFKA_TIMEOUT = 15.0


def offset_name(partition: int) -> str:
    return f"history@{partition}"


class CassandraVersions:
    """
    One driver session and the history keyspace of each version.
    """

    def __init__(self, settings: Settings) -> None:
        self.base = settings.cassandra_keyspace
        self._cluster: Cluster = build_cluster(settings)
        with translated(f"connect to Cassandra at {settings.cassandra_hosts}"):
            self.session = self._cluster.connect()
        self.catalog = CassandraCatalog(self.session, self.base)

    def open(self, version: int, **options: Any) -> CassandraHistory:
        """
        The history of ``version``, its keyspace created and migrated if new.
        """
        keyspace = keyspace_of(self.base, version)
        migrate(self.session, keyspace)
        return CassandraHistory(self.session, keyspace, **options)

    def drop(self, version: int) -> None:
        drop_keyspace(self.session, keyspace_of(self.base, version))

    def close(self) -> None:
        self._cluster.shutdown()


class TopicReader:
    """
    Reads every partition of the topic from given offsets, outside any group.
    """

    def __init__(
        self,
        settings: Settings,
        starts: Callable[[int], int],
        *,
        batch_size: int,
        share: tuple[int, int] = (0, 1),
    ) -> None:
        topic = settings.kafka_topic
        self._topic, self._batch_size = topic, batch_size
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                # Needed by the client, never used: nothing subscribes or commits.
                "group.id": f"{settings.kafka_group_prefix}-rebuild",
                "enable.auto.commit": False,
                # An empty fetch returns soon, so the last records come soon.
                "fetch.wait.max.ms": 100,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=KAFKA_TIMEOUT)
        index, count = share
        numbers = [p for p in metadata.topics[topic].partitions if p % count == index]
        self._lows = {p: self._watermarks(p)[0] for p in numbers}
        self.next = {p: max(self._lows[p], starts(p)) for p in numbers}
        self._ends = {p: self._watermarks(p)[1] for p in numbers}
        self._ends_read = time.monotonic()
        self._consumer.assign(
            [TopicPartition(topic, p, offset) for p, offset in self.next.items()]
        )

    def done(self) -> int:
        return sum(self.next[p] - self._lows[p] for p in self.next)

    def head(self) -> int:
        if time.monotonic() - self._ends_read >= HEAD_EVERY_SECONDS:
            self._read_ends()
        return sum(self._ends[p] - self._lows[p] for p in self._ends)

    def read(self) -> list[Consumed]:
        """
        The next records; none once every partition is read to its end.
        """
        while not self._caught_up():
            # consume() waits out its whole timeout unless the batch fills:
            # wait for one record, then take whatever else has arrived.
            first = self._consumer.poll(0.5)
            if first is None:
                continue
            more = self._consumer.consume(self._batch_size - 1, timeout=0)
            batch = [item for m in [first, *more] if (item := self._consumed(m))]
            if batch:
                return batch
        return []

    def close(self) -> None:
        self._consumer.close()

    def _caught_up(self) -> bool:
        if any(self.next[p] < self._ends[p] for p in self.next):
            return False
        self._read_ends()
        return all(self.next[p] >= self._ends[p] for p in self.next)

    def _read_ends(self) -> None:
        self._ends = {p: self._watermarks(p, cached=True)[1] for p in self.next}
        self._ends_read = time.monotonic()

    def _watermarks(self, partition: int, *, cached: bool = False) -> tuple[int, int]:
        """
        A partition's first and end offsets. Asking the broker waits behind
        the consumer's fetches; the end each fetch brings back (``cached``)
        is at most one fetch old, and a switch never depends on it alone:
        the live projectors go on from the new version's stored offsets.
        """
        place = TopicPartition(self._topic, partition)
        if cached:
            low, high = self._consumer.get_watermark_offsets(place, cached=True)
            if high >= 0:
                return int(low), int(high)
        low, high = self._consumer.get_watermark_offsets(place, timeout=KAFKA_TIMEOUT)
        return int(low), int(high)

    def _consumed(self, message: Any) -> Consumed | None:
        if message.error() is not None:
            raise RuntimeError(f"kafka error reading {self._topic}: {message.error()}")
        partition, offset, value = (
            message.partition(),
            message.offset(),
            message.value(),
        )
        if partition is None or offset is None or value is None:
            return None
        self.next[partition] = offset + 1
        return Consumed(partition, offset, LogRecord.from_json(value))


class ScaledRebuild:
    """
    A rebuild of Cassandra history from the Kafka topic into a new keyspace.
    """

    name = "history"

    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int = BATCH_SIZE,
        share: tuple[int, int] = (0, 1),
        version: int | None = None,
    ) -> None:
        """
        ``share`` (index, count) limits the rebuild to the partitions whose
        number is ``index`` modulo ``count``, for one of ``count`` workers;
        ``version`` names the version to build, by default the one in
        progress or the next one.
        """
        self._versions = CassandraVersions(settings)
        self._catalog = self._versions.catalog
        entry = self._catalog.entry(self.name)
        self.old_version = entry.current
        self.version = (
            version
            or entry.building
            or 1 + max([entry.current, *self._catalog.versions(self._versions.base)])
        )
        # Migrated before it is named: whoever then opens it (status, the
        # live projectors after the switch) runs no schema change beside it.
        self.store = self._versions.open(self.version, batch=REBUILD_BATCH_LIMITS)
        self._catalog.start_rebuild(self.name, self.version)
        self._mapper = event_mapper()
        self._projector = ParkingProjector(
            self.store, self.store.letters, encoder(self._mapper), name=self.name
        )
        self._reader = TopicReader(
            settings,
            lambda p: self.store.position(offset_name(p)),
            batch_size=batch_size,
            share=share,
        )

    def done(self) -> int:
        return self._reader.done()

    def head(self) -> int:
        return self._reader.head()

    def step(self) -> int:
        batch = self._reader.read()
        if not batch:
            return 0
        # Notification ids rise within a partition, so sorting by them keeps
        # each conversation's order and ends on the highest id of the batch.
        ordered = sorted(batch, key=lambda item: item.record.notification_id)
        self._projector.handle([self._logged(item) for item in ordered])
        nexts: dict[int, int] = {}
        for item in batch:
            nexts[item.partition] = max(nexts.get(item.partition, 0), item.offset + 1)
        for partition, offset in nexts.items():
            self.store.apply([], projector=offset_name(partition), position=offset)
        return len(batch)

    def switch(self) -> None:
        self._catalog.switch(self.name, self.version)

    def drop_old(self, *, grace_seconds: float = DROP_GRACE_SECONDS) -> None:
        time.sleep(grace_seconds)
        self._versions.drop(self.old_version)

    def close(self) -> None:
        self._reader.close()
        self._versions.close()

    def _logged(self, item: Consumed) -> LoggedEvent:
        return LoggedEvent(
            item.record.notification_id, decode_logged(item.record, self._mapper)
        )


class SwitchFollower:
    """
    Run before each poll of ``duetto project history``: follow a switch.

    After a switch the projector seeks each of its partitions to the offset
    the rebuild stored in the new version, and goes on from there.
    """

    def __init__(
        self,
        writes: SwitchableStore,
        consumer: LogConsumer,
        *,
        every_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._writes, self._consumer = writes, consumer
        self._every = every_seconds
        self._checked = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self._checked < self._every:
            return
        self._checked = time.monotonic()
        if not self._writes.switched():
            return
        offsets = {
            p: self._writes.position(offset_name(p)) for p in self._consumer.assigned()
        }
        self._consumer.seek_to(offsets)
        logger.info(
            "history switched to v%s; partitions sought to %s",
            self._writes.version,
            offsets,
        )


def open_scaled_history(
    settings: Settings,
) -> tuple[SwitchableHistory, CassandraVersions]:
    """
    History queries following the catalog, and the versions to close last.
    """
    versions = CassandraVersions(settings)
    return SwitchableHistory(versions.catalog, versions.open), versions


def live_store(versions: CassandraVersions) -> SwitchableStore:
    """
    The live projector's store: the current version, following switches.
    """
    return SwitchableStore(versions.catalog, versions.open)


def live_projector(writes: SwitchableStore) -> ParkingProjector:
    return ParkingProjector(writes, writes, encoder(event_mapper()))


def current_history(settings: Settings) -> CassandraHistory:
    """
    The version serving reads now, owning its own cluster, for ``dlq``.
    """
    versions = CassandraVersions(settings)
    version = versions.catalog.entry("history").current
    return versions.open(version, owns_cluster=True)


def scaled_status(settings: Settings, chat: ChatService) -> Status:
    """
    Relay, history in Cassandra, both consumer groups, rebuild, dead letters.
    """
    head = chat.recorder.max_notification_id() or 0
    versions = CassandraVersions(settings)
    try:
        entry = versions.catalog.entry("history")
        status = Status("scaled", head, entry.current)
        status.readers.append(_relay_status(settings, head))
        current = versions.open(entry.current)
        status.readers.append(
            ReaderStatus("history", current.position("history"), head)
        )
        status.parked = parked_status(current.letters.parked("history"), head)
        if entry.building is not None:
            position = versions.open(entry.building).position("history")
            status.rebuild = RebuildStatus("history", entry.building, position, head)
    finally:
        versions.close()
    status.readers.extend(_group_status(settings))
    return status


def _relay_status(settings: Settings, head: int) -> ReaderStatus:
    from infra.positions import PostgresPositions
    from infra.relay import RELAY_NAME

    positions = PostgresPositions(
        settings.postgres_dsn, schema=settings.postgres_schema
    )
    try:
        return ReaderStatus("relay", positions.get(RELAY_NAME), head)
    finally:
        positions.close()


def _group_status(settings: Settings) -> list[ReaderStatus]:
    from infra.bootstrap import history_group, presence_group
    from infra.lag import GroupLag

    readers = []
    for name, group in (
        ("history group", history_group(settings)),
        ("presence group", presence_group(settings)),
    ):
        lag = GroupLag(settings.kafka_bootstrap, settings.kafka_topic, group)
        try:
            places = lag.offsets().values()
        finally:
            lag.close()
        done = sum(committed for committed, _ in places)
        end = sum(end for _, end in places)
        readers.append(ReaderStatus(name, done, end, unit="records"))
    return readers
