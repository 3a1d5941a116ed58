"""
The scaled profile's catalog of history versions, in its own keyspace.

``<keyspace>_catalog`` outlives every version, so dropping an old version
(``<keyspace>`` itself, or ``<keyspace>_vN``) never drops the catalog.
The switch is one single-row write: every reader sees the old version or
the new one, never anything in between.
"""

from __future__ import annotations

from typing import Any

from infra.cassandra.errors import translated
from infra.cassandra.migrate import DDL_TIMEOUT_SECONDS, check_keyspace
from infra.catalog import CatalogEntry

TABLES = (
    "CREATE TABLE IF NOT EXISTS {ks}.current_versions "
    "(projection text PRIMARY KEY, version int, switched_at timestamp)",
    "CREATE TABLE IF NOT EXISTS {ks}.rebuilds "
    "(projection text PRIMARY KEY, version int, started_at timestamp)",
)


def keyspace_of(base: str, version: int) -> str:
    """
    The keyspace of one version of history: ``base`` itself for version 0.
    """
    return check_keyspace(base if version == 0 else f"{base}_v{version}")


def catalog_keyspace(base: str) -> str:
    return check_keyspace(f"{base}_catalog")


class CassandraCatalog:
    """
    Current and rebuilding versions of each projection, in Cassandra.
    """

    def __init__(self, session: Any, base: str, *, replication_factor: int = 1):
        self._session = session
        ks = catalog_keyspace(base)
        with translated(f"create the catalog keyspace {ks}"):
            session.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
                "{'class': 'SimpleStrategy', "
                f"'replication_factor': {replication_factor}}}",
                timeout=DDL_TIMEOUT_SECONDS,
            )
            for table in TABLES:
                session.execute(table.format(ks=ks), timeout=DDL_TIMEOUT_SECONDS)
            self._current = session.prepare(
                f"SELECT version FROM {ks}.current_versions WHERE projection = ?"
            )
            self._building = session.prepare(
                f"SELECT version FROM {ks}.rebuilds WHERE projection = ?"
            )
            self._start = session.prepare(
                f"INSERT INTO {ks}.rebuilds (projection, version, started_at) "
                "VALUES (?, ?, toTimestamp(now()))"
            )
            self._switch = session.prepare(
                f"INSERT INTO {ks}.current_versions (projection, version, "
                "switched_at) VALUES (?, ?, toTimestamp(now()))"
            )
            self._done = session.prepare(
                f"DELETE FROM {ks}.rebuilds WHERE projection = ?"
            )

    def entry(self, projection: str) -> CatalogEntry:
        with translated(f"read the catalog entry of {projection}"):
            current = self._session.execute(self._current, (projection,)).one()
            building = self._session.execute(self._building, (projection,)).one()
        return CatalogEntry(
            current=int(current.version) if current else 0,
            building=int(building.version) if building else None,
        )

    def start_rebuild(self, projection: str, version: int) -> None:
        with translated(f"record the rebuild of {projection} v{version}"):
            self._session.execute(self._start, (projection, version))

    def switch(self, projection: str, version: int) -> None:
        # The one write readers look at; ending the rebuild comes after it.
        with translated(f"switch {projection} to v{version}"):
            self._session.execute(self._switch, (projection, version))
            self._session.execute(self._done, (projection,))

    def versions(self, base: str) -> list[int]:
        """
        The versions whose keyspaces exist, for picking the next one.
        """
        with translated("list the history keyspaces"):
            rows = self._session.execute(
                "SELECT keyspace_name FROM system_schema.keyspaces"
            )
            names = [str(row.keyspace_name) for row in rows]
        prefix = f"{base}_v"
        return [
            int(name[len(prefix) :])
            for name in names
            if name.startswith(prefix) and name[len(prefix) :].isdigit()
        ]

    def close(self) -> None:
        """The session belongs to whoever made it."""
