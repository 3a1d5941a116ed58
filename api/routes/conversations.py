"""
Reading history: a user's conversations, and one conversation's messages.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from api.deps import CurrentUser, ServicesDep, check_participant
from api.frames import (
    ConversationsOut,
    ErrorOut,
    HistoryPageOut,
    conversation_fields,
    page_fields,
)
from domain.conversation import MAX_SEQ

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

MAX_PAGE = 100


@router.get("", response_model=ConversationsOut)
def list_conversations(user: CurrentUser, services: ServicesDep) -> dict[str, object]:
    """The user's conversations, most recent activity first."""
    views = services.history.conversations_of(user)
    return {"conversations": [conversation_fields(view) for view in views]}


@router.get(
    "/{conversation_id}/messages",
    response_model=HistoryPageOut,
    responses={404: {"model": ErrorOut}},
)
def read_history(
    conversation_id: UUID,
    user: CurrentUser,
    services: ServicesDep,
    before_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, object]:
    """A page of messages: newest first, or oldest first after ``after_seq``."""
    check_participant(services, conversation_id, user)
    page = services.history.page(
        conversation_id, before_seq=before_seq, after_seq=after_seq, limit=limit
    )
    return page_fields(page)
