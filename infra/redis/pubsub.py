"""
Fan-out through Redis pub/sub: one channel per user, one subscriber per gateway.

Pub/sub keeps nothing: a frame published while a gateway is not subscribed
is gone for it. That is safe because clients close gaps from history on sync,
and because presence is re-read from Redis's stored state after a reconnect.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from domain.ids import UserId
from infra.redis.client import (
    SOCKET_TIMEOUT_SECONDS,
    Names,
    RedisAdapterError,
    translated,
)
from infra.redis.presence import RedisPresence
from projections.ports import Frame

logger = logging.getLogger(__name__)

# A silent connection is pinged after this long and dropped when the ping is
# not answered within as long again: a dead link is noticed within 20 s, well
# inside the 30 s that issue 3 allows.
HEALTH_CHECK_SECONDS = 10.0
POLL_SECONDS = 0.5
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0

FrameHandler = Callable[[UserId, Frame], None]
ReconnectHandler = Callable[[Sequence[UserId]], None]


class RedisPublisher:
    """
    Publisher that sends each frame on its user's channel, to every gateway.
    """

    def __init__(self, client: redis.Redis, *, names: Names | None = None) -> None:
        self._client = client
        self._names = names or Names()

    def publish(self, user: UserId, frame: Frame) -> None:
        channel = self._names.user_channel(user)
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        with translated(f"publishing a {frame.get('type')} frame on {channel}"):
            receivers = self._client.publish(channel, data)
        logger.debug(
            "published a %s frame on %s to %s gateways",
            frame.get("type"),
            channel,
            receivers,
        )


class RedisSubscriber:
    """
    A gateway's subscription to its connected users' channels, in its own thread.

    ``watch``/``unwatch`` follow this gateway's sockets: a user's channel is
    subscribed while at least one of their sockets is open here. Each frame
    received is handed to ``on_frame`` (the Hub's ``publish``). When the link
    to Redis breaks, the thread reconnects with backoff, subscribes every
    current channel again, has ``presence`` register this gateway's
    connections again, and calls ``on_reconnect`` with the users who came back
    online by that. With ``heartbeat_seconds`` set, the same thread also
    sends ``presence``'s heartbeats, and reports users a heartbeat had to
    register again through ``on_reconnect`` too.
    """

    def __init__(
        self,
        url: str,
        on_frame: FrameHandler,
        *,
        names: Names | None = None,
        presence: RedisPresence | None = None,
        on_reconnect: ReconnectHandler | None = None,
        health_check_interval: float = HEALTH_CHECK_SECONDS,
        heartbeat_seconds: float | None = None,
        gateway_id: str | None = None,
    ) -> None:
        self._names = names or Names()
        self._on_frame = on_frame
        self._presence = presence
        self._on_reconnect = on_reconnect
        self._health_check_interval = health_check_interval
        self._heartbeat_seconds = heartbeat_seconds
        self.gateway_id = gateway_id or uuid.uuid4().hex[:12]
        self._client = _pubsub_client(url, health_check_interval)
        self._lock = threading.Lock()
        self._sockets: dict[UserId, set[str]] = {}
        self._users: dict[str, UserId] = {}
        self._pubsub: PubSub | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_since: float | None = None
        self._next_heartbeat = 0.0
        self.subscriptions = 0
        """How many times the thread has (re)subscribed; for tests and metrics."""

    # The gateway's side

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"redis-subscriber-{self.gateway_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()
        logger.info("gateway %s stopped its redis subscriber", self.gateway_id)

    def watch(self, user: UserId, connection_id: str) -> None:
        """
        Note a socket of ``user`` opened here; subscribe if it is their first.
        """
        with self._lock:
            sockets = self._sockets.setdefault(user, set())
            first = not sockets
            sockets.add(connection_id)
            if first:
                channel = self._names.user_channel(user)
                self._users[channel] = user
                self._send("SUBSCRIBE", channel)

    def unwatch(self, user: UserId, connection_id: str) -> None:
        """
        Note a socket of ``user`` closed here; unsubscribe if it was their last.
        """
        with self._lock:
            sockets = self._sockets.get(user)
            if sockets is None:
                return
            sockets.discard(connection_id)
            if not sockets:
                del self._sockets[user]
                channel = self._names.user_channel(user)
                del self._users[channel]
                self._send("UNSUBSCRIBE", channel)

    def watched_users(self) -> list[UserId]:
        with self._lock:
            return list(self._sockets)

    def _send(self, command: str, channel: str) -> None:
        # Called with the lock held. Without a link the command is dropped:
        # the next connection subscribes whatever is watched by then.
        if self._pubsub is None:
            return
        try:
            if command == "SUBSCRIBE":
                self._pubsub.subscribe(channel)
            else:
                # redis-py leaves unsubscribe unannotated.
                self._pubsub.unsubscribe(channel)  # type: ignore[no-untyped-call]
        except redis.RedisError as e:
            logger.warning(
                "gateway %s could not %s %s (%s); it will on reconnect",
                self.gateway_id,
                command,
                channel,
                type(e).__name__,
            )

    # The subscriber's thread

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._connect(reconnecting=failures > 0)
                failures = 0
                self._listen()
            except (redis.RedisError, RedisAdapterError) as e:
                failures += 1
                self._retry_later(failures, e)
            except Exception as e:
                # A bug must not end the thread: that would silently stop
                # every push to this gateway's sockets.
                logger.exception("gateway %s subscriber failed", self.gateway_id)
                failures += 1
                self._retry_later(failures, e)
            finally:
                self._disconnect()

    def _connect(self, *, reconnecting: bool) -> None:
        pubsub = PubSub(self._client.connection_pool)
        # Holding the lock until Redis confirmed keeps ``watch`` out of the
        # count, and means every frame published from here on is received.
        with self._lock:
            self._pubsub = pubsub
            channels = [self._names.gateway_channel(self.gateway_id), *self._users]
            pubsub.subscribe(*channels)
            self._await_confirmations(pubsub, len(channels))
        self.subscriptions += 1
        logger.info(
            "gateway %s subscribed to %s channels",
            self.gateway_id,
            len(channels),
        )
        if reconnecting:
            self._reconcile()

    def _await_confirmations(self, pubsub: PubSub, expected: int) -> None:
        # Frames on the first channels can arrive before the last confirmation.
        deadline = time.monotonic() + SOCKET_TIMEOUT_SECONDS
        confirmed = 0
        while confirmed < expected:
            if time.monotonic() > deadline:
                raise redis.TimeoutError("subscriptions were not confirmed")
            message = pubsub.get_message(timeout=POLL_SECONDS)
            if message is None:
                continue
            if message["type"] == "subscribe":
                confirmed += 1
            else:
                self._dispatch(message)

    def _reconcile(self) -> None:
        came_online: list[UserId] = []
        if self._presence is not None:
            came_online = self._presence.reconcile()
        logger.info(
            "gateway %s reconnected to redis; %s users back online",
            self.gateway_id,
            len(came_online),
        )
        self._notify(came_online)

    def _listen(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None  # _connect just set it
        self._waiting_since = None
        while not self._stopping.is_set():
            message = pubsub.get_message(
                ignore_subscribe_messages=True, timeout=POLL_SECONDS
            )
            if message is not None:
                self._dispatch(message)
            self._check_answering(pubsub)
            self._beat()

    def _check_answering(self, pubsub: PubSub) -> None:
        # redis-py sends the health-check PING but never times out its reply;
        # a link that swallows it is half-open and is dropped here.
        if not pubsub.health_check_response_counter:
            self._waiting_since = None
            return
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since > self._health_check_interval:
            raise redis.ConnectionError("redis did not answer a health check")

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            return
        channel = message["channel"]
        user = self._users.get(channel)
        if user is None:
            return
        try:
            frame = json.loads(message["data"])
        except ValueError:
            logger.warning("dropped a frame on %s that is not JSON", channel)
            return
        try:
            self._on_frame(user, frame)
        except Exception:
            logger.exception("delivering a frame on %s failed", channel)

    def _beat(self) -> None:
        if self._presence is None or self._heartbeat_seconds is None:
            return
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self._heartbeat_seconds
        try:
            came_online = self._presence.heartbeat()
        except RedisAdapterError as e:
            logger.warning("gateway %s missed a heartbeat: %s", self.gateway_id, e)
            return
        if came_online:
            self._notify(came_online)

    def _notify(self, came_online: Sequence[UserId]) -> None:
        if self._on_reconnect is None:
            return
        try:
            self._on_reconnect(came_online)
        except Exception:
            logger.exception("on_reconnect of gateway %s failed", self.gateway_id)

    def _retry_later(self, failures: int, error: Exception) -> None:
        # The cap stays under the health-check interval, so a Redis that is
        # back is subscribed to again within that interval.
        cap = min(BACKOFF_CAP_SECONDS, self._health_check_interval / 2)
        delay = min(cap, BACKOFF_FIRST_SECONDS * 2 ** (failures - 1))
        logger.warning(
            "gateway %s lost its redis subscription (%s); retry %s in %.1f s",
            self.gateway_id,
            type(error).__name__,
            failures,
            delay,
        )
        self._stopping.wait(delay)

    def _disconnect(self) -> None:
        with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            pubsub.close()


def _pubsub_client(url: str, health_check_interval: float) -> redis.Redis:
    # No retries inside redis-py: a broken link must surface here, so that
    # this module resubscribes and reconciles presence itself.
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=health_check_interval,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0, supported_errors=()),
    )
