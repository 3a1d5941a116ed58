"""
Fixtures every suite may use: the real servers, started once per session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.servers import (
    CassandraServer,
    KafkaServer,
    PostgresServer,
    RedisServer,
)
from tests.servers import running


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
