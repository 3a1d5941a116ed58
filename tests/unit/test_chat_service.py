"""
ChatService on the embedded SQLite event store: commands in, events recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from uuid import UUID, uuid4

import pytest

from commands.models import SendMessage
from commands.service import ChatService
from domain.conversation import Conversation
from domain.errors import ChatError
from domain.ids import conversation_id
from infra.settings import Settings
from infra.sqlite import SQLiteHistory
from tests.unit.support import (
    all_messages,
    delivered,
    follower,
    logged_events,
    read,
    send,
    sent_events,
)

EMOJI = "👋🏽"  # Two code points, eight UTF-8 bytes.
FAMILY = "👩‍👩‍👧"  # Five code points joined into one glyph, 18 UTF-8 bytes.


def head(chat: ChatService) -> int:
    return chat.recorder.max_notification_id() or 0


# Case 1: idempotent sends.


def test_repeated_client_msg_id_is_scoped_to_sender_and_conversation(
    chat: ChatService, history: SQLiteHistory
) -> None:
    # Given the same client_msg_id used by A to B, by B to A, and by A to E,
    first = send(chat, sender="A", to="B", body="hi", client_msg_id="x1")
    from_b = send(chat, sender="B", to="A", body="hello", client_msg_id="x1")
    to_e = send(chat, sender="A", to="E", body="yo", client_msg_id="x1")

    # when A sends x1 to B again with another body,
    again = send(chat, sender="A", to="B", body="changed", client_msg_id="x1")

    # then exactly three messages were recorded, the fourth send returned the
    # first one, and history keeps the first body.
    assert len(sent_events(chat)) == 3
    assert (again.message_id, again.seq) == (first.message_id, first.seq)
    assert again.duplicate
    assert (first.seq, from_b.seq, to_e.seq) == (1, 2, 1)
    assert len({first.message_id, from_b.message_id, to_e.message_id}) == 3
    follower(chat, history).catch_up()
    stored = all_messages(history, conversation_id("A", "B"))
    assert [(m.seq, m.sender, m.body) for m in stored] == [
        (1, "A", "hi"),
        (2, "B", "hello"),
    ]


def test_repeated_client_msg_id_returns_original_after_a_restart(
    settings: Settings,
) -> None:
    # Given a message sent before the service was restarted,
    before = ChatService(env=settings.event_store_env())
    first = send(before, sender="alice", to="bob", body="hi", client_msg_id="x1")
    before.close()

    # when the same client_msg_id is sent to the restarted service,
    after = ChatService(env=settings.event_store_env())
    try:
        again = send(after, sender="alice", to="bob", body="new", client_msg_id="x1")

        # then the original comes back, whole, and nothing new is recorded.
        assert again.duplicate
        assert (again.message_id, again.seq, again.sent_at) == (
            first.message_id,
            first.seq,
            first.sent_at,
        )
        assert len(sent_events(after)) == 1
    finally:
        after.close()


def test_ack_time_is_the_time_history_shows(
    chat: ChatService, history: SQLiteHistory
) -> None:
    # Given two messages, the second sent a little after the first,
    first = send(chat, sender="alice", to="bob", client_msg_id="c1")
    second = send(chat, sender="bob", to="alice", client_msg_id="c2")

    # when history is projected from the log,
    follower(chat, history).catch_up()

    # then each ack's sent_at is the one its message is stored and pushed with.
    stored = all_messages(history, first.conversation_id)
    assert [m.sent_at for m in stored] == [first.sent_at, second.sent_at]
    assert [e.timestamp for e in sent_events(chat)] == [first.sent_at, second.sent_at]


# Case 2: a recipient who has never connected.


def test_marks_of_a_recipient_who_never_connected_start_at_zero(
    chat: ChatService, history: SQLiteHistory
) -> None:
    # Given B has never connected and A sent three messages,
    projecting = follower(chat, history)
    for n in range(1, 4):
        send(chat, sender="A", to="B", client_msg_id=f"m{n}")
    projecting.catch_up()
    cid = conversation_id("A", "B")

    # then before B acts nothing is delivered or read,
    (b_view,) = history.conversations_of("B")
    assert (b_view.mine.delivered_up_to, b_view.mine.read_up_to) == (0, 0)
    assert b_view.unread == 3
    (a_view,) = history.conversations_of("A")
    assert (a_view.theirs.delivered_up_to, a_view.theirs.read_up_to) == (0, 0)

    # when B reads up to seq 2,
    receipt = read(chat, user="B", conversation_id=cid, up_to_seq=2)
    projecting.catch_up()

    # then seqs 1-2 are read and delivered, 3 is not, and one is unread.
    assert (receipt.delivered_up_to, receipt.read_up_to) == (2, 2)
    marks = {r.user: (r.delivered_up_to, r.read_up_to) for r in history.receipts(cid)}
    assert marks == {"A": (0, 0), "B": (2, 2)}
    read_seqs = [m.seq for m in all_messages(history, cid) if m.seq <= marks["B"][1]]
    assert read_seqs == [1, 2]
    (b_view,) = history.conversations_of("B")
    assert b_view.unread == 1
    assert b_view.last_seq == 3


# Case 6: the body limit, in bytes.


def test_body_of_exactly_4096_bytes_is_stored_whole(
    chat: ChatService, history: SQLiteHistory
) -> None:
    # Given a body of multi-codepoint emoji and ASCII that is exactly 4096 bytes,
    body = FAMILY * 200 + EMOJI * 61 + "a" * 8
    assert len(body.encode("utf-8")) == 4096

    # when it is sent,
    sent = send(chat, sender="alice", to="bob", body=body, client_msg_id="big")
    follower(chat, history).catch_up()

    # then history holds it unchanged.
    (stored,) = all_messages(history, sent.conversation_id)
    assert stored.body == body


def test_body_of_4097_bytes_is_refused_and_nothing_is_recorded(
    chat: ChatService,
) -> None:
    # Given a body one byte over the limit,
    body = FAMILY * 200 + EMOJI * 61 + "a" * 9
    assert len(body.encode("utf-8")) == 4097

    # when it is sent, it is refused as too large, and nothing is recorded.
    with pytest.raises(ChatError) as refused:
        send(chat, sender="alice", to="bob", body=body, client_msg_id="big")
    assert refused.value.code == "body_too_large"
    assert head(chat) == 0


# Error codes.


def _started(chat: ChatService) -> UUID:
    return send(chat, sender="alice", to="bob", client_msg_id="first").conversation_id


ERROR_CASES: list[tuple[str, Callable[[ChatService, UUID], object], str, str]] = [
    (
        "malformed_peer",
        lambda c, _: send(c, sender="alice", to="bad id!", client_msg_id="c"),
        "invalid_user_id",
        "to",
    ),
    (
        "empty_peer",
        lambda c, _: send(c, sender="alice", to="", client_msg_id="c"),
        "invalid_user_id",
        "to",
    ),
    (
        "self",
        lambda c, _: send(c, sender="alice", to="alice", client_msg_id="c"),
        "cannot_message_self",
        "to",
    ),
    (
        "outsider_sends_into_conversation",
        lambda c, cid: c.send_message(
            SendMessage(conversation_id=cid, body="hi", client_msg_id="c"),
            sender="eve",
        ),
        "conversation_not_found",
        "conversation_id",
    ),
    (
        "outsider_reads",
        lambda c, cid: read(c, user="eve", conversation_id=cid, up_to_seq=1),
        "conversation_not_found",
        "conversation_id",
    ),
    (
        "outsider_marks_delivered",
        lambda c, cid: delivered(c, user="eve", conversation_id=cid, up_to_seq=1),
        "conversation_not_found",
        "conversation_id",
    ),
    (
        "read_past_last_seq",
        lambda c, cid: read(c, user="bob", conversation_id=cid, up_to_seq=2),
        "seq_out_of_range",
        "up_to_seq",
    ),
    (
        "delivered_past_last_seq",
        lambda c, cid: delivered(c, user="bob", conversation_id=cid, up_to_seq=9),
        "seq_out_of_range",
        "up_to_seq",
    ),
    (
        "empty_body",
        lambda c, _: send(c, sender="alice", to="bob", body="", client_msg_id="c"),
        "empty_body",
        "body",
    ),
    (
        "nul_in_body",
        lambda c, _: send(c, sender="alice", to="bob", body="a\0b", client_msg_id="c"),
        "invalid_body",
        "body",
    ),
    (
        "empty_client_msg_id",
        lambda c, _: send(c, sender="alice", to="bob", client_msg_id=""),
        "invalid_client_msg_id",
        "client_msg_id",
    ),
    (
        "client_msg_id_with_space",
        lambda c, _: send(c, sender="alice", to="bob", client_msg_id="a b"),
        "invalid_client_msg_id",
        "client_msg_id",
    ),
    (
        "client_msg_id_too_long",
        lambda c, _: send(c, sender="alice", to="bob", client_msg_id="x" * 129),
        "invalid_client_msg_id",
        "client_msg_id",
    ),
]


@pytest.mark.parametrize(
    ("action", "code", "field"),
    [
        pytest.param(action, code, field, id=name)
        for name, action, code, field in ERROR_CASES
    ],
)
def test_bad_commands_get_their_error_code_and_record_nothing(
    chat: ChatService,
    action: Callable[[ChatService, UUID], object],
    code: str,
    field: str,
) -> None:
    # Given a conversation between alice and bob with one message,
    cid = _started(chat)
    recorded = head(chat)

    # when a bad command is issued,
    with pytest.raises(ChatError) as refused:
        action(chat, cid)

    # then it fails with its own code and field, and nothing is recorded.
    assert (refused.value.code, refused.value.field) == (code, field)
    assert head(chat) == recorded


def test_an_outsider_cannot_tell_a_stranger_s_conversation_from_none(
    chat: ChatService,
) -> None:
    # Given alice and bob's conversation exists and another id does not,
    existing = _started(chat)
    missing = uuid4()

    # when eve reads each, she gets the same error for both.
    errors = []
    for cid in (existing, missing):
        with pytest.raises(ChatError) as refused:
            read(chat, user="eve", conversation_id=cid, up_to_seq=0)
        errors.append((refused.value.code, refused.value.message))
    assert errors[0] == errors[1] == ("conversation_not_found", "no such conversation")


def test_marks_only_rise_through_the_service(chat: ChatService) -> None:
    # Given bob read up to 3 of 3 messages,
    for n in range(1, 4):
        send(chat, sender="alice", to="bob", client_msg_id=f"m{n}")
    cid = conversation_id("alice", "bob")
    read(chat, user="bob", conversation_id=cid, up_to_seq=3)
    recorded = head(chat)

    # when a late, lower read and delivered arrive,
    late_read = read(chat, user="bob", conversation_id=cid, up_to_seq=1)
    late_delivered = delivered(chat, user="bob", conversation_id=cid, up_to_seq=2)

    # then the marks stay where they were and nothing is recorded.
    assert (late_read.delivered_up_to, late_read.read_up_to) == (3, 3)
    assert late_delivered == late_read
    assert head(chat) == recorded


# Case 7: writers racing on one conversation.


def _run_at_once(workers: list[Callable[[], None]]) -> list[BaseException]:
    """
    Start every worker at the same moment; return what any of them raised.
    """
    barrier = threading.Barrier(len(workers))
    raised: list[BaseException] = []

    def run(work: Callable[[], None]) -> None:
        barrier.wait()
        try:
            work()
        except BaseException as error:  # Reported to the test, which fails on it.
            raised.append(error)

    threads = [threading.Thread(target=run, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return raised


def test_concurrent_sends_and_marks_keep_seqs_gap_free_and_marks_in_range(
    chat: ChatService,
) -> None:
    # Given A sends 100 messages while B, from two other threads, marks read
    # and delivered up to the latest seq B has been told about,
    rounds = 100
    cid = conversation_id("A", "B")
    latest = [0]
    domain_errors: list[ChatError] = []
    done = threading.Event()

    def sender() -> None:
        try:
            for n in range(1, rounds + 1):
                latest[0] = send(chat, sender="A", to="B", client_msg_id=f"m{n}").seq
        finally:
            done.set()

    def marker(mark: Callable[..., object]) -> Callable[[], None]:
        def work() -> None:
            while True:
                finished = done.is_set()
                known = latest[0]
                if known:
                    try:
                        mark(chat, user="B", conversation_id=cid, up_to_seq=known)
                    except ChatError as error:
                        domain_errors.append(error)
                if finished:
                    return

        return work

    # when they all run at once,
    raised = _run_at_once([sender, marker(read), marker(delivered)])

    # then every send succeeded, and B, who only marks seqs it was told of,
    # saw at most the service's own "busy" answer, never an internal error,
    assert raised == []
    assert [e for e in domain_errors if e.code != "conversation_busy"] == []

    # seqs run 1..100 without a gap, and no mark ever passed the last seq.
    assert [e.seq for e in sent_events(chat)] == list(range(1, rounds + 1))
    last_seq = 0
    marks: dict[type, int] = {Conversation.Read: 0, Conversation.Delivered: 0}
    for logged in logged_events(chat):
        event = logged.event
        if isinstance(event, Conversation.MessageSent):
            last_seq = event.seq
        elif isinstance(event, Conversation.Read | Conversation.Delivered):
            assert marks[type(event)] < event.up_to_seq <= last_seq
            marks[type(event)] = event.up_to_seq
    conversation = chat.conversation(cid, user="B")
    assert conversation.last_seq == rounds
    assert conversation.read["B"] <= conversation.delivered["B"] <= rounds
    assert conversation.read["B"] == rounds


def test_both_sides_starting_a_conversation_at_once_share_it(
    chat: ChatService,
) -> None:
    # Given alice and bob have never talked,
    acks = []

    # when each sends the other a first message at the same moment,
    raised = _run_at_once(
        [
            lambda: acks.append(
                send(chat, sender="alice", to="bob", client_msg_id="a")
            ),
            lambda: acks.append(
                send(chat, sender="bob", to="alice", client_msg_id="b")
            ),
        ]
    )

    # then both land in one conversation, one after the other.
    assert raised == []
    assert {ack.conversation_id for ack in acks} == {conversation_id("alice", "bob")}
    assert sorted(ack.seq for ack in acks) == [1, 2]
    started = [
        e for e in logged_events(chat) if isinstance(e.event, Conversation.Started)
    ]
    assert len(started) == 1
