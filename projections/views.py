"""
What the read side answers with: plain, immutable views of projected rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.conversation import Receipt
from domain.ids import UserId

# The read side shows receipts exactly as the model decides them.
ReceiptView = Receipt


@dataclass(frozen=True)
class MessageView:
    conversation_id: UUID
    seq: int
    message_id: UUID
    sender: UserId
    body: str
    sent_at: datetime
    client_msg_id: str


@dataclass(frozen=True)
class ConversationView:
    """
    One conversation as one of its participants sees it in their list.
    """

    conversation_id: UUID
    user: UserId
    peer: UserId
    last_seq: int
    last_message: MessageView | None
    unread: int
    mine: ReceiptView
    theirs: ReceiptView


@dataclass(frozen=True)
class HistoryPage:
    """
    A slice of history; ``cursor`` continues it, ``end`` says nothing is left.
    """

    messages: list[MessageView]
    cursor: int | None
    end: bool


@dataclass(frozen=True)
class PresenceView:
    user: UserId
    online: bool
    last_seen: datetime | None
