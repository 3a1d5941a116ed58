"""
Presence over HTTP, for the user themself and the people they talk to.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.deps import CurrentUser, ServicesDep
from api.frames import ErrorOut, PresenceOut, presence_out

router = APIRouter(prefix="/v1/presence", tags=["presence"])


@router.get("/{user}", response_model=PresenceOut, responses={404: {"model": ErrorOut}})
def read_presence(
    user: str, me: CurrentUser, services: ServicesDep
) -> dict[str, object]:
    """Whether ``user`` is online, and when they were last seen."""
    if user != me and user not in services.history.peers_of(me):
        # Strangers' presence is nobody's business, and 404 reveals nothing.
        raise HTTPException(404, "no such user among your conversations")
    return presence_out(services.presence.status(user))
