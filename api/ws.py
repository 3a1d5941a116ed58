"""
The WebSocket protocol at ``/v1/ws``: frames in, commands out, pushes back.

Frames of one socket are handled one at a time, in the order they arrive, so
one device's messages keep the order it sent them in. docs/protocol.md is the
contract; this module is its one implementation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from api.auth import InvalidTokenError, bearer_token, user_of
from api.errors import (
    HISTORY_UNAVAILABLE,
    RequestError,
    error_frame,
    from_validation,
)
from api.frames import ack_fields
from api.hub import Connection, Hub
from commands.models import MarkDelivered, MarkRead, SendMessage
from domain.conversation import MAX_SEQ
from domain.errors import ChatError
from domain.ids import UserId
from infra.bootstrap import Services
from infra.logging import connection_context, user_context
from projections.frames import message_fields, receipt_fields
from projections.ports import Frame, ReadModelUnavailableError

logger = logging.getLogger(__name__)

router = APIRouter()

SYNC_PAGE = 100
POLICY_VIOLATION = 1008
FORBIDDEN_FIELDS = ("from", "sender")


Cursor = Annotated[int, Field(ge=0, le=MAX_SEQ)]
MAX_REF_BYTES = 256
LOGGED_CHARACTERS = 80


class Sync(BaseModel):
    cursors: dict[UUID, Cursor] = Field(default_factory=dict)


Handler = Callable[["Session", dict[str, Any]], Awaitable[None]]


class Session:
    """
    One authenticated socket: reads frames, runs them, replies in order.
    """

    def __init__(self, services: Services, connection: Connection) -> None:
        self.services = services
        self.connection = connection
        self.user: UserId = connection.user

    async def handle(self, text: str | None) -> None:
        ref: object = None
        frame: dict[str, Any] = {}
        try:
            frame = parse_frame(text)
            ref = check_ref(frame.get("ref"))
            check_frame(frame)
            handler = HANDLERS.get(frame["type"])
            if handler is None:
                msg = f"unknown frame type {frame['type']!r}"
                raise RequestError("unknown_type", msg, field="type")
            await handler(self, frame)
        except ValidationError as e:
            await self.refuse(from_validation(e), ref, frame)
        except ChatError as e:
            await self.refuse(e, ref, frame)
        except ReadModelUnavailableError as e:
            logger.warning("history unavailable on %s: %s", self.connection.id, e)
            await self.connection.reply(error_frame(HISTORY_UNAVAILABLE, ref))
        except Exception:
            logger.exception(
                "frame failed on connection %s of %s (conversation %s)",
                self.connection.id,
                self.user,
                loggable(frame.get("conversation_id")),
            )
            internal = RequestError("internal_error", "something went wrong")
            await self.connection.reply(error_frame(internal, ref))

    async def refuse(
        self, error: ChatError, ref: object, frame: dict[str, Any]
    ) -> None:
        # Name the conversation or peer the frame was about, never its body.
        logger.info(
            "refused a frame from %s on %s: %s (field %s, conversation %s, to %s)",
            self.user,
            self.connection.id,
            error.code,
            error.field,
            loggable(frame.get("conversation_id")),
            loggable(frame.get("to")),
        )
        await self.connection.reply(error_frame(error, ref))

    async def reply(self, frame_type: str, ref: object, **fields: Any) -> None:
        await self.connection.reply({"type": frame_type, "ref": ref, **fields})


def parse_frame(text: str | None) -> dict[str, Any]:
    """
    Decode a text frame into a JSON object.
    """
    if text is None:
        raise RequestError("invalid_frame", "frames must be JSON text, not binary")
    try:
        frame = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise RequestError("invalid_json", "the frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise RequestError("invalid_frame", "a frame must be a JSON object")
    return frame


def _refuse_constant(name: str) -> None:
    # NaN and Infinity are not JSON, and a browser could not read them back.
    msg = f"{name} is not a JSON value"
    raise ValueError(msg)


def check_ref(ref: object) -> object:
    """
    Return a ``ref`` that can be echoed as it came, or refuse it.
    """
    try:
        size = len(json.dumps(ref, ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        size = MAX_REF_BYTES + 1
    if size > MAX_REF_BYTES:
        msg = f"ref must be valid UTF-8 JSON of at most {MAX_REF_BYTES} bytes"
        raise RequestError("invalid_field", msg, field="ref")
    return ref


def loggable(value: object) -> str:
    """
    A client-sent value as it may appear in a log line: clipped, escaped.
    """
    if not isinstance(value, str):
        return type(value).__name__
    return repr(value[:LOGGED_CHARACTERS])


def check_frame(frame: dict[str, Any]) -> None:
    """
    Refuse an object without a string ``type``, or one that names a sender.
    """
    if not isinstance(frame.get("type"), str):
        raise RequestError("missing_field", "a frame needs a type", field="type")
    for name in FORBIDDEN_FIELDS:
        if name in frame:
            msg = "the sender is whoever holds the token; do not name one"
            raise RequestError("forbidden_field", msg, field=name)


async def on_send(session: Session, frame: dict[str, Any]) -> None:
    command = SendMessage.model_validate(frame)
    sent = await run_in_threadpool(
        session.services.chat.send_message, command, sender=session.user
    )
    await session.reply("ack", frame.get("ref"), **ack_fields(sent))


async def on_delivered(session: Session, frame: dict[str, Any]) -> None:
    command = MarkDelivered.model_validate(frame)
    receipt = await run_in_threadpool(
        session.services.chat.mark_delivered, command, user=session.user
    )
    await session.reply("receipt", frame.get("ref"), **receipt_fields(receipt))


async def on_read(session: Session, frame: dict[str, Any]) -> None:
    command = MarkRead.model_validate(frame)
    receipt = await run_in_threadpool(
        session.services.chat.mark_read, command, user=session.user
    )
    await session.reply("receipt", frame.get("ref"), **receipt_fields(receipt))


async def on_ping(session: Session, frame: dict[str, Any]) -> None:
    await session.reply("pong", frame.get("ref"))


async def on_sync(session: Session, frame: dict[str, Any]) -> None:
    """
    Send every message after each cursor, then current receipts, then ``synced``.

    Live pushes wait until the sync is done, and those it already covered are
    dropped, so the client sees each message once and in seq order.
    """
    cursors = Sync.model_validate(frame).cursors
    ref = frame.get("ref")
    history = session.services.history
    session.connection.hold_live()
    try:
        views = await run_in_threadpool(history.conversations_of, session.user)
        for view in views:
            after = max(0, cursors.get(view.conversation_id, 0))
            await _sync_conversation(session, ref, view.conversation_id, after)
        await session.reply("synced", ref, conversations=len(views))
    finally:
        session.connection.release_live()


async def _sync_conversation(
    session: Session, ref: object, conversation_id: UUID, after: int
) -> None:
    history = session.services.history
    cid = str(conversation_id)
    while True:
        page = await run_in_threadpool(
            history.page, conversation_id, after_seq=after, limit=SYNC_PAGE
        )
        fields: Frame = {
            "conversation_id": cid,
            "messages": [message_fields(message) for message in page.messages],
            "complete": page.end,
        }
        if page.end:
            receipts = await run_in_threadpool(history.receipts, conversation_id)
            fields["receipts"] = [receipt_fields(receipt) for receipt in receipts]
        await session.reply("sync_page", ref, **fields)
        if page.messages:
            session.connection.note_sent(cid, page.messages[-1].seq)
        if page.end or page.cursor is None:
            return
        after = page.cursor


HANDLERS: dict[str, Handler] = {
    "send": on_send,
    "delivered": on_delivered,
    "read": on_read,
    "sync": on_sync,
    "ping": on_ping,
}


def authenticate(websocket: WebSocket, services: Services) -> UserId | None:
    token = bearer_token(websocket.headers.get("authorization"))
    token = token or websocket.query_params.get("token")
    if not token:
        return None
    try:
        return user_of(services.settings.signing_secret(), token)
    except InvalidTokenError:
        return None


@router.websocket("/v1/ws")
async def chat_socket(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    hub: Hub = websocket.app.state.hub
    user = authenticate(websocket, services)
    if user is None:
        logger.info("refused a socket without a valid token")
        await websocket.close(code=POLICY_VIOLATION)
        return

    await websocket.accept()
    connection = Connection(
        websocket, user, outbox_limit=services.settings.outbox_limit
    )
    connection_context.set(connection.id)
    user_context.set(user)
    await _serve(websocket, services, hub, connection)


async def _serve(
    websocket: WebSocket, services: Services, hub: Hub, connection: Connection
) -> None:
    hub.add(connection)
    services.watch(connection.user, connection.id)
    await _presence(services.presence.connected, connection)
    logger.info("connection %s opened by %s", connection.id, connection.user)
    writer = asyncio.create_task(connection.write())
    session = Session(services, connection)
    close_code: int | None = None
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                close_code = message.get("code")
                break
            await session.handle(message.get("text"))
    except WebSocketDisconnect as e:
        close_code = e.code
    finally:
        hub.remove(connection)
        services.unwatch(connection.user, connection.id)
        await _presence(services.presence.disconnected, connection)
        connection.close()
        await asyncio.gather(writer, return_exceptions=True)
        logger.info(
            "connection %s of %s closed (code %s)",
            connection.id,
            connection.user,
            close_code,
        )


async def _presence(
    change: Callable[[UserId, str], None], connection: Connection
) -> None:
    """
    Record a presence change; a presence store outage never breaks a socket.
    """
    try:
        await run_in_threadpool(change, connection.user, connection.id)
    except Exception:
        # The gateway re-registers its live sockets once the store is back.
        logger.exception("presence change failed for %s", connection.user)
