"""
Rebuilding Cassandra history from the Kafka topic (issue 5, cases 3 and 4).

A workload is recorded in PostgreSQL, relayed to a private topic, and
projected live by ``duetto project history``'s own parts into keyspace v0.
A rebuild into v1 must equal v0 row for row while a reader keeps reading;
the live projector must follow the switch without losing what comes after;
and a rebuild killed with SIGKILL halfway must resume and still be equal.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from commands.service import ChatService
from infra.bootstrap import build_projector, chat_service
from infra.catalog import SwitchableHistory
from infra.kafka import LogProducer, ensure_topic
from infra.local.servers import CassandraServer
from infra.positions import PostgresPositions
from infra.readmodels.parallel import ParallelRebuild
from infra.readmodels.rebuild import run_rebuild
from infra.readmodels.scaled import CassandraVersions, ScaledRebuild
from infra.relay import Relay
from infra.settings import Settings
from tests.integration.conftest import settings_from
from tests.integration.processes import DuettoProcess, wait_until
from tests.snapshots import Workload, record_workload, snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def env(
    scaled_env: dict[str, str], cassandra_server: CassandraServer
) -> dict[str, str]:
    return {
        **scaled_env,
        "DUETTO_CASSANDRA_PORT": str(cassandra_server.port),
        "DUETTO_CASSANDRA_KEYSPACE": f"rb_{uuid.uuid4().hex[:10]}",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return settings_from(env)


@pytest.fixture
def versions(settings: Settings) -> Iterator[Versions]:
    """
    The test's view of every history version; all of them dropped at the end.
    """
    opened = Versions(CassandraVersions(settings))
    yield opened
    for version in range(4):
        opened.versions.drop(version)
    base = settings.cassandra_keyspace
    opened.versions.session.execute(f"DROP KEYSPACE IF EXISTS {base}_catalog")
    opened.versions.close()


class Versions:
    """
    Each version's history, opened once.
    """

    def __init__(self, versions: CassandraVersions) -> None:
        self.versions = versions
        self._opened: dict[int, Any] = {}

    def history(self, version: int) -> Any:
        if version not in self._opened:
            self._opened[version] = self.versions.open(version)
        return self._opened[version]

    def position(self, version: int) -> int:
        position: int = self.history(version).position("history")
        return position

    def building(self) -> int | None:
        return self.versions.catalog.entry("history").building

    def snapshot(self, version: int, workload: Workload) -> Any:
        return snapshot(self.history(version), workload)


@pytest.fixture
def chat(settings: Settings) -> Iterator[ChatService]:
    service = chat_service(settings)
    yield service
    service.close()


def relay_all(settings: Settings, chat: ChatService) -> None:
    ensure_topic(settings.kafka_bootstrap, settings.kafka_topic, partitions=4)
    positions = PostgresPositions(
        settings.postgres_dsn, schema=settings.postgres_schema
    )
    relay = Relay(
        chat.recorder,
        LogProducer(settings.kafka_bootstrap, settings.kafka_topic),
        positions,
    )
    while relay.position < relay.head():
        relay.relay_once()
    positions.close()


class LiveProjector:
    """
    ``duetto project history`` in a thread of the test.
    """

    def __init__(self, settings: Settings) -> None:
        self.process = build_projector(settings, "history")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.process.run, args=(self.stopping,))
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
        self.process.close()


def rebuild(settings: Settings, max_rate: float | None = None, **options: Any) -> int:
    job = ScaledRebuild(settings, **options)
    try:
        run_rebuild(job, keep_old=True, max_rate=max_rate)
    finally:
        job.close()
    return job.version


def test_rebuild_equals_live_while_reads_go_on_and_live_follows_the_switch(
    settings: Settings, chat: ChatService, versions: Versions
) -> None:
    workload = record_workload(chat, conversations=20, messages=10)
    relay_all(settings, chat)
    head = chat.recorder.max_notification_id() or 0
    live = LiveProjector(settings)
    try:
        wait_until(
            lambda: versions.position(0) == head,
            timeout=60,
            what="v0 at head",
        )
        expected = versions.snapshot(0, workload)

        # A reader polls all through the rebuild and the switch.
        readers = CassandraVersions(settings)
        reads = SwitchableHistory(readers.catalog, readers.open, refresh_seconds=0.05)
        seen: list[tuple[int, bool]] = []
        stop = threading.Event()

        def read_throughout() -> None:
            while not stop.is_set():
                seen.append((reads.version, snapshot(reads, workload) == expected))

        reader = threading.Thread(target=read_throughout)
        reader.start()
        version = rebuild(settings, batch_size=40, max_rate=200)
        wait_until(
            lambda: any(v == 1 for v, _ in seen), timeout=30, what="a read of v1"
        )
        stop.set()
        reader.join()
        readers.close()

        assert version == 1
        assert versions.snapshot(1, workload) == expected
        assert {v for v, _ in seen} == {0, 1}
        assert all(whole for _, whole in seen), "a read saw a half-built version"

        # Events after the switch reach v1 through the live projector alone.
        later = record_workload(chat, conversations=5, messages=6, prefix="late")
        relay_all(settings, chat)
        head = chat.recorder.max_notification_id() or 0
        wait_until(
            lambda: versions.position(1) == head,
            timeout=60,
            what="v1 at head",
        )
    finally:
        live.stop()
    assert rebuild(settings) == 2
    both = Workload(
        workload.conversations + later.conversations, workload.users + later.users
    )
    assert versions.snapshot(1, both) == versions.snapshot(2, both)


def test_a_rebuild_killed_halfway_resumes_and_equals_live(
    settings: Settings,
    chat: ChatService,
    versions: Versions,
    env: dict[str, str],
    tmp_path: Any,
) -> None:
    workload = record_workload(chat, conversations=30, messages=40)
    relay_all(settings, chat)
    head = chat.recorder.max_notification_id() or 0
    live = LiveProjector(settings)
    try:
        wait_until(
            lambda: versions.position(0) == head,
            timeout=90,
            what="v0 at head",
        )
    finally:
        live.stop()
    command = ["projections", "rebuild", "history", "--keep-old"]
    log = tmp_path / "rebuild.log"

    # Given a rebuild killed with SIGKILL a third of the way or more,
    # (v1 is only looked at once the rebuild named it, not to create it first)
    first = DuettoProcess(
        [*command, "--batch-size", "50", "--max-rate", "800"], env, log
    )
    wait_until(
        lambda: versions.building() == 1 and versions.position(1) >= head // 3,
        timeout=90,
        what="v1 at head // 3",
    )
    first.signal(signal.SIGKILL)
    first.wait(10)
    killed_at = versions.position(1)

    # when it runs again, then it resumes and ends equal to the live version.
    second = DuettoProcess(command, env, log)
    assert second.wait(120) == 0, log.read_text()[-3000:]
    assert 0 < killed_at < head
    assert versions.snapshot(1, workload) == versions.snapshot(0, workload)


def test_a_rebuild_shared_by_two_workers_equals_live(
    settings: Settings, chat: ChatService, versions: Versions
) -> None:
    workload = record_workload(chat, conversations=16, messages=12)
    relay_all(settings, chat)
    head = chat.recorder.max_notification_id() or 0
    live = LiveProjector(settings)
    try:
        wait_until(lambda: versions.position(0) == head, timeout=60, what="v0 at head")
    finally:
        live.stop()

    job = ParallelRebuild(settings, workers=2, batch_size=30)
    try:
        applied = run_rebuild(job, keep_old=True)
    finally:
        job.close()

    assert applied == head
    assert versions.position(1) == head
    assert versions.snapshot(1, workload) == versions.snapshot(0, workload)
