"""
Redis adapters of the scaled profile: shared presence and per-user fan-out.
"""

from __future__ import annotations

from infra.redis.client import (
    DEFAULT_PREFIX,
    Names,
    RedisAdapterError,
    RedisUnavailableError,
    connect,
)
from infra.redis.presence import RedisPresence
from infra.redis.pubsub import (
    HEALTH_CHECK_SECONDS,
    RedisPublisher,
    RedisSubscriber,
)

__all__ = [
    "DEFAULT_PREFIX",
    "HEALTH_CHECK_SECONDS",
    "Names",
    "RedisAdapterError",
    "RedisPresence",
    "RedisPublisher",
    "RedisSubscriber",
    "RedisUnavailableError",
    "connect",
]
