"""
Versioned schema migrations and the session helper, on the real Cassandra.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from infra.cassandra.cluster import build_cluster, connect
from infra.cassandra.errors import (
    HistoryRequestError,
    HistoryUnavailableError,
    MigrationError,
)
from infra.cassandra.migrate import (
    Migration,
    applied_versions,
    drop_keyspace,
    load_migrations,
    migrate,
)
from infra.cassandra.store import CassandraHistory
from infra.local.servers import CassandraServer
from infra.settings import Settings

HISTORY_TABLES = {
    "conversations",
    "conversations_by_user",
    "messages",
    "message_buckets",
    "messages_by_sender",
    "receipts",
    "positions",
    "dead_letters",
    "schema_migrations",
}


@pytest.fixture(scope="module")
def session(cassandra_server: CassandraServer) -> Iterator[Any]:
    cluster = build_cluster(Settings(cassandra_port=cassandra_server.port))
    yield cluster.connect()
    cluster.shutdown()


@pytest.fixture
def keyspace(session: Any) -> Iterator[str]:
    """
    A keyspace name private to one test; whatever it made is dropped after.
    """
    name = f"duetto_test_{uuid4().hex[:12]}"
    yield name
    drop_keyspace(session, name)


def tables_of(session: Any, keyspace: str) -> set[str]:
    rows = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
        (keyspace,),
    )
    return {row.table_name for row in rows}


def replication_of(session: Any, keyspace: str) -> dict[str, str]:
    row = session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
        (keyspace,),
    ).one()
    return dict(row.replication)


@pytest.mark.integration
def test_migrate_creates_the_schema_and_records_each_version(
    session: Any, keyspace: str
) -> None:
    applied = migrate(session, keyspace)

    assert applied == [1, 2, 3]
    assert applied_versions(session, keyspace) == {1, 2, 3}
    assert tables_of(session, keyspace) == HISTORY_TABLES
    assert replication_of(session, keyspace) == {
        "class": "org.apache.cassandra.locator.SimpleStrategy",
        "replication_factor": "1",
    }


@pytest.mark.integration
def test_migrating_again_applies_nothing(session: Any, keyspace: str) -> None:
    migrate(session, keyspace)

    again = migrate(session, keyspace)

    assert again == []
    assert applied_versions(session, keyspace) == {1, 2, 3}


@pytest.mark.integration
def test_a_new_version_is_applied_alone(session: Any, keyspace: str) -> None:
    migrate(session, keyspace)
    extra = Migration(
        4, "extra", ("CREATE TABLE IF NOT EXISTS extra (k int PRIMARY KEY)",)
    )

    applied = migrate(session, keyspace, migrations=[*load_migrations(), extra])

    assert applied == [4]
    assert "extra" in tables_of(session, keyspace)
    assert applied_versions(session, keyspace) == {1, 2, 3, 4}


@pytest.mark.integration
def test_a_version_that_failed_is_repeated_next_time(
    session: Any, keyspace: str
) -> None:
    # A crash after the first statement: the next run repeats the whole file.
    broken = Migration(
        1,
        "broken",
        ("CREATE TABLE IF NOT EXISTS first (k int PRIMARY KEY)", "NOT CQL"),
    )
    with pytest.raises(HistoryRequestError):
        migrate(session, keyspace, migrations=[broken])
    fixed = Migration(1, "fixed", (broken.statements[0],))

    applied = migrate(session, keyspace, migrations=[fixed])

    assert applied == [1]
    assert "first" in tables_of(session, keyspace)


@pytest.mark.integration
def test_replication_factor_is_the_callers(session: Any, keyspace: str) -> None:
    # One node cannot hold two replicas: the keyspace is made, writes refused.
    with pytest.raises(HistoryUnavailableError):
        migrate(session, keyspace, replication_factor=2)

    assert replication_of(session, keyspace)["replication_factor"] == "2"


@pytest.mark.integration
def test_connect_migrates_the_configured_keyspace(
    cassandra_server: CassandraServer, session: Any, keyspace: str
) -> None:
    settings = Settings(
        cassandra_port=cassandra_server.port, cassandra_keyspace=keyspace
    )

    history = connect(settings)
    try:
        position = history.position("history")
    finally:
        history.close()

    assert position == 0
    assert applied_versions(session, keyspace) == {1, 2, 3}


@pytest.mark.integration
def test_a_keyspace_without_the_schema_is_refused(session: Any, keyspace: str) -> None:
    session.execute(
        f"CREATE KEYSPACE {keyspace} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )

    with pytest.raises(HistoryRequestError):
        CassandraHistory(session, keyspace)


def test_connect_to_a_closed_port_is_unavailable() -> None:
    settings = Settings(cassandra_port=1, cassandra_keyspace="duetto_nowhere")

    with pytest.raises(HistoryUnavailableError):
        connect(settings)


@pytest.mark.parametrize("name", ["", "Duetto", "1duetto", "duetto-test", "a" * 49])
def test_keyspace_names_that_need_quoting_are_refused(name: str) -> None:
    with pytest.raises(MigrationError):
        migrate(None, name)


def test_migration_files_must_be_numbered(tmp_path: Path) -> None:
    (tmp_path / "first.cql").write_text("CREATE TABLE t (k int PRIMARY KEY);")

    with pytest.raises(MigrationError):
        load_migrations(tmp_path)


def test_migration_versions_must_be_unique(tmp_path: Path) -> None:
    (tmp_path / "0001_a.cql").write_text("CREATE TABLE a (k int PRIMARY KEY);")
    (tmp_path / "0001_b.cql").write_text("CREATE TABLE b (k int PRIMARY KEY);")

    with pytest.raises(MigrationError):
        load_migrations(tmp_path)


def test_migration_files_split_into_statements_without_comments(
    tmp_path: Path,
) -> None:
    (tmp_path / "0007_two.cql").write_text(
        "-- a comment; with a semicolon\nCREATE TABLE a (k int PRIMARY KEY);\n\n"
        "CREATE TABLE b (\n  k int PRIMARY KEY\n);\n"
    )

    [migration] = load_migrations(tmp_path)

    assert (migration.version, migration.name) == (7, "two")
    assert migration.statements == (
        "CREATE TABLE a (k int PRIMARY KEY)",
        "CREATE TABLE b (\n  k int PRIMARY KEY\n)",
    )
