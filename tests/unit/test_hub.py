"""
A socket's outbox: order, and what happens to a client that falls behind.
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

from starlette.websockets import WebSocket

from api.hub import OVERFLOW_CLOSE_CODE, Connection


class SlowSocket:
    """
    A socket whose sends wait until the test lets them through.
    """

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.closed_with: int | None = None
        self.open = asyncio.Event()

    async def send_text(self, text: str) -> None:
        await self.open.wait()
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000) -> None:
        self.closed_with = code


def connection_on(socket: SlowSocket, *, limit: int) -> Connection:
    return Connection(cast(WebSocket, socket), "alice", outbox_limit=limit)


async def test_frames_leave_in_the_order_they_were_queued() -> None:
    socket = SlowSocket()
    connection = connection_on(socket, limit=100)
    writer = asyncio.create_task(connection.write())

    for seq in (1, 2, 3):
        connection.push({"type": "message", "conversation_id": "c", "seq": seq})
    await connection.reply({"type": "ack", "seq": 3})
    socket.open.set()
    connection.close()
    await asyncio.wait_for(writer, 5)

    assert [frame["seq"] for frame in socket.sent] == [1, 2, 3, 3]


async def test_a_client_that_falls_too_far_behind_is_closed_with_1013() -> None:
    # Given a socket that takes nothing while live frames pile up.
    socket = SlowSocket()
    connection = connection_on(socket, limit=5)
    writer = asyncio.create_task(connection.write())

    # When more frames arrive than its outbox holds.
    for seq in range(1, 21):
        connection.push({"type": "message", "conversation_id": "c", "seq": seq})
    socket.open.set()
    await asyncio.wait_for(writer, 5)

    # Then it is closed with "try again later", and no reply waits forever.
    assert connection.overflowed
    assert socket.closed_with == OVERFLOW_CLOSE_CODE
    assert len(socket.sent) < 20
    for n in range(100):
        await asyncio.wait_for(connection.reply({"type": "pong", "ref": n}), 1)


async def test_a_repeated_message_is_not_pushed_twice() -> None:
    socket = SlowSocket()
    socket.open.set()
    connection = connection_on(socket, limit=100)
    writer = asyncio.create_task(connection.write())

    connection.note_sent("c", 2)
    for seq in (1, 2, 3, 3):
        connection.push({"type": "message", "conversation_id": "c", "seq": seq})
    connection.close()
    await asyncio.wait_for(writer, 5)

    assert [frame["seq"] for frame in socket.sent] == [3]
