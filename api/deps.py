"""
FastAPI dependencies: the built services and the authenticated user.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, HTTPException, Request

from api.auth import InvalidTokenError, bearer_token, user_of
from api.hub import Hub
from domain.errors import ConversationNotFoundError
from domain.ids import UserId
from infra.bootstrap import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


ServicesDep = Annotated[Services, Depends(get_services)]
HubDep = Annotated[Hub, Depends(get_hub)]


def get_current_user(
    services: ServicesDep,
    authorization: Annotated[str | None, Header()] = None,
) -> UserId:
    """
    The user named by the bearer token; anything else is refused with 401.
    """
    token = bearer_token(authorization)
    if token is None:
        raise _unauthenticated("a bearer token is required")
    try:
        return user_of(services.settings.signing_secret(), token)
    except InvalidTokenError:
        raise _unauthenticated("the token is not valid") from None


CurrentUser = Annotated[UserId, Depends(get_current_user)]


def check_participant(services: Services, conversation_id: UUID, user: UserId) -> None:
    """
    Refuse, as not found, a conversation that ``user`` does not take part in.
    """
    participants = services.history.participants(conversation_id)
    if participants is None or user not in participants:
        raise ConversationNotFoundError("no such conversation")


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})
