"""
The Conversation aggregate's rules, without any store.
"""

from __future__ import annotations

import pytest

from domain.conversation import Conversation
from domain.errors import (
    BodyTooLargeError,
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
