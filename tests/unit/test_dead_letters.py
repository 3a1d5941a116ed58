"""
The dead-letter queue on the embedded profile (issue 5, case 6).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from commands.models import SendMessage
from commands.service import ChatService
from infra.catalog import history_file
from infra.deadletters import decoder, encoder
from infra.follower import LogFollower
from infra.records import event_mapper
from infra.settings import Settings
from infra.sqlite import SQLiteHistory
from projections.deadletter import ParkingProjector, retry
from projections.fanout import FanOut
from projections.ports import ReadModelUnavailableError
from tests.poison import PoisonedStore
from tests.snapshots import Workload, record_workload, snapshot
from tests.unit.support import RecordingPublisher, follower
from tests.unit.test_audit import stored_state, write_state

REPO = Path(__file__).resolve().parents[2]
POISON_VERSION = 4


def parking_follower(
    chat: ChatService, store: PoisonedStore, history: SQLiteHistory
) -> LogFollower:
    projector = ParkingProjector(store, history.letters, encoder(chat.mapper))
    return LogFollower(
        chat,
        projector,
        FanOut(history, RecordingPublisher()),
        batch_size=25,
        poll_seconds=60,
    )


def clean_history(settings: Settings, chat: ChatService) -> SQLiteHistory:
    clean = SQLiteHistory(settings.data_dir / "clean.sqlite")
    follower(chat, clean).catch_up()
    return clean


def one(workload: Workload, index: int) -> Workload:
    users = workload.users[2 * index : 2 * index + 2]
    return Workload([workload.conversations[index]], users)


def others(workload: Workload, index: int) -> Workload:
    cids = [c for n, c in enumerate(workload.conversations) if n != index]
    users = [u for u in workload.users if u not in one(workload, index).users]
    return Workload(cids, users)


def test_a_poison_event_parks_its_conversation_and_the_rest_goes_on(
    settings: Settings, chat: ChatService
) -> None:
    workload = record_workload(chat, conversations=6, messages=8)
    poisoned_cid = workload.conversations[2]
    history = SQLiteHistory(history_file(settings.data_dir, 0))
    store = PoisonedStore(history, poisoned_cid, POISON_VERSION)

    # Given a store that fails on one event of one conversation,
    live = parking_follower(chat, store, history)
    live.catch_up()
    chat.send_message(
        SendMessage(to="u2b", body="after the poison", client_msg_id="late"),
        sender="u2a",
    )
    live.catch_up()

    # then the other conversations are fully projected,
    clean = clean_history(settings, chat)
    assert snapshot(history, others(workload, 2)) == snapshot(
        clean, others(workload, 2)
    )
    # the poisoned one stops just before the poison event,
    assert history.page(poisoned_cid).messages[0].seq == POISON_VERSION - 2
    # and the poison event waits in the queue with every later one, in order.
    letters = history.letters.parked("history")
    versions = [letter.version for letter in letters]
    last_version = 1 + 8 + 2 + 1 + 1  # start, sends, 2 delivered, 1 read, late
    assert versions == list(range(POISON_VERSION, last_version + 1))
    assert "PoisonError" in letters[0].error
    assert live.lag() == 0

    # When the cause is fixed and the queue retried, the conversation completes.
    store.poisoned = False
    outcome = retry(
        store, history.letters, decoder(event_mapper()), projector="history"
    )

    assert outcome.applied == len(versions)
    assert outcome.still_parked == {}
    assert history.letters.parked("history") == []
    assert snapshot(history, workload) == snapshot(clean, workload)
    history.close()
    clean.close()


def test_a_retry_that_fails_again_keeps_the_conversation_parked(
    settings: Settings, chat: ChatService
) -> None:
    workload = record_workload(chat, conversations=2, messages=5)
    history = SQLiteHistory(history_file(settings.data_dir, 0))
    store = PoisonedStore(history, workload.conversations[0], POISON_VERSION)
    parking_follower(chat, store, history).catch_up()
    parked = len(history.letters.parked("history"))

    outcome = retry(
        store, history.letters, decoder(event_mapper()), projector="history"
    )

    assert outcome.applied == 0
    assert list(outcome.still_parked) == [workload.conversations[0]]
    assert len(history.letters.parked("history")) == parked
    history.close()


def test_a_store_that_is_down_parks_nothing_and_keeps_the_position(
    settings: Settings, chat: ChatService
) -> None:
    workload = record_workload(chat, conversations=2, messages=3)
    history = SQLiteHistory(history_file(settings.data_dir, 0))
    store = PoisonedStore(history, workload.conversations[0], POISON_VERSION)
    store.unavailable = True

    with pytest.raises(ReadModelUnavailableError):
        parking_follower(chat, store, history).catch_up()

    assert history.letters.parked("history") == []
    assert history.position("history") == 0
    history.close()


def test_status_shows_parked_events_and_the_commands_list_and_retry_them(
    settings: Settings, chat: ChatService
) -> None:
    workload = record_workload(chat, conversations=3, messages=6)
    history = SQLiteHistory(history_file(settings.data_dir, 0))
    store = PoisonedStore(history, workload.conversations[1], POISON_VERSION)
    parking_follower(chat, store, history).catch_up()
    parked = history.letters.parked("history")
    head = chat.recorder.max_notification_id() or 0

    status = json.loads(_duetto(settings, "projections", "status", "--json"))
    listed = _duetto(settings, "projections", "dlq", "list", "--json")
    retried = _duetto(settings, "projections", "dlq", "retry")

    assert status["parked"][0]["events"] == len(parked)
    assert status["parked"][0]["lag"] == head - parked[0].position + 1
    assert status["parked"][0]["first_version"] == POISON_VERSION
    assert [json.loads(line)["version"] for line in listed.splitlines()] == [
        letter.version for letter in parked
    ]
    assert f"{len(parked)} parked events applied" in retried
    clean = clean_history(settings, chat)
    assert snapshot(history, workload) == snapshot(clean, workload)
    history.close()
    clean.close()


def _duetto(settings: Settings, *args: str) -> str:
    env = {**os.environ, "DUETTO_DATA_DIR": str(settings.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode()


def test_an_event_this_build_cannot_read_is_parked_not_skipped(
    settings: Settings, chat: ChatService
) -> None:
    workload = record_workload(chat, conversations=4, messages=6)
    clean = clean_history(settings, chat)
    bad = workload.conversations[1]

    # Given a MessageSent stored by a newer build, as schema version 3,
    events_db = sqlite3.connect(settings.data_dir / "events.sqlite")
    state = stored_state(events_db, bad, 3)
    write_state(events_db, bad, 3, state | {"class_version": 3})
    events_db.close()

    # when the live follower projects the log,
    history = SQLiteHistory(history_file(settings.data_dir, 0))
    follower = LogFollower(
        chat,
        ParkingProjector(history, history.letters, encoder(chat.mapper)),
        FanOut(history, RecordingPublisher()),
        batch_size=500,
        poll_seconds=60,
    )
    follower.catch_up()

    # then that event and its conversation's later ones wait, the rest is whole.
    letters = history.letters.parked("history")
    assert [letter.version for letter in letters] == list(range(3, 10))
    assert "schema version 3, but this build reads only up to version 2" in (
        letters[0].error
    )
    assert snapshot(history, others(workload, 1)) == snapshot(
        clean, others(workload, 1)
    )
    # A retry with the same build still cannot read it: it stays parked.
    outcome = retry(
        history, history.letters, decoder(event_mapper()), projector="history"
    )
    assert (outcome.applied, list(outcome.still_parked)) == (0, [bad])
    history.close()
    clean.close()
