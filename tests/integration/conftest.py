"""
Real servers for integration tests, started from infra/local on loopback.

A server that is already running (say, started by hand with
``python -m infra.local start all``) is used as it is and left running;
one that this session starts, it stops at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

from infra.local.servers import (
    CassandraServer,
    KafkaServer,
    LocalServer,
    PostgresServer,
    RedisServer,
)
from infra.settings import Settings

Server = TypeVar("Server", bound=LocalServer)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    if server.running_pid() is not None:
        yield server
        return
    server.install()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[KafkaServer]:
    with running(KafkaServer()) as server:
        yield server


@pytest.fixture(scope="session")
def cassandra_server() -> Iterator[CassandraServer]:
    with running(CassandraServer()) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running(RedisServer()) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running(PostgresServer()) as server:
        yield server


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
    }


def settings_from(env: dict[str, str]) -> Settings:
    fields = {key.removeprefix("DUETTO_").lower(): value for key, value in env.items()}
    return Settings.model_validate(fields)
