"""
Real servers for integration tests, started from infra/local on loopback.

A server that is already running (say, started by hand with
``python -m infra.local start all``) is used as it is and left running;
one that this session starts, it stops at the end.
"""

from __future__ import annotations

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
