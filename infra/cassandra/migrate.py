"""
Versioned schema migrations for the Cassandra history keyspace.

Each file ``migrations/NNNN_name.cql`` is one version: CQL statements, each
ended by ``;`` (never one inside a statement), with whole-line ``--`` comments.
``migrate`` creates the keyspace (SimpleStrategy, replication factor given by
the caller), then applies in version order every file that
``schema_migrations`` does not list yet, and lists it once its last statement
has succeeded. A crash in between repeats the file on the next run, so every
statement in a file must be safe to repeat (``IF NOT EXISTS``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.cassandra.errors import MigrationError, translated

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_FILE = re.compile(r"(?P<version>\d{4})_(?P<name>\w+)\.cql")
# Lower-case names need no quoting in CQL, which keeps them safe to format in.
KEYSPACE_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")
DDL_TIMEOUT_SECONDS = 60.0

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version int PRIMARY KEY,
    name text,
    applied_at timestamp
)
"""


@dataclass(frozen=True)
class Migration:
    """
    One version of the schema: the statements of one ``.cql`` file.
    """

    version: int
    name: str
    statements: tuple[str, ...]


def check_keyspace(keyspace: str) -> str:
    """
    Return the keyspace name unchanged, or raise if CQL would need it quoted.
    """
    if not KEYSPACE_NAME.fullmatch(keyspace):
        msg = f"keyspace {keyspace!r} must be 1-48 of a-z, 0-9, _, starting a-z"
        raise MigrationError(msg)
    return keyspace


def load_migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """
    Read every migration file in ``folder``, in version order.
    """
    migrations = []
    for path in sorted(folder.glob("*.cql")):
        match = MIGRATION_FILE.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name} is not named NNNN_name.cql")
        statements = _statements(path.read_text(encoding="utf-8"))
        version = int(match["version"])
        migrations.append(Migration(version, match["name"], statements))
    versions = [migration.version for migration in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return migrations


def migrate(
    session: Any,
    keyspace: str,
    *,
    replication_factor: int = 1,
    migrations: list[Migration] | None = None,
) -> list[int]:
    """
    Bring ``keyspace`` up to the newest schema; return the versions applied now.

    The session's keyspace is set to ``keyspace`` on the way.
    """
    check_keyspace(keyspace)
    if replication_factor < 1:
        raise MigrationError("the replication factor must be at least 1")
    pending = load_migrations() if migrations is None else migrations
    with translated(f"migrate keyspace {keyspace}"):
        _create_keyspace(session, keyspace, replication_factor)
        done = applied_versions(session, keyspace)
        applied = []
        for migration in pending:
            if migration.version not in done:
                _apply(session, keyspace, migration)
                applied.append(migration.version)
    return applied


def applied_versions(session: Any, keyspace: str) -> set[int]:
    """
    The versions ``schema_migrations`` lists as applied in ``keyspace``.
    """
    check_keyspace(keyspace)
    with translated(f"read the schema version of {keyspace}"):
        rows = session.execute(f"SELECT version FROM {keyspace}.schema_migrations")
        return {int(row.version) for row in rows}


def drop_keyspace(session: Any, keyspace: str) -> None:
    """
    Drop ``keyspace`` and everything in it, as tests and rebuilds do.
    """
    check_keyspace(keyspace)
    with translated(f"drop keyspace {keyspace}"):
        session.execute(
            f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=DDL_TIMEOUT_SECONDS
        )


def _create_keyspace(session: Any, keyspace: str, replication_factor: int) -> None:
    session.execute(
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}",
        timeout=DDL_TIMEOUT_SECONDS,
    )
    session.set_keyspace(keyspace)
    session.execute(CREATE_MIGRATIONS_TABLE, timeout=DDL_TIMEOUT_SECONDS)


def _apply(session: Any, keyspace: str, migration: Migration) -> None:
    for statement in migration.statements:
        session.execute(statement, timeout=DDL_TIMEOUT_SECONDS)
    session.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) "
        "VALUES (%s, %s, toTimestamp(now()))",
        (migration.version, migration.name),
    )
    logger.info(
        "applied migration %04d_%s to keyspace %s",
        migration.version,
        migration.name,
        keyspace,
    )


def _statements(text: str) -> tuple[str, ...]:
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    parts = "\n".join(lines).split(";")
    return tuple(part.strip() for part in parts if part.strip())
