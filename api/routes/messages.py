"""
Sending over HTTP: the same command, and the same ack, as the socket's ``send``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CurrentUser, ServicesDep
from api.frames import AckOut, ErrorOut, ack_fields
from commands.models import SendMessage

router = APIRouter(prefix="/v1", tags=["messages"])


@router.post(
    "/messages",
    status_code=201,
    response_model=AckOut,
    responses={200: {"model": AckOut}, 404: {"model": ErrorOut}},
)
def send_message(
    command: SendMessage, user: CurrentUser, services: ServicesDep, response: Response
) -> dict[str, object]:
    """Send a message; 201 when recorded, 200 when it repeats an earlier send."""
    sent = services.chat.send_message(command, sender=user)
    if sent.duplicate:
        response.status_code = 200
    return ack_fields(sent)
