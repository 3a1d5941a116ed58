"""
The history projection: conversations, messages and receipt marks.

``changes_for`` turns one event into row changes; every change is idempotent
(messages are keyed by seq, marks only move up), and stores also skip any
change whose (conversation id, version) they have already applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.conversation import Conversation
from domain.ids import UserId
from projections.views import MessageView

PREVIEW_CHARACTERS = 80


@dataclass(frozen=True)
class ConversationOpened:
    conversation_id: UUID
    version: int
    user_a: UserId
    user_b: UserId
    started_at: datetime


@dataclass(frozen=True)
class MessageStored:
    version: int
    message: MessageView

    @property
    def conversation_id(self) -> UUID:
        return self.message.conversation_id


@dataclass(frozen=True)
class MarksRaised:
    """
    Raise a participant's marks to at least these values; never lower them.
    """

    conversation_id: UUID
    version: int
    user: UserId
    delivered_up_to: int
    read_up_to: int


HistoryChange = ConversationOpened | MessageStored | MarksRaised


def changes_for(event: object) -> list[HistoryChange]:
    """
    Return the row changes that one conversation event makes to history.
    """
    if isinstance(event, Conversation.Started):
        return [_opened(event)]
    if isinstance(event, Conversation.MessageSent):
        return [MessageStored(event.originator_version, message_of(event))]
    if isinstance(event, Conversation.Delivered):
        return [_raised(event, delivered=event.up_to_seq, read=0)]
    if isinstance(event, Conversation.Read):
        # Read implies delivered, so both marks rise together.
        return [_raised(event, delivered=event.up_to_seq, read=event.up_to_seq)]
    return []


def message_of(event: Conversation.MessageSent) -> MessageView:
    return MessageView(
        conversation_id=event.originator_id,
        seq=event.seq,
        message_id=event.message_id,
        sender=event.sender,
        body=event.body,
        sent_at=event.timestamp,
        client_msg_id=event.client_msg_id,
    )


def preview_of(body: str) -> str:
    """
    The start of a body, for conversation lists; never cut inside a character.
    """
    return body[:PREVIEW_CHARACTERS]


def _opened(event: Conversation.Started) -> ConversationOpened:
    return ConversationOpened(
        conversation_id=event.originator_id,
        version=event.originator_version,
        user_a=event.user_a,
        user_b=event.user_b,
        started_at=event.timestamp,
    )


def _raised(
    event: Conversation.Delivered | Conversation.Read, *, delivered: int, read: int
) -> MarksRaised:
    return MarksRaised(
        conversation_id=event.originator_id,
        version=event.originator_version,
        user=event.user,
        delivered_up_to=delivered,
        read_up_to=read,
    )
