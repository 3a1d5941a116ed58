"""
The history projector: idempotent on (conversation id, version), position kept.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.service import ChatService
from domain.ids import UserId, conversation_id
from infra.settings import Settings
from infra.sqlite import SQLiteHistory
from projections.ports import LoggedEvent
from projections.runner import HistoryProjector
from tests.unit.support import (
    RecordingPublisher,
    all_messages,
    follower,
    logged_events,
    read,
    send,
)

PAIRS: list[tuple[UserId, UserId]] = [("alice", "bob"), ("alice", "carol")]


def _snapshot(store: SQLiteHistory) -> object:
    """
    Everything a client could read from history, to compare two stores.
    """
    users = ["alice", "bob", "carol"]
    return (
        {user: store.conversations_of(user) for user in users},
        {
            pair: (all_messages(store, cid), store.receipts(cid))
            for pair in PAIRS
            for cid in [conversation_id(*pair)]
        },
    )


def _chat_log(chat: ChatService) -> list[LoggedEvent]:
    # Two conversations interleaved, with sends and receipts.
    for n in range(1, 6):
        send(chat, sender="alice", to="bob", client_msg_id=f"b{n}")
        send(chat, sender="carol", to="alice", client_msg_id=f"c{n}")
        if n % 2 == 0:
            read(
                chat,
                user="bob",
                conversation_id=conversation_id("alice", "bob"),
                up_to_seq=n,
            )
    return logged_events(chat)


@pytest.fixture
def log(chat: ChatService) -> list[LoggedEvent]:
    return _chat_log(chat)


@pytest.fixture
def reference(tmp_path: Path, log: list[LoggedEvent]) -> object:
    # The history that one pass over the whole log produces.
    store = SQLiteHistory(tmp_path / "reference.sqlite")
    HistoryProjector(store).handle(log)
    try:
        return _snapshot(store)
    finally:
        store.close()


def test_one_pass_projects_messages_marks_and_unread(
    history: SQLiteHistory, log: list[LoggedEvent]
) -> None:
    # Given the log of two conversations, when it is projected once,
    projector = HistoryProjector(history)
    projector.handle(log)

    # then history has every message, the marks and the derived unread counts.
    ab = conversation_id("alice", "bob")
    assert [m.client_msg_id for m in all_messages(history, ab)] == [
        f"b{n}" for n in range(1, 6)
    ]
    assert {
        r.user: (r.delivered_up_to, r.read_up_to) for r in history.receipts(ab)
    } == {
        "alice": (0, 0),
        "bob": (4, 4),
    }
    unread = {v.peer: v.unread for v in history.conversations_of("alice")}
    assert unread == {"bob": 0, "carol": 5}
    assert [v.unread for v in history.conversations_of("bob")] == [1]
    assert projector.position == log[-1].position


def test_replaying_the_same_batch_changes_nothing(
    history: SQLiteHistory, log: list[LoggedEvent], reference: object
) -> None:
    # Given the whole log was projected,
    projector = HistoryProjector(history)
    projector.handle(log)

    # when the same batch is delivered again, twice,
    projector.handle(log)
    projector.handle(log)

    # then history is what a single pass gives.
    assert _snapshot(history) == reference
    assert projector.position == log[-1].position


@pytest.mark.parametrize(
    "cuts",
    [
        [(0, 8), (4, 14), (10, None)],
        [(0, 3), (0, 6), (2, 9), (9, None), (5, None)],
        [(0, None), (1, 2), (7, 12)],
    ],
    ids=["overlapping", "repeated-tails", "old-batches-after-the-end"],
)
def test_overlapping_batches_give_the_same_history_as_one_pass(
    history: SQLiteHistory,
    log: list[LoggedEvent],
    reference: object,
    cuts: list[tuple[int, int | None]],
) -> None:
    # Given the log arrives in batches that overlap and repeat one another,
    projector = HistoryProjector(history)

    # when each batch is projected in turn,
    for start, stop in cuts:
        projector.handle(log[start:stop])

    # then history equals one pass, and the position never moved back.
    assert _snapshot(history) == reference
    assert projector.position == log[-1].position


def test_an_empty_batch_changes_nothing(history: SQLiteHistory) -> None:
    projector = HistoryProjector(history)
    projector.handle([])
    assert projector.position == 0
    assert history.conversations_of("alice") == []


def test_position_survives_reopening_the_file(
    settings: Settings, log: list[LoggedEvent]
) -> None:
    # Given part of the log was projected and the store closed,
    store = SQLiteHistory(settings.read_model_path)
    HistoryProjector(store).handle(log[:7])
    store.close()

    # when the same file is opened again,
    reopened = SQLiteHistory(settings.read_model_path)
    try:
        # then the projector is where it stopped.
        assert HistoryProjector(reopened).position == log[6].position
    finally:
        reopened.close()


def test_restart_resumes_without_losing_or_repeating(
    settings: Settings, chat: ChatService, log: list[LoggedEvent], reference: object
) -> None:
    # Given a follower projected the first part of the log, in small batches,
    # and the process stopped,
    first_store = SQLiteHistory(settings.read_model_path)
    HistoryProjector(first_store).handle(log[:9])
    first_store.close()

    # when a fresh store on the same file catches up from the event store,
    store = SQLiteHistory(settings.read_model_path)
    try:
        resumed = follower(chat, store, batch_size=4)
        resumed.catch_up()

        # then history is exactly what one pass gives, and nothing is behind.
        assert _snapshot(store) == reference
        assert resumed.lag() == 0
        assert HistoryProjector(store).position == log[-1].position
    finally:
        store.close()


def test_restart_projects_what_was_recorded_while_stopped(
    settings: Settings, chat: ChatService
) -> None:
    # Given history caught up with three messages and was closed,
    for n in range(1, 4):
        send(chat, sender="alice", to="bob", client_msg_id=f"m{n}")
    store = SQLiteHistory(settings.read_model_path)
    follower(chat, store).catch_up()
    store.close()

    # when three more are sent while it is stopped, and it starts again,
    for n in range(4, 7):
        send(chat, sender="bob", to="alice", client_msg_id=f"m{n}")
    store = SQLiteHistory(settings.read_model_path)
    try:
        publisher = RecordingPublisher()
        restarted = follower(chat, store, publisher, batch_size=2)
        restarted.catch_up()

        # then all six are in history, once each,
        cid = conversation_id("alice", "bob")
        assert [m.seq for m in all_messages(store, cid)] == [1, 2, 3, 4, 5, 6]
        (view,) = store.conversations_of("alice")
        assert (view.last_seq, view.unread) == (6, 3)

        # and the fan-out, which keeps no position, pushes nothing from before
        # the restart: clients catch up on that with sync.
        assert publisher.published == []
    finally:
        store.close()
