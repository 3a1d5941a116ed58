"""
The JSON frames pushed to clients, built from read-side views.
"""

from __future__ import annotations

from datetime import datetime

from projections.ports import Frame
from projections.views import MessageView, PresenceView, ReceiptView


def timestamp(moment: datetime | None) -> str | None:
    """
    Render a server time as ISO 8601 in UTC with millisecond precision.
    """
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_fields(message: MessageView) -> Frame:
    return {
        "conversation_id": str(message.conversation_id),
        "message_id": str(message.message_id),
        "seq": message.seq,
        "sender": message.sender,
        "body": message.body,
        "sent_at": timestamp(message.sent_at),
        "client_msg_id": message.client_msg_id,
    }


def message_frame(message: MessageView) -> Frame:
    return {"type": "message", **message_fields(message)}


def receipt_fields(receipt: ReceiptView) -> Frame:
    return {
        "conversation_id": str(receipt.conversation_id),
        "user": receipt.user,
        "delivered_up_to": receipt.delivered_up_to,
        "read_up_to": receipt.read_up_to,
    }


def receipt_frame(receipt: ReceiptView) -> Frame:
    return {"type": "receipt", **receipt_fields(receipt)}


def presence_fields(presence: PresenceView) -> Frame:
    return {
        "user": presence.user,
        "online": presence.online,
        "last_seen": timestamp(presence.last_seen),
    }


def presence_frame(presence: PresenceView) -> Frame:
    return {"type": "presence", **presence_fields(presence)}
