"""
Positions of log readers, kept in the event store's own database.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

POSTGRES_TABLE = """
CREATE TABLE IF NOT EXISTS duetto_positions (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
)
"""


def ensure_schema(dsn: str, schema: str) -> None:
    """
    Create a PostgreSQL schema for duetto's tables if it does not exist yet.
    """
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


class PostgresPositions:
    """
    A ``PositionStore`` in PostgreSQL, beside the events it points into.
    """

    def __init__(self, dsn: str, *, schema: str = "") -> None:
        options = f"-c search_path={schema}" if schema else ""
        self._connection = psycopg.connect(dsn, autocommit=True, options=options)
        if schema:
            self._connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        self._connection.execute(POSTGRES_TABLE)

    def get(self, name: str) -> int:
        row = self._connection.execute(
            "SELECT position FROM duetto_positions WHERE name = %s", (name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def save(self, name: str, position: int) -> None:
        self._connection.execute(
            "INSERT INTO duetto_positions VALUES (%s, %s) ON CONFLICT (name) "
            "DO UPDATE SET position = excluded.position",
            (name, position),
        )

    def close(self) -> None:
        self._connection.close()


class SQLitePositions:
    """
    A ``PositionStore`` in a SQLite file, for a single-host deployment.
    """

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None)
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS positions "
            "(name TEXT PRIMARY KEY, position INTEGER NOT NULL)"
        )

    def get(self, name: str) -> int:
        row = self._connection.execute(
            "SELECT position FROM positions WHERE name = ?", (name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def save(self, name: str, position: int) -> None:
        self._connection.execute(
            "INSERT INTO positions VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET position = excluded.position",
            (name, position),
        )

    def close(self) -> None:
        self._connection.close()
