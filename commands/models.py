"""
Commands a client can issue, validated before they reach the model.

The sender is never a field: it always comes from the authenticated token.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.conversation import MAX_SEQ


class Command(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SendMessage(Command):
    """
    Send ``body`` to the user ``to``, or into the conversation ``conversation_id``.
    """

    to: str | None = None
    conversation_id: UUID | None = None
    body: str
    client_msg_id: str

    @model_validator(mode="after")
    def _addressed_once(self) -> SendMessage:
        if (self.to is None) == (self.conversation_id is None):
            msg = "give exactly one of 'to' and 'conversation_id'"
            raise ValueError(msg)
        return self


class MarkDelivered(Command):
    """
    Say that messages up to ``up_to_seq`` reached one of the user's devices.
    """

    conversation_id: UUID
    up_to_seq: int = Field(ge=0, le=MAX_SEQ)


class MarkRead(Command):
    """
    Say that the user has read messages up to ``up_to_seq``.
    """

    conversation_id: UUID
    up_to_seq: int = Field(ge=0, le=MAX_SEQ)
