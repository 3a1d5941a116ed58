"""
Real clients for the e2e suite: a WebSocket device, and a person with HTTP.

``ChatClient`` keeps every frame its socket was sent, in order, so a test can
wait for one frame and later assert on everything that came. Every wait is
bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any
from uuid import uuid4

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.deployment import Deployment

Frame = dict[str, Any]
Predicate = Callable[[Frame], bool]

TIMEOUT = 10.0


def is_type(frame_type: str, **fields: object) -> Predicate:
    """
    Match frames of ``frame_type`` whose ``fields`` have the given values.
    """

    def matches(frame: Frame) -> bool:
        return frame.get("type") == frame_type and all(
            frame.get(name) == value for name, value in fields.items()
        )

    return matches


def has_ref(ref: object) -> Predicate:
    """
    Match the replies that echo ``ref``.
    """

    def matches(frame: Frame) -> bool:
        return frame.get("ref") == ref

    return matches


def send_frame(
    body: str,
    client_msg_id: str,
    *,
    to: str | None = None,
    conversation_id: str | None = None,
) -> Frame:
    """
    A ``send`` frame addressed to a user or into a conversation.
    """
    frame: Frame = {"type": "send", "body": body, "client_msg_id": client_msg_id}
    if to is not None:
        frame["to"] = to
    if conversation_id is not None:
        frame["conversation_id"] = conversation_id
    return frame


async def open_socket(
    url: str, *, token: str | None, via_query: bool = False
) -> ClientConnection:
    """
    Open a WebSocket to ``url`` with the token in a header or the query string.
    """
    headers = {}
    if token is not None and via_query:
        url = f"{url}?token={token}"
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await connect(
        url, additional_headers=headers, proxy=None, open_timeout=TIMEOUT
    )


class ChatClient:
    """
    One device of one user on ``/v1/ws``.
    """

    def __init__(self, websocket: ClientConnection, user: str) -> None:
        self.user = user
        self.frames: list[Frame] = []
        self.close_code: int | None = None
        self._websocket = websocket
        self._changed = asyncio.Condition()
        self._closed = asyncio.Event()
        self._refs = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    async def send(self, frame: Frame) -> None:
        await self._websocket.send(json.dumps(frame, ensure_ascii=False))

    async def send_raw(self, data: str | bytes) -> None:
        await self._websocket.send(data)

    def new_ref(self) -> str:
        return f"{self.user}-{next(self._refs)}"

    async def request(self, frame: Frame, *, timeout: float = TIMEOUT) -> Frame:
        """
        Send ``frame`` with a fresh ``ref`` and return the reply that echoes it.
        """
        ref = self.new_ref()
        await self.send({**frame, "ref": ref})
        return await self.wait_for(has_ref(ref), timeout=timeout)

    async def request_all(
        self, frames: list[Frame], *, timeout: float = TIMEOUT
    ) -> list[Frame]:
        """
        Send every frame without waiting, then return their replies in order.
        """
        refs = []
        for frame in frames:
            refs.append(self.new_ref())
            await self.send({**frame, "ref": refs[-1]})
        replies = []
        for ref in refs:
            replies.append(await self.wait_for(has_ref(ref), timeout=timeout))
        return replies

    async def ping(self) -> None:
        """
        A round trip: whatever the server queued for us before it is here now.
        """
        reply = await self.request({"type": "ping"})
        assert reply["type"] == "pong", reply

    async def wait_for(
        self, predicate: Predicate, *, timeout: float = TIMEOUT
    ) -> Frame:
        """
        The first frame received, before or after this call, that matches.
        """
        try:
            async with asyncio.timeout(timeout), self._changed:
                while True:
                    for frame in self.frames:
                        if predicate(frame):
                            return frame
                    if self._closed.is_set():
                        msg = f"{self.user}'s socket closed ({self.close_code})"
                        raise AssertionError(msg)
                    await self._changed.wait()
        except TimeoutError:
            msg = f"no matching frame within {timeout}s; last: {self.frames[-3:]}"
            raise AssertionError(msg) from None

    async def wait_closed(self, *, timeout: float = TIMEOUT) -> int | None:
        async with asyncio.timeout(timeout):
            await self._closed.wait()
        return self.close_code

    def of_type(self, frame_type: str) -> list[Frame]:
        return [frame for frame in self.frames if frame.get("type") == frame_type]

    def messages(self, conversation_id: str) -> list[Frame]:
        return [
            frame
            for frame in self.of_type("message")
            if frame["conversation_id"] == conversation_id
        ]

    def latest_seq(self, conversation_id: str) -> int:
        return max((f["seq"] for f in self.messages(conversation_id)), default=0)

    async def close(self) -> None:
        await self._websocket.close()
        await asyncio.wait_for(self._reader, TIMEOUT)

    async def _read(self) -> None:
        try:
            async for data in self._websocket:
                frame = json.loads(data)
                async with self._changed:
                    self.frames.append(frame)
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._websocket.close_code
            self._closed.set()
            async with self._changed:
                self._changed.notify_all()


class Person:
    """
    A user of a deployment: a token, an HTTP client, and any number of devices.
    """

    def __init__(self, name: str, deployment: Deployment, stack: AsyncExitStack):
        self.name = name
        self.deployment = deployment
        self._stack = stack
        self._token: str | None = None
        self.http = httpx.AsyncClient(
            base_url=deployment.base_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=TIMEOUT,
            trust_env=False,
        )
        stack.push_async_callback(self.http.aclose)

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.deployment.token(self.name)
        return self._token

    async def connect(self, *, via_query: bool = False) -> ChatClient:
        """
        Open a new device; it is closed when the test ends, if not before.
        """
        url = f"{self.deployment.ws_url}/v1/ws"
        websocket = await open_socket(url, token=self.token, via_query=via_query)
        client = ChatClient(websocket, self.name)
        self._stack.push_async_callback(client.close)
        return client

    async def conversations(self) -> list[Frame]:
        response = await self.http.get("/v1/conversations")
        assert response.status_code == 200, response.text
        conversations: list[Frame] = response.json()["conversations"]
        return conversations

    async def conversation(self, conversation_id: str) -> Frame:
        for conversation in await self.conversations():
            if conversation["conversation_id"] == conversation_id:
                return conversation
        msg = f"{self.name} has no conversation {conversation_id}"
        raise AssertionError(msg)

    async def history_pages(
        self, conversation_id: str, *, limit: int = 50
    ) -> list[Frame]:
        """
        Every page of a conversation's history, newest first, by ``next_cursor``.
        """
        pages: list[Frame] = []
        params: dict[str, int] = {"limit": limit}
        while True:
            response = await self.http.get(
                f"/v1/conversations/{conversation_id}/messages", params=params
            )
            assert response.status_code == 200, response.text
            page: Frame = response.json()
            pages.append(page)
            if page["next_cursor"] is None:
                return pages
            assert len(pages) < 1000, "history pages never end"
            params["before_seq"] = page["next_cursor"]

    async def history(self, conversation_id: str) -> list[Frame]:
        """
        Every message of a conversation, newest first.
        """
        pages = await self.history_pages(conversation_id, limit=100)
        return [message for page in pages for message in page["messages"]]


class Cast:
    """
    The people of one test, with unique names so tests never share a user.
    """

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._run = uuid4().hex[:6]

    def person(self, deployment: Deployment, role: str) -> Person:
        return Person(f"{role}-{self._run}", deployment, self._stack)

    async def aclose(self) -> None:
        await self._stack.aclose()
