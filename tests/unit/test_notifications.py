"""
Push decisions: who gets a push, how messages collapse, what a payload holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from commands.service import ChatService
from infra.push.outcomes import backoff_seconds, outcome_of, parse_retry_after
from infra.push.store import SQLitePushStore
from infra.sqlite import SQLiteHistory
from projections.notifications import (
    PushDecider,
    PushPolicy,
    UnseenMessage,
    collapse,
    payload,
    still_unseen,
)
from tests.unit.support import logged_events, send

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
POLICY = PushPolicy(grace_seconds=3, collapse_seconds=10)
CONVERSATION = uuid4()


def message(seq: int, after_seconds: float) -> UnseenMessage:
    return UnseenMessage(
        conversation_id=CONVERSATION,
        recipient="bob",
        sender="alice",
        seq=seq,
        sent_at=T0 + timedelta(seconds=after_seconds),
        body=f"secret {seq}",
    )


def test_a_first_message_opens_a_push_due_after_the_grace_period() -> None:
    push = collapse(None, message(1, 0), POLICY)

    assert (push.seqs, push.due_at, push.body) == (
        (1,),
        T0 + timedelta(seconds=3),
        None,
    )


def test_a_burst_within_the_window_becomes_one_push_due_after_its_last() -> None:
    push = None
    for seq in range(1, 6):
        push = collapse(push, message(seq, seq * 0.5), POLICY)

    assert push is not None
    assert push.seqs == (1, 2, 3, 4, 5)
    assert push.due_at == T0 + timedelta(seconds=2.5 + 3)


def test_a_message_after_the_window_opens_a_new_push() -> None:
    first = collapse(None, message(1, 0), POLICY)

    second = collapse(first, message(2, 10), POLICY)

    assert second.push_id != first.push_id
    assert second.seqs == (2,)


def test_only_undelivered_messages_count_and_bodies_only_when_allowed() -> None:
    policy = PushPolicy(grace_seconds=3, collapse_seconds=10, include_body=True)
    push = collapse(collapse(None, message(1, 0), policy), message(3, 1), policy)

    assert still_unseen(push, delivered_up_to=1) == (3,)
    assert still_unseen(push, delivered_up_to=3) == ()
    assert payload(push, 1)["body"] == "secret 3"
    assert "body" not in payload(collapse(None, message(1, 0), POLICY), 1)


def test_the_decider_pushes_for_offline_recipients_only_and_decides_once(
    chat: ChatService, history: SQLiteHistory, tmp_path: Path
) -> None:
    store = SQLitePushStore(tmp_path / "push.sqlite")
    online = {"carol"}
    decider = PushDecider(store, history, lambda user: user in online, POLICY)
    to_bob = send(chat, sender="alice", to="bob", client_msg_id="m1")
    send(chat, sender="alice", to="carol", client_msg_id="m2")

    decider.handle(logged_events(chat))
    decider.handle(logged_events(chat))

    pending = store.pending_push(to_bob.conversation_id, "bob")
    assert pending is not None
    assert (pending.sender, pending.seqs) == ("alice", (1,))
    assert len(store.due_pushes(datetime.now(UTC) + timedelta(seconds=5))) == 1
    store.close()


@pytest.mark.parametrize(
    ("status", "kind"),
    [(201, "sent"), (410, "gone"), (404, "gone"), (429, "retry"), (503, "retry")],
)
def test_answers_are_classified(status: int, kind: str) -> None:
    assert outcome_of(status, None, T0).kind == kind


def test_retry_after_is_honoured_over_a_shorter_backoff() -> None:
    http_date = "Wed, 01 Jan 2025 12:00:30 GMT"

    assert parse_retry_after("7", T0) == 7.0
    assert parse_retry_after(http_date, T0) == 30.0
    assert backoff_seconds(1, base_seconds=1.0, retry_after=7.0) == 7.0
    assert backoff_seconds(3, base_seconds=1.0, retry_after=None) == 4.0
