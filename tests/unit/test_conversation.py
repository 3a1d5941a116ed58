"""
The Conversation aggregate's rules, without any store.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from domain.conversation import Conversation
from domain.errors import (
    BodyTooLargeError,
    ChatError,
    ConversationNotFoundError,
    InvalidBodyError,
    SelfMessageError,
    SeqOutOfRangeError,
)
from domain.ids import conversation_id


def test_conversation_id_is_the_same_whichever_side_starts() -> None:
    assert conversation_id("alice", "bob") == conversation_id("bob", "alice")
    assert conversation_id("alice", "bob") != conversation_id("alice", "carol")


def test_a_user_cannot_message_themself() -> None:
    with pytest.raises(SelfMessageError):
        Conversation.start("alice", "alice")


def test_repeated_client_message_id_returns_original() -> None:
    conversation = Conversation.start("alice", "bob")
    first = conversation.send_message(sender="alice", client_msg_id="x1", body="hi")

    again = conversation.send_message(
        sender="alice", client_msg_id="x1", body="changed"
    )

    assert (again.message_id, again.seq, again.duplicate) == (first.message_id, 1, True)
    assert len(conversation.collect_events()) == 2  # Started and one MessageSent.


@pytest.mark.parametrize("body", ["a\u0000b", "x\ud800y"])
def test_nul_and_unpaired_surrogate_are_invalid_bodies(body: str) -> None:
    conversation = Conversation.start("alice", "bob")
    with pytest.raises(InvalidBodyError):
        conversation.send_message(sender="alice", client_msg_id="c", body=body)
    assert conversation.last_seq == 0


def test_body_limit_counts_utf8_bytes() -> None:
    conversation = Conversation.start("alice", "bob")
    emoji = "👋🏽"  # Two code points, eight bytes.
    exact = emoji * 500 + "a" * 96
    assert len(exact.encode()) == 4096

    conversation.send_message(sender="alice", client_msg_id="ok", body=exact)
    with pytest.raises(BodyTooLargeError):
        conversation.send_message(sender="alice", client_msg_id="no", body=exact + "a")
    assert conversation.last_seq == 1


def test_only_participants_act() -> None:
    conversation = Conversation.start("alice", "bob")
    with pytest.raises(ConversationNotFoundError):
        conversation.send_message(sender="eve", client_msg_id="e", body="hello")


def test_marks_never_pass_the_last_seq_and_never_move_back() -> None:
    conversation = Conversation.start("alice", "bob")
    for n in range(3):
        conversation.send_message(sender="alice", client_msg_id=f"m{n}", body="hi")

    with pytest.raises(SeqOutOfRangeError):
        conversation.mark_read(user="bob", up_to_seq=4)
    conversation.mark_read(user="bob", up_to_seq=2)
    receipt = conversation.mark_delivered(user="bob", up_to_seq=1)

    assert (receipt.delivered_up_to, receipt.read_up_to) == (2, 2)


def _events_of(conversation: Conversation) -> list[object]:
    return list(conversation.collect_events())


def _rebuilt(events: list[object]) -> Conversation:
    rebuilt: Conversation | None = None
    for domain_event in events:
        assert isinstance(domain_event, Conversation.Event)
        rebuilt = domain_event.mutate(rebuilt)
    assert rebuilt is not None
    return rebuilt


def test_either_side_starting_gives_the_same_ordered_pair() -> None:
    one = Conversation.start("bob", "alice")
    other = Conversation.start("alice", "bob")

    assert one.id == other.id == conversation_id("alice", "bob")
    assert one.participants == other.participants == ("alice", "bob")
    assert one.peer_of("alice") == "bob"
    assert one.peer_of("bob") == "alice"


def test_seqs_follow_one_another_whoever_sends() -> None:
    conversation = Conversation.start("alice", "bob")
    senders = ["alice", "bob", "bob", "alice", "bob"]

    seqs = [
        conversation.send_message(sender=s, client_msg_id=f"c{n}", body="hi").seq
        for n, s in enumerate(senders)
    ]

    assert seqs == [1, 2, 3, 4, 5]
    assert conversation.last_seq == 5


def test_the_same_client_msg_id_from_each_sender_is_two_messages() -> None:
    conversation = Conversation.start("alice", "bob")

    from_alice = conversation.send_message(sender="alice", client_msg_id="x1", body="a")
    from_bob = conversation.send_message(sender="bob", client_msg_id="x1", body="b")

    assert (from_alice.seq, from_bob.seq) == (1, 2)
    assert not from_bob.duplicate
    assert from_alice.message_id != from_bob.message_id


def test_a_rebuilt_conversation_remembers_sends_and_marks() -> None:
    # Given a conversation with messages and receipts, rebuilt from its events,
    conversation = Conversation.start("alice", "bob")
    first = conversation.send_message(sender="alice", client_msg_id="x1", body="hi")
    conversation.send_message(sender="bob", client_msg_id="y1", body="yo")
    conversation.mark_read(user="bob", up_to_seq=1)
    conversation.mark_delivered(user="alice", up_to_seq=2)
    rebuilt = _rebuilt(_events_of(conversation))

    # when the first message is sent again after the rebuild,
    again = rebuilt.send_message(sender="alice", client_msg_id="x1", body="other")

    # then it is the original, with its own time, and the marks are as they were.
    assert (again.message_id, again.seq, again.sent_at) == (
        first.message_id,
        first.seq,
        first.sent_at,
    )
    assert again.duplicate
    assert rebuilt.pending_events == []
    assert rebuilt.last_seq == 2
    assert rebuilt.receipt_of("bob") == conversation.receipt_of("bob")
    assert rebuilt.receipt_of("alice") == conversation.receipt_of("alice")


def test_a_sent_message_carries_the_time_of_its_event() -> None:
    conversation = Conversation.start("alice", "bob")
    sent = conversation.send_message(sender="alice", client_msg_id="x1", body="hi")

    _, message_sent = _events_of(conversation)
    assert isinstance(message_sent, Conversation.MessageSent)
    assert sent.sent_at == message_sent.timestamp


def test_reading_implies_delivery() -> None:
    conversation = Conversation.start("alice", "bob")
    for n in range(3):
        conversation.send_message(sender="alice", client_msg_id=f"m{n}", body="hi")

    receipt = conversation.mark_read(user="bob", up_to_seq=3)

    assert (receipt.delivered_up_to, receipt.read_up_to) == (3, 3)
    assert conversation.receipt_of("alice").read_up_to == 0


def test_a_delivered_mark_leaves_the_read_mark_alone() -> None:
    conversation = Conversation.start("alice", "bob")
    for n in range(3):
        conversation.send_message(sender="alice", client_msg_id=f"m{n}", body="hi")
    conversation.mark_read(user="bob", up_to_seq=1)

    receipt = conversation.mark_delivered(user="bob", up_to_seq=3)

    assert (receipt.delivered_up_to, receipt.read_up_to) == (3, 1)


@pytest.mark.parametrize("up_to_seq", [0, 1])
def test_marks_that_do_not_rise_record_nothing(up_to_seq: int) -> None:
    conversation = Conversation.start("alice", "bob")
    conversation.send_message(sender="alice", client_msg_id="m", body="hi")
    conversation.mark_read(user="bob", up_to_seq=1)
    conversation.collect_events()

    conversation.mark_read(user="bob", up_to_seq=up_to_seq)
    conversation.mark_delivered(user="bob", up_to_seq=up_to_seq)

    assert conversation.pending_events == []


def test_a_mark_in_an_empty_conversation_can_only_be_zero() -> None:
    conversation = Conversation.start("alice", "bob")
    conversation.collect_events()

    receipt = conversation.mark_read(user="bob", up_to_seq=0)
    assert (receipt.delivered_up_to, receipt.read_up_to) == (0, 0)
    assert conversation.pending_events == []
    with pytest.raises(SeqOutOfRangeError):
        conversation.mark_delivered(user="bob", up_to_seq=1)


def test_body_limit_never_splits_a_multi_codepoint_character() -> None:
    # Given 4096 bytes of joined emoji, where one more byte of ASCII is too many,
    conversation = Conversation.start("alice", "bob")
    family = "👩‍👩‍👧"  # Five code points, 18 bytes.
    body = family * 227 + "abcdefghij"
    assert len(body.encode("utf-8")) == 4096

    # then the whole body is kept, and one byte more is refused whole.
    conversation.send_message(sender="alice", client_msg_id="ok", body=body)
    with pytest.raises(BodyTooLargeError):
        conversation.send_message(sender="alice", client_msg_id="no", body=body + "!")
    (_, sent) = _events_of(conversation)
    assert isinstance(sent, Conversation.MessageSent)
    assert sent.body == body


def _send(body: str = "hi", client_msg_id: str = "c", sender: str = "alice") -> None:
    conversation = Conversation.start("alice", "bob")
    conversation.send_message(sender=sender, client_msg_id=client_msg_id, body=body)


def _mark(user: str = "bob", up_to_seq: int = 0) -> None:
    conversation = Conversation.start("alice", "bob")
    conversation.mark_read(user=user, up_to_seq=up_to_seq)


@pytest.mark.parametrize(
    ("attempt", "code", "field"),
    [
        (lambda: Conversation.start("alice", "al ice"), "invalid_user_id", "to"),
        (lambda: Conversation.start("alice", "x" * 65), "invalid_user_id", "to"),
        (lambda: Conversation.start("alice", "alice"), "cannot_message_self", "to"),
        (lambda: _send(sender="eve"), "conversation_not_found", "conversation_id"),
        (lambda: _mark(user="eve"), "conversation_not_found", "conversation_id"),
        (lambda: _mark(up_to_seq=1), "seq_out_of_range", "up_to_seq"),
        (lambda: _mark(up_to_seq=-1), "seq_out_of_range", "up_to_seq"),
        (lambda: _send(body=""), "empty_body", "body"),
        (lambda: _send(body="a\u0000b"), "invalid_body", "body"),
        (lambda: _send(body="x\ud800y"), "invalid_body", "body"),
        (lambda: _send(body="a" * 4097), "body_too_large", "body"),
        (lambda: _send(client_msg_id=""), "invalid_client_msg_id", "client_msg_id"),
        (lambda: _send(client_msg_id="é"), "invalid_client_msg_id", "client_msg_id"),
    ],
    ids=[
        "space-in-user-id",
        "user-id-too-long",
        "self",
        "outsider-sends",
        "outsider-marks",
        "mark-past-last-seq",
        "negative-mark",
        "empty-body",
        "nul",
        "unpaired-surrogate",
        "body-too-large",
        "empty-client-msg-id",
        "non-ascii-client-msg-id",
    ],
)
def test_each_broken_rule_has_its_own_code_and_field(
    attempt: Callable[[], object], code: str, field: str
) -> None:
    with pytest.raises(ChatError) as refused:
        attempt()
    assert (refused.value.code, refused.value.field) == (code, field)
