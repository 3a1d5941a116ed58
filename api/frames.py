"""
The shapes of replies, over HTTP and on the socket, built in one place.

The pydantic models document the HTTP API; the builders return plain dicts so
that a frame and a response carrying the same thing are the same JSON.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from domain.conversation import SentMessage
from projections.frames import (
    message_fields,
    presence_fields,
    receipt_fields,
    timestamp,
)
from projections.history import preview_of
from projections.views import ConversationView, HistoryPage, PresenceView


class MessageOut(BaseModel):
    conversation_id: str
    message_id: str
    seq: int
    sender: str
    body: str
    sent_at: str
    client_msg_id: str


class AckOut(BaseModel):
    client_msg_id: str
    conversation_id: str
    message_id: str
    seq: int
    sent_at: str


class ReceiptOut(BaseModel):
    conversation_id: str
    user: str
    delivered_up_to: int
    read_up_to: int


class LastMessageOut(BaseModel):
    message_id: str
    seq: int
    sender: str
    preview: str
    sent_at: str


class ConversationOut(BaseModel):
    conversation_id: str
    peer: str
    last_seq: int
    last_message: LastMessageOut | None
    unread: int
    mine: ReceiptOut
    theirs: ReceiptOut


class ConversationsOut(BaseModel):
    conversations: list[ConversationOut]


class HistoryPageOut(BaseModel):
    messages: list[MessageOut]
    next_cursor: int | None
    end_of_history: bool


class PresenceOut(BaseModel):
    user: str
    online: bool
    last_seen: str | None


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None


class ErrorOut(BaseModel):
    error: ErrorDetail


def ack_fields(sent: SentMessage) -> dict[str, Any]:
    return {
        "client_msg_id": sent.client_msg_id,
        "conversation_id": str(sent.conversation_id),
        "message_id": str(sent.message_id),
        "seq": sent.seq,
        "sent_at": timestamp(sent.sent_at),
    }


def conversation_fields(view: ConversationView) -> dict[str, Any]:
    last = view.last_message
    last_message = None
    if last is not None:
        last_message = {
            "message_id": str(last.message_id),
            "seq": last.seq,
            "sender": last.sender,
            "preview": preview_of(last.body),
            "sent_at": timestamp(last.sent_at),
        }
    return {
        "conversation_id": str(view.conversation_id),
        "peer": view.peer,
        "last_seq": view.last_seq,
        "last_message": last_message,
        "unread": view.unread,
        "mine": receipt_fields(view.mine),
        "theirs": receipt_fields(view.theirs),
    }


def page_fields(page: HistoryPage) -> dict[str, Any]:
    return {
        "messages": [message_fields(message) for message in page.messages],
        "next_cursor": page.cursor,
        "end_of_history": page.end,
    }


def presence_out(presence: PresenceView) -> dict[str, Any]:
    return presence_fields(presence)
