"""
The gateway's sockets: who is connected here, and each socket's outbound queue.

Every frame to a socket goes through its outbox and one writer task, so
frames leave in the order they were queued. Live pushes are held back while
the socket syncs, then sent unless sync already delivered them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict

from starlette.websockets import WebSocket

from domain.ids import UserId
from projections.ports import Frame

logger = logging.getLogger(__name__)

REPLY_BACKLOG = 64
OVERFLOW_CLOSE_CODE = 1013  # "Try again later": reconnect and sync.


class Connection:
    """
    One WebSocket of one user's device.
    """

    def __init__(self, websocket: WebSocket, user: UserId, *, outbox_limit: int):
        self.id = uuid.uuid4().hex[:12]
        self.user = user
        self._websocket = websocket
        self._outbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._outbox_limit = outbox_limit
        self._drained = asyncio.Event()
        self._syncing = 0
        self._held: list[Frame] = []
        # The highest seq this socket was sent per conversation, to drop repeats.
        self._sent_up_to: dict[str, int] = {}
        self.overflowed = False
        self._finished = False

    async def reply(self, frame: Frame) -> None:
        """
        Queue a direct reply, waiting while the socket is far behind.
        """
        self._outbox.put_nowait(frame)
        while self._outbox.qsize() > REPLY_BACKLOG and not self._finished:
            self._drained.clear()
            await self._drained.wait()

    def push(self, frame: Frame) -> None:
        """
        Queue a live frame, unless a sync in progress will cover it.
        """
        if self._syncing:
            self._held.append(frame)
        elif self._is_new(frame):
            self._enqueue_live(frame)

    def note_sent(self, conversation_id: str, seq: int) -> None:
        if seq > self._sent_up_to.get(conversation_id, 0):
            self._sent_up_to[conversation_id] = seq

    def hold_live(self) -> None:
        self._syncing += 1

    def release_live(self) -> None:
        self._syncing -= 1
        if self._syncing:
            return
        held, self._held = self._held, []
        for frame in held:
            self.push(frame)

    def close(self) -> None:
        self._outbox.put_nowait(None)

    async def write(self) -> None:
        """
        Send queued frames in order until the connection closes or falls behind.

        Only this task sends, so the close for a socket that fell too far
        behind is sent here too, never beside a frame in flight.
        """
        try:
            while (frame := await self._outbox.get()) is not None:
                if self.overflowed:
                    await self._websocket.close(OVERFLOW_CLOSE_CODE)
                    return
                await self._send(frame)
                if self._outbox.qsize() <= REPLY_BACKLOG:
                    self._drained.set()
        finally:
            # Whoever waits for room in the outbox must not wait for a writer
            # that is gone.
            self._finished = True
            self._drained.set()

    async def _send(self, frame: Frame) -> None:
        try:
            text = json.dumps(frame, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError):
            # Nothing that reaches a frame should be unencodable; if something
            # does, lose that frame, not the whole socket.
            logger.error(
                "dropped an unencodable %s frame on %s", frame["type"], self.id
            )
            return
        await self._websocket.send_text(text.decode("utf-8"))

    def _is_new(self, frame: Frame) -> bool:
        if frame.get("type") != "message":
            return True
        conversation_id, seq = frame["conversation_id"], frame["seq"]
        if seq <= self._sent_up_to.get(conversation_id, 0):
            return False
        self._sent_up_to[conversation_id] = seq
        return True

    def _enqueue_live(self, frame: Frame) -> None:
        if self.overflowed:
            return
        if self._outbox.qsize() >= self._outbox_limit:
            logger.warning(
                "connection %s of %s fell too far behind", self.id, self.user
            )
            self.overflowed = True
            return
        self._outbox.put_nowait(frame)


class Hub:
    """
    Publishes frames to this gateway's sockets; safe to call from any thread.
    """

    def __init__(self) -> None:
        self._by_user: dict[UserId, set[Connection]] = defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, connection: Connection) -> None:
        self._by_user[connection.user].add(connection)

    def remove(self, connection: Connection) -> None:
        devices = self._by_user.get(connection.user)
        if devices is not None:
            devices.discard(connection)
            if not devices:
                del self._by_user[connection.user]

    def publish(self, user: UserId, frame: Frame) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._deliver, user, frame)

    def connected_users(self) -> list[UserId]:
        return list(self._by_user)

    def _deliver(self, user: UserId, frame: Frame) -> None:
        for connection in tuple(self._by_user.get(user, ())):
            connection.push(frame)
