"""
Fan-out of messages and receipts, and presence announcements, in one process.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from commands.service import ChatService
from domain.ids import conversation_id
from infra.memory import MemoryPresence
from infra.sqlite import SQLiteHistory
from projections.frames import timestamp
from projections.presence import PresenceTracker
from tests.unit.support import (
    FakeClock,
    RecordingPublisher,
    delivered,
    follower,
    read,
    send,
)


def test_a_message_is_pushed_to_both_participants(
    chat: ChatService, history: SQLiteHistory, publisher: RecordingPublisher
) -> None:
    # Given a follower running beside the service,
    projecting = follower(chat, history, publisher)

    # when alice sends bob a message,
    sent = send(chat, sender="alice", to="bob", body="שלום 👋🏽", client_msg_id="c1")
    projecting.catch_up()

    # then both get the same message frame, matching the ack.
    expected = {
        "type": "message",
        "conversation_id": str(sent.conversation_id),
        "message_id": str(sent.message_id),
        "seq": 1,
        "sender": "alice",
        "body": "שלום 👋🏽",
        "sent_at": timestamp(sent.sent_at),
        "client_msg_id": "c1",
    }
    assert publisher.frames_to("alice") == [expected]
    assert publisher.frames_to("bob") == [expected]
    assert {user for user, _ in publisher.published} == {"alice", "bob"}


@pytest.mark.parametrize(
    ("mark", "marks"),
    [(delivered, (2, 0)), (read, (2, 2))],
    ids=["delivered", "read"],
)
def test_a_receipt_is_pushed_to_both_with_both_marks(
    chat: ChatService,
    history: SQLiteHistory,
    publisher: RecordingPublisher,
    mark: Callable[..., object],
    marks: tuple[int, int],
) -> None:
    # Given alice sent bob two messages,
    projecting = follower(chat, history, publisher)
    for n in (1, 2):
        send(chat, sender="alice", to="bob", client_msg_id=f"c{n}")
    cid = conversation_id("alice", "bob")

    # when bob marks them,
    mark(chat, user="bob", conversation_id=cid, up_to_seq=2)
    projecting.catch_up()

    # then both sides get bob's receipt with his delivered and read marks.
    expected = {
        "type": "receipt",
        "conversation_id": str(cid),
        "user": "bob",
        "delivered_up_to": marks[0],
        "read_up_to": marks[1],
    }
    assert publisher.frames_to("alice", "receipt") == [expected]
    assert publisher.frames_to("bob", "receipt") == [expected]


def test_a_mark_that_does_not_rise_pushes_nothing(
    chat: ChatService, history: SQLiteHistory, publisher: RecordingPublisher
) -> None:
    # Given bob read alice's only message,
    projecting = follower(chat, history, publisher)
    send(chat, sender="alice", to="bob", client_msg_id="c1")
    cid = conversation_id("alice", "bob")
    read(chat, user="bob", conversation_id=cid, up_to_seq=1)
    projecting.catch_up()
    before = list(publisher.published)

    # when a stale delivered mark arrives, nobody is told anything new.
    delivered(chat, user="bob", conversation_id=cid, up_to_seq=1)
    projecting.catch_up()
    assert publisher.published == before


def test_frames_go_only_to_the_conversation_s_participants(
    chat: ChatService, history: SQLiteHistory, publisher: RecordingPublisher
) -> None:
    projecting = follower(chat, history, publisher)
    send(chat, sender="alice", to="bob", client_msg_id="c1")
    send(chat, sender="carol", to="dave", client_msg_id="c1")
    projecting.catch_up()

    assert [f["sender"] for f in publisher.frames_to("bob")] == ["alice"]
    assert [f["sender"] for f in publisher.frames_to("dave")] == ["carol"]


# Presence (case 4).


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def presence(
    chat: ChatService,
    history: SQLiteHistory,
    publisher: RecordingPublisher,
    clock: FakeClock,
) -> PresenceTracker:
    # Alice shares conversations with bob and carol; dave is a stranger.
    send(chat, sender="alice", to="bob", client_msg_id="c1")
    send(chat, sender="carol", to="alice", client_msg_id="c1")
    send(chat, sender="dave", to="erin", client_msg_id="c1")
    follower(chat, history).catch_up()
    return PresenceTracker(MemoryPresence(), history, publisher, clock=clock)


def test_a_second_device_changes_nothing_until_the_last_one_closes(
    presence: PresenceTracker, publisher: RecordingPublisher, clock: FakeClock
) -> None:
    # Given alice is connected on two devices,
    presence.connected("alice", "phone")
    clock.advance(5)
    presence.connected("alice", "laptop")
    assert [f["online"] for f in publisher.frames_to("bob", "presence")] == [True]

    # when the first closes, she stays online and nobody is told,
    clock.advance(30)
    presence.disconnected("alice", "phone")
    assert presence.status("alice").online
    assert len(publisher.frames_to("bob", "presence")) == 1

    # and when the second closes, exactly one offline announcement goes to each
    # peer, with the time of that close.
    closed_at = clock.advance(30)
    presence.disconnected("alice", "laptop")
    offline = {
        "type": "presence",
        "user": "alice",
        "online": False,
        "last_seen": timestamp(closed_at),
    }
    for peer in ("bob", "carol"):
        assert publisher.frames_to(peer, "presence")[1:] == [offline]
    assert publisher.frames_to("dave") == []
    assert publisher.frames_to("alice") == []
    status = presence.status("alice")
    assert (status.online, status.last_seen) == (False, closed_at)


def test_a_user_who_never_connected_is_offline_with_no_last_seen(
    presence: PresenceTracker,
) -> None:
    status = presence.status("bob")
    assert (status.online, status.last_seen) == (False, None)


def test_closing_an_unknown_connection_announces_nothing(
    presence: PresenceTracker, publisher: RecordingPublisher
) -> None:
    presence.disconnected("alice", "never-opened")
    presence.connected("alice", "phone")
    presence.disconnected("alice", "never-opened")

    assert [f["online"] for f in publisher.frames_to("bob", "presence")] == [True]
    assert presence.status("alice").online


def test_coming_back_online_is_announced_once_more(
    presence: PresenceTracker, publisher: RecordingPublisher, clock: FakeClock
) -> None:
    presence.connected("alice", "phone")
    presence.disconnected("alice", "phone")
    clock.advance(60)
    presence.connected("alice", "phone")

    frames = publisher.frames_to("bob", "presence")
    assert [f["online"] for f in frames] == [True, False, True]
    assert presence.status("alice").online
