"""
Presence across many gateways: one sorted set of live connections per user.

Each member is a connection id scored by the time it expires (Redis's own
clock, in microseconds), pushed forward by every heartbeat. A user is online
while any member has not expired. Each change runs as one Lua script, so when
several gateways race, exactly one of them sees the online or the offline
transition. Expired members are dropped by whichever script touches the user
next; if that empties the set, last seen becomes the last moment the dead
gateway vouched for the connection (its expiry minus the time-to-live).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from typing import Any

import redis

from domain.ids import UserId
from infra.redis.client import Names, from_micros, to_micros, translated
from projections.views import PresenceView

logger = logging.getLogger(__name__)

# A forgotten set (every member expired, nobody asked since) is deleted after
# this long, so users behind a crashed gateway do not leak keys forever.
KEY_GRACE_MS = 24 * 3600 * 1000
USERS_PER_PIPELINE = 500

_PRELUDE = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function raise_last_seen(key, at)
  local old = tonumber(redis.call('GET', key) or '0')
  if at > old then
    redis.call('SET', key, string.format('%.0f', at))
  end
end

local function prune(conns, seen, now, ttl)
  local newest = redis.call(
    'ZREVRANGEBYSCORE', conns, now, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #newest == 0 then
    return
  end
  redis.call('ZREMRANGEBYSCORE', conns, '-inf', now)
  if redis.call('ZCARD', conns) == 0 then
    raise_last_seen(seen, tonumber(newest[2]) - ttl)
  end
end
"""

# KEYS: connections, last_seen. ARGV: ttl_us, key_ttl_ms, connection ids...
# Returns 1 when the user had no live connection before.
_REGISTER = (
    _PRELUDE
    + """
local ttl = tonumber(ARGV[1])
local now = now_us()
prune(KEYS[1], KEYS[2], now, ttl)
local before = redis.call('ZCARD', KEYS[1])
local expiry = string.format('%.0f', now + ttl)
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if before == 0 then
  return 1
end
return 0
"""
)

# KEYS: connections, last_seen. ARGV: ttl_us, connection id, at_us.
# Returns 1 when this was the user's last connection.
_UNREGISTER = (
    _PRELUDE
    + """
local ttl = tonumber(ARGV[1])
local known = redis.call('ZSCORE', KEYS[1], ARGV[2])
prune(KEYS[1], KEYS[2], now_us(), ttl)
redis.call('ZREM', KEYS[1], ARGV[2])
if not known or redis.call('ZCARD', KEYS[1]) > 0 then
  return 0
end
raise_last_seen(KEYS[2], tonumber(ARGV[3]))
return 1
"""
)

# KEYS: connections, last_seen. ARGV: ttl_us. Returns {live count, last seen}.
_STATUS = (
    _PRELUDE
    + """
prune(KEYS[1], KEYS[2], now_us(), tonumber(ARGV[1]))
return {redis.call('ZCARD', KEYS[1]), redis.call('GET', KEYS[2]) or ''}
"""
)


class RedisPresence:
    """
    PresenceStore shared by every gateway, plus this gateway's heartbeats.

    One instance per gateway process, and one time-to-live for all of them
    (``settings.presence_ttl_seconds``). It remembers which connections this
    gateway registered, so it can refresh them (``heartbeat``) and register
    them again after Redis lost them (``reconcile``).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_seconds: float,
        names: Names | None = None,
    ) -> None:
        self._client = client
        self._names = names or Names()
        self._ttl_us = round(ttl_seconds * 1_000_000)
        self._key_ttl_ms = round(ttl_seconds * 1000) + KEY_GRACE_MS
        self._register = client.register_script(_REGISTER)
        self._unregister = client.register_script(_UNREGISTER)
        self._status = client.register_script(_STATUS)
        # One lock orders this gateway's changes, so a heartbeat never
        # re-registers a connection that closed while it was being sent.
        self._lock = threading.Lock()
        self._live: dict[str, UserId] = {}

    def connected(self, user: UserId, connection_id: str, at: datetime) -> bool:
        """
        Register a connection; true if the user just came online.

        The connection is remembered even when Redis is down, so the next
        ``reconcile`` registers it.
        """
        with self._lock:
            self._live[connection_id] = user
            with translated(f"registering {connection_id} of {user}"):
                before = self._register(
                    keys=self._keys(user),
                    args=[self._ttl_us, self._key_ttl_ms, connection_id],
                )
        return bool(before)

    def disconnected(self, user: UserId, connection_id: str, at: datetime) -> bool:
        """
        Forget a connection; true if it was the user's last one anywhere.
        """
        with self._lock:
            self._live.pop(connection_id, None)
            with translated(f"unregistering {connection_id} of {user}"):
                last = self._unregister(
                    keys=self._keys(user),
                    args=[self._ttl_us, connection_id, to_micros(at)],
                )
        return bool(last)

    def status(self, user: UserId) -> PresenceView:
        with translated(f"reading presence of {user}"):
            count, seen = self._status(keys=self._keys(user), args=[self._ttl_us])
        last_seen = from_micros(int(seen)) if seen else None
        return PresenceView(user, int(count) > 0, last_seen)

    def heartbeat(self) -> list[UserId]:
        """
        Push back the expiry of every live connection of this gateway.

        A connection Redis no longer has (it restarted, or this gateway
        stalled past the time-to-live) is registered again; the users who
        came back online by that are returned, to be announced.
        """
        with self._lock:
            by_user = self._live_by_user()
            came_online: list[UserId] = []
            for users in _chunks(list(by_user), USERS_PER_PIPELINE):
                came_online += self._refresh(users, by_user)
        if came_online:
            logger.info("re-registered presence of %s users", len(came_online))
        return came_online

    def reconcile(self) -> list[UserId]:
        """
        Register this gateway's live connections again, after Redis lost them.
        """
        return self.heartbeat()

    def live_connections(self) -> dict[str, UserId]:
        """
        This gateway's registered connections, by connection id.
        """
        with self._lock:
            return dict(self._live)

    def _refresh(
        self, users: list[UserId], by_user: dict[UserId, list[str]]
    ) -> list[UserId]:
        pipe = self._client.pipeline(transaction=False)
        for user in users:
            self._register(
                keys=self._keys(user),
                args=[self._ttl_us, self._key_ttl_ms, *by_user[user]],
                client=pipe,
            )
        with translated(f"refreshing presence of {len(users)} users"):
            results: list[Any] = pipe.execute()
        return [user for user, before in zip(users, results, strict=True) if before]

    def _live_by_user(self) -> dict[UserId, list[str]]:
        by_user: dict[UserId, list[str]] = {}
        for connection_id, user in self._live.items():
            by_user.setdefault(user, []).append(connection_id)
        return by_user

    def _keys(self, user: UserId) -> list[str]:
        return [self._names.connections(user), self._names.last_seen(user)]


def _chunks(items: list[UserId], size: int) -> Iterator[list[UserId]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
