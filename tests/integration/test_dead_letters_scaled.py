"""
The dead-letter queue on Cassandra (issue 5, case 6, scaled profile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.service import ChatService
from infra.bootstrap import chat_service
from infra.deadletters import encoder
from infra.local.servers import CassandraServer
from infra.readmodels.scaled import CassandraVersions
from infra.records import event_mapper
from infra.settings import Settings
from projections.deadletter import ParkingProjector
from projections.runner import HistoryProjector
from tests.integration.conftest import settings_from
from tests.poison import PoisonedStore
from tests.snapshots import Workload, record_workload, snapshot
from tests.unit.support import logged_events

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLEAN = 7  # The version a clean projection goes to, for comparison.


@pytest.fixture
def env(
    scaled_env: dict[str, str], cassandra_server: CassandraServer
) -> dict[str, str]:
    return {
        **scaled_env,
        "DUETTO_CASSANDRA_PORT": str(cassandra_server.port),
        "DUETTO_CASSANDRA_KEYSPACE": f"dl_{uuid.uuid4().hex[:10]}",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return settings_from(env)


@pytest.fixture
def versions(settings: Settings) -> Iterator[CassandraVersions]:
    opened = CassandraVersions(settings)
    yield opened
    for version in (0, CLEAN):
        opened.drop(version)
    base = settings.cassandra_keyspace
    opened.session.execute(f"DROP KEYSPACE IF EXISTS {base}_catalog")
    opened.close()


@pytest.fixture
def chat(settings: Settings) -> Iterator[ChatService]:
    service = chat_service(settings)
    yield service
    service.close()


def test_a_poison_event_waits_in_the_queue_until_retried(
    settings: Settings,
    env: dict[str, str],
    chat: ChatService,
    versions: CassandraVersions,
) -> None:
    workload = record_workload(chat, conversations=5, messages=8)
    events = logged_events(chat)
    history, clean = versions.open(0), versions.open(CLEAN)
    HistoryProjector(clean).handle(events)
    poisoned = workload.conversations[3]
    store = PoisonedStore(history, poisoned, 4)

    # Given a projector whose store fails on one event,
    projector = ParkingProjector(store, history.letters, encoder(event_mapper()))
    for start in range(0, len(events), 30):
        projector.handle(events[start : start + 30])

    # then every other conversation is whole and that one waits from v4 on,
    rest = Workload(
        [c for c in workload.conversations if c != poisoned],
        workload.users[:6] + workload.users[8:],
    )
    assert snapshot(history, rest) == snapshot(clean, rest)
    parked = history.letters.parked("history")
    assert {letter.conversation_id for letter in parked} == {poisoned}
    assert [letter.version for letter in parked] == list(range(4, 13))
    status = json.loads(_duetto(env, "projections", "status", "--json"))
    assert status["parked"][0]["events"] == 9
    assert status["readers"][1]["name"] == "history"
    assert status["readers"][1]["lag"] == 0

    # and when it is fixed, ``dlq retry`` completes it in order.
    retried = _duetto(env, "projections", "dlq", "retry")
    assert "9 parked events applied" in retried
    assert history.letters.parked("history") == []
    assert snapshot(history, workload) == snapshot(clean, workload)


def _duetto(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stdout.decode()
