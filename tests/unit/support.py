"""
Helpers shared by the unit tests: a recording publisher and short-hand commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

from commands.models import MarkDelivered, MarkRead, SendMessage
from commands.service import ChatService
from domain.conversation import Conversation, Receipt, SentMessage
from domain.ids import UserId
from infra.follower import LogFollower
from infra.sqlite import SQLiteHistory
from projections.fanout import FanOut
from projections.ports import Frame, LoggedEvent
from projections.runner import HistoryProjector
from projections.views import MessageView


class RecordingPublisher:
    """
    A publisher that remembers every frame it was asked to deliver, in order.
    """

    def __init__(self) -> None:
        self.published: list[tuple[UserId, Frame]] = []

    def publish(self, user: UserId, frame: Frame) -> None:
        self.published.append((user, frame))

    def frames_to(self, user: UserId, kind: str | None = None) -> list[Frame]:
        return [
            frame
            for to, frame in self.published
            if to == user and (kind is None or frame["type"] == kind)
        ]


class FakeClock:
    """
    A clock that only moves when a test moves it.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def send(
    chat: ChatService,
    *,
    sender: UserId,
    to: UserId,
    body: str = "hello",
    client_msg_id: str,
) -> SentMessage:
    command = SendMessage(to=to, body=body, client_msg_id=client_msg_id)
    return chat.send_message(command, sender=sender)


def read(
    chat: ChatService, *, user: UserId, conversation_id: UUID, up_to_seq: int
) -> Receipt:
    command = MarkRead(conversation_id=conversation_id, up_to_seq=up_to_seq)
    return chat.mark_read(command, user=user)


def delivered(
    chat: ChatService, *, user: UserId, conversation_id: UUID, up_to_seq: int
) -> Receipt:
    command = MarkDelivered(conversation_id=conversation_id, up_to_seq=up_to_seq)
    return chat.mark_delivered(command, user=user)


def follower(
    chat: ChatService,
    history: SQLiteHistory,
    publisher: RecordingPublisher | None = None,
    *,
    batch_size: int = 500,
) -> LogFollower:
    """
    A log follower that is only ever driven by ``catch_up`` in the test's thread.
    """
    return LogFollower(
        chat,
        HistoryProjector(history),
        FanOut(history, publisher or RecordingPublisher()),
        batch_size=batch_size,
        poll_seconds=60,
    )


def logged_events(chat: ChatService) -> list[LoggedEvent]:
    """
    Every event in the store, read back from the notification log in order.
    """
    head = chat.recorder.max_notification_id() or 0
    notifications = chat.recorder.select_notifications(start=1, limit=head + 1)
    return [LoggedEvent(n.id, chat.mapper.to_domain_event(n)) for n in notifications]


def sent_events(chat: ChatService) -> list[Conversation.MessageSent]:
    return [
        logged.event
        for logged in logged_events(chat)
        if isinstance(logged.event, Conversation.MessageSent)
    ]


def all_messages(history: SQLiteHistory, conversation_id: UUID) -> list[MessageView]:
    """
    The whole history of a conversation, oldest first.
    """
    messages: list[MessageView] = []
    after = 0
    while True:
        page = history.page(conversation_id, after_seq=after, limit=100)
        messages.extend(page.messages)
        if page.end:
            return messages
        assert page.cursor is not None
        after = page.cursor


def conversation_events(
    pairs: list[tuple[UserId, UserId]], messages_each: int
) -> Iterator[LoggedEvent]:
    """
    Events of real aggregates, numbered as the log would number them.
    """
    position = 0
    for first, second in pairs:
        conversation = Conversation.start(first, second)
        for n in range(1, messages_each + 1):
            conversation.send_message(
                sender=first, client_msg_id=f"m{n}", body=f"message {n}"
            )
        for domain_event in conversation.collect_events():
            position += 1
            yield LoggedEvent(position, domain_event)
