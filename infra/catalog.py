"""
Which table version of each projection serves reads, and switching it.

A projection lives in numbered versions: version 0 is the table set duetto
always had (``history.sqlite``, the ``duetto`` keyspace), version N is a
rebuild (``history.vN.sqlite``, the ``duetto_vN`` keyspace). A small catalog
records the current version and any rebuild in progress. The switch is one
catalog write, so every reader moves from the whole old version to the whole
new one and never sees a version half built.

``SwitchableHistory`` answers queries from the current version and re-reads
the catalog every few seconds. ``SwitchableStore`` is the live projector's
side: it swaps only when the projector asks for its position, so a batch is
always applied to the version whose position it started from, and after a
switch the projector resumes from the new version's own stored position.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar
from uuid import UUID

from domain.ids import UserId
from projections.deadletter import DeadLetter, DeadLetters
from projections.history import HistoryChange
from projections.views import ConversationView, HistoryPage, ReceiptView

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0
"""How often readers look at the catalog; a switch reaches them this late."""

CATALOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS current_versions (
    projection TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    switched_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rebuilds (
    projection TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    started_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class CatalogEntry:
    """
    A projection's current version and the version being rebuilt, if any.
    """

    current: int
    building: int | None


class Catalog(Protocol):
    """
    Records, per projection, the version that serves and the one being built.
    """

    def entry(self, projection: str) -> CatalogEntry: ...

    def start_rebuild(self, projection: str, version: int) -> None: ...

    def switch(self, projection: str, version: int) -> None:
        """Make ``version`` current and end its rebuild, in one write."""
        ...


class SQLiteCatalog:
    """
    The embedded profile's catalog: ``catalog.sqlite`` in the data directory.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(CATALOG_SCHEMA)
        self._lock = threading.Lock()

    def entry(self, projection: str) -> CatalogEntry:
        with self._lock:
            current = self._db.execute(
                "SELECT version FROM current_versions WHERE projection = ?",
                (projection,),
            ).fetchone()
            building = self._db.execute(
                "SELECT version FROM rebuilds WHERE projection = ?", (projection,)
            ).fetchone()
        return CatalogEntry(
            current=int(current[0]) if current else 0,
            building=int(building[0]) if building else None,
        )

    def start_rebuild(self, projection: str, version: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO rebuilds VALUES (?, ?, ?)",
                (projection, version, _now()),
            )

    def switch(self, projection: str, version: int) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO current_versions VALUES (?, ?, ?)",
                (projection, version, _now()),
            )
            self._db.execute("DELETE FROM rebuilds WHERE projection = ?", (projection,))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def history_file(data_dir: Path, version: int) -> Path:
    """
    The SQLite file of one version of the embedded history.
    """
    if version == 0:
        return data_dir / "history.sqlite"
    return data_dir / f"history.v{version}.sqlite"


def catalog_file(data_dir: Path) -> Path:
    return data_dir / "catalog.sqlite"


class ClosableHistory(Protocol):
    """
    A history store that also answers queries and can be closed.
    """

    def apply(
        self, changes: Sequence[HistoryChange], *, projector: str, position: int
    ) -> None: ...

    def position(self, projector: str) -> int: ...

    def participants(self, conversation_id: UUID) -> tuple[UserId, UserId] | None: ...

    def conversations_of(self, user: UserId) -> list[ConversationView]: ...

    def peers_of(self, user: UserId) -> list[UserId]: ...

    def page(
        self,
        conversation_id: UUID,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> HistoryPage: ...

    def receipts(self, conversation_id: UUID) -> list[ReceiptView]: ...

    @property
    def letters(self) -> DeadLetters: ...

    def close(self) -> None: ...


Store = TypeVar("Store", bound=ClosableHistory)


class _Versions(Generic[Store]):
    """
    The store of the current version, opened on demand, swapped on a switch.

    A store swapped out is kept open until ``close``: a read begun on it in
    another thread finishes on the data it started with.
    """

    def __init__(
        self,
        catalog: Catalog,
        projection: str,
        open_version: Callable[[int], Store],
        *,
        refresh_seconds: float,
    ) -> None:
        self._catalog = catalog
        self._projection = projection
        self._open = open_version
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self.version = catalog.entry(projection).current
        self.store = open_version(self.version)
        self._checked = time.monotonic()
        self._retired: list[Store] = []

    def refresh(self, *, force: bool = False) -> Store:
        """
        The current store, after reading the catalog if it is time to.
        """
        due = time.monotonic() - self._checked >= self._refresh_seconds
        if not (force or due):
            return self.store
        with self._lock:
            self._checked = time.monotonic()
            version = self._catalog.entry(self._projection).current
            if version != self.version:
                self._swap(version)
        return self.store

    def close(self) -> None:
        with self._lock:
            for store in [*self._retired, self.store]:
                store.close()
            self._retired.clear()

    def _swap(self, version: int) -> None:
        store = self._open(version)
        self._retired.append(self.store)
        logger.info(
            "%s switched from version %s to %s",
            self._projection,
            self.version,
            version,
        )
        self.store, self.version = store, version


class SwitchableHistory:
    """
    History queries answered by whichever version the catalog names current.
    """

    def __init__(
        self,
        catalog: Catalog,
        open_version: Callable[[int], ClosableHistory],
        *,
        projection: str = "history",
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._versions = _Versions(
            catalog, projection, open_version, refresh_seconds=refresh_seconds
        )

    @property
    def version(self) -> int:
        return self._versions.version

    def participants(self, conversation_id: UUID) -> tuple[UserId, UserId] | None:
        return self._versions.refresh().participants(conversation_id)

    def conversations_of(self, user: UserId) -> list[ConversationView]:
        return self._versions.refresh().conversations_of(user)

    def peers_of(self, user: UserId) -> list[UserId]:
        return self._versions.refresh().peers_of(user)

    def page(
        self,
        conversation_id: UUID,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> HistoryPage:
        return self._versions.refresh().page(
            conversation_id, before_seq=before_seq, after_seq=after_seq, limit=limit
        )

    def receipts(self, conversation_id: UUID) -> list[ReceiptView]:
        return self._versions.refresh().receipts(conversation_id)

    def close(self) -> None:
        self._versions.close()


class SwitchableStore:
    """
    The live projector's history store, following the catalog's switches.

    The catalog is read only in ``position``: the projector reads its position
    before each batch, and the batch then goes to the store that answered,
    in that thread, even if another thread saw a switch in between.
    """

    def __init__(
        self,
        catalog: Catalog,
        open_version: Callable[[int], ClosableHistory],
        *,
        projection: str = "history",
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._versions = _Versions(
            catalog, projection, open_version, refresh_seconds=refresh_seconds
        )
        self._pinned = threading.local()

    @property
    def version(self) -> int:
        return self._versions.version

    @property
    def current(self) -> ClosableHistory:
        return self._versions.store

    def switched(self) -> bool:
        """
        Read the catalog now; true if the store changed version.
        """
        before = self._versions.version
        self._versions.refresh(force=True)
        return self._versions.version != before

    def apply(
        self, changes: Sequence[HistoryChange], *, projector: str, position: int
    ) -> None:
        self._store().apply(changes, projector=projector, position=position)

    def position(self, projector: str) -> int:
        store = self._versions.refresh()
        self._pinned.store = store
        return store.position(projector)

    # The dead letters of the same version, so parking follows the switch.

    def park(self, letters: Sequence[DeadLetter]) -> None:
        self._store().letters.park(letters)

    def parked(self, projector: str) -> list[DeadLetter]:
        return self._store().letters.parked(projector)

    def parked_conversations(self, projector: str) -> set[UUID]:
        return self._store().letters.parked_conversations(projector)

    def release(self, letter: DeadLetter) -> None:
        self._store().letters.release(letter)

    def close(self) -> None:
        self._versions.close()

    def _store(self) -> ClosableHistory:
        pinned: ClosableHistory | None = getattr(self._pinned, "store", None)
        return pinned or self._versions.store


def _now() -> str:
    return datetime.now(UTC).isoformat()
