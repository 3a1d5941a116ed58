"""
Real servers for integration tests, started from infra/local on loopback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from infra.local.servers import KafkaServer, PostgresServer, RedisServer
from infra.push.webpush import new_vapid_private_key
from infra.redis import Names, connect
from infra.settings import Settings


@pytest.fixture
def scaled_env(
    postgres_server: PostgresServer, kafka_server: KafkaServer
) -> dict[str, str]:
    """
    ``DUETTO_*`` variables of a scaled deployment private to one test.

    Each test gets its own PostgreSQL schema and Kafka topic, so tests never
    see each other's events even on shared servers.
    """
    unique = uuid.uuid4().hex[:10]
    return {
        "DUETTO_PROFILE": "scaled",
        "DUETTO_JWT_SECRET": "integration-test-secret-" + "x" * 16,
        "DUETTO_POSTGRES_HOST": "127.0.0.1",
        "DUETTO_POSTGRES_PORT": str(postgres_server.port),
        "DUETTO_POSTGRES_USER": postgres_server.db_user,
        "DUETTO_POSTGRES_PASSWORD": postgres_server.db_password,
        "DUETTO_POSTGRES_DB": postgres_server.db_name,
        "DUETTO_POSTGRES_SCHEMA": f"t_{unique}",
        "DUETTO_KAFKA_BOOTSTRAP": kafka_server.bootstrap,
        "DUETTO_KAFKA_TOPIC": f"test.{unique}",
        "DUETTO_KAFKA_PARTITIONS": "4",
        # Consumer groups of their own, so no rebalance crosses tests.
        "DUETTO_KAFKA_GROUP_PREFIX": f"t-{unique}",
        # Every scaled gateway needs the push key that all its processes share.
        "DUETTO_PUSH_VAPID_PRIVATE_KEY": new_vapid_private_key(),
    }


@pytest.fixture
def names() -> Names:
    """
    Redis names of a prefix no other test uses.
    """
    return Names(prefix=f"test:{uuid.uuid4().hex}:")


@pytest.fixture
def client(redis_server: RedisServer, names: Names) -> Iterator[redis.Redis]:
    """
    A Redis client whose test's keys are deleted afterwards.
    """
    client = connect(redis_server.url)
    yield client
    for key in client.scan_iter(match=f"{names.prefix}*"):
        client.delete(key)
    client.close()


def settings_from(env: dict[str, str]) -> Settings:
    fields = {key.removeprefix("DUETTO_").lower(): value for key, value in env.items()}
    return Settings.model_validate(fields)
