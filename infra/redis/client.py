"""
Redis at the edge: the client, the key and channel names, and the error tree.

Errors::

    RedisAdapterError            Redis answered, but not as expected
    └── RedisUnavailableError    no connection, or no answer in time

redis-py errors are translated into these here, with ``raise ... from e``, so
callers handle one tree without knowing the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from domain.ids import UserId

logger = logging.getLogger(__name__)

DEFAULT_PREFIX = "duetto:"
SOCKET_TIMEOUT_SECONDS = 5.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class RedisAdapterError(Exception):
    """
    Redis refused or failed a command of duetto's.
    """


class RedisUnavailableError(RedisAdapterError):
    """
    Redis could not be reached, or did not answer in time.
    """


@contextmanager
def translated(action: str) -> Iterator[None]:
    """
    Turn redis-py errors raised inside the block into duetto's own.
    """
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as e:
        msg = f"redis is unavailable while {action}"
        raise RedisUnavailableError(msg) from e
    except redis.RedisError as e:
        msg = f"redis failed while {action}: {type(e).__name__}"
        raise RedisAdapterError(msg) from e


def connect(url: str, *, retries: int = 2) -> redis.Redis:
    """
    A thread-safe client on a pool, retrying briefly when a connection drops.
    """
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
    )


@dataclass(frozen=True)
class Names:
    """
    Every key and channel duetto uses in Redis, all under one prefix.

    A user's presence keys share the hash tag ``{user}``, so the scripts that
    touch both also run on a Redis Cluster.
    """

    prefix: str = DEFAULT_PREFIX

    def connections(self, user: UserId) -> str:
        return f"{self.prefix}presence:{{{user}}}:connections"

    def last_seen(self, user: UserId) -> str:
        return f"{self.prefix}presence:{{{user}}}:last_seen"

    def user_channel(self, user: UserId) -> str:
        return f"{self.prefix}user:{user}"

    def gateway_channel(self, gateway_id: str) -> str:
        return f"{self.prefix}gateway:{gateway_id}"


def to_micros(moment: datetime) -> int:
    """
    Microseconds since the Unix epoch, exact for any aware datetime.
    """
    return (moment - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + micros * MICROSECOND
