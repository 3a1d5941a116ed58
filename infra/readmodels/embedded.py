"""
Rebuilding the embedded history into a new SQLite file.

The new version is ``history.vN.sqlite`` beside the current one; it is
filled from the event store's notification log while the gateway keeps
reading the current file, then ``catalog.sqlite`` names it current.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from commands.service import ChatService
from infra.catalog import (
    REFRESH_SECONDS,
    SQLiteCatalog,
    SwitchableHistory,
    SwitchableStore,
    catalog_file,
    history_file,
)
from infra.deadletters import decode_logged, encoder
from infra.readmodels.status import (
    ReaderStatus,
    RebuildStatus,
    Status,
    parked_status,
)
from infra.records import record_of
from infra.settings import Settings
from infra.sqlite import SQLiteHistory
from projections.deadletter import ParkingProjector
from projections.ports import LoggedEvent

BATCH_SIZE = 2000
VERSION_FILE = re.compile(r"history\.v(\d+)\.sqlite")
# Readers keep the old file open for up to one catalog refresh after a switch.
DROP_GRACE_SECONDS = 2 * REFRESH_SECONDS + 1


def next_version(data_dir: Path, current: int) -> int:
    """
    One past the highest version in the catalog or on disk.
    """
    found = [
        int(match[1])
        for path in data_dir.glob("history.v*.sqlite")
        if (match := VERSION_FILE.fullmatch(path.name))
    ]
    return max([current, *found]) + 1


class EmbeddedRebuild:
    """
    A rebuild of the embedded history from the notification log.
    """

    name = "history"

    def __init__(
        self,
        settings: Settings,
        chat: ChatService,
        *,
        batch_size: int = BATCH_SIZE,
        drop_grace_seconds: float = DROP_GRACE_SECONDS,
    ) -> None:
        self._data_dir = settings.data_dir
        self._grace_seconds = drop_grace_seconds
        self._chat = chat
        self._batch_size = batch_size
        self._catalog = SQLiteCatalog(catalog_file(settings.data_dir))
        entry = self._catalog.entry(self.name)
        self.old_version = entry.current
        self.version = entry.building or next_version(self._data_dir, entry.current)
        self._catalog.start_rebuild(self.name, self.version)
        self._store = SQLiteHistory(history_file(self._data_dir, self.version))
        self._projector = ParkingProjector(
            self._store, self._store.letters, encoder(chat.mapper), name=self.name
        )

    def done(self) -> int:
        return self._projector.position

    def head(self) -> int:
        return self._chat.recorder.max_notification_id() or 0

    def step(self) -> int:
        notifications = self._chat.recorder.select_notifications(
            start=self._projector.position + 1, limit=self._batch_size
        )
        mapper = self._chat.mapper
        batch = [
            LoggedEvent(n.id, decode_logged(record_of(n, ""), mapper))
            for n in notifications
        ]
        self._projector.handle(batch)
        return len(batch)

    def switch(self) -> None:
        self._catalog.switch(self.name, self.version)

    def drop_old(self) -> None:
        time.sleep(self._grace_seconds)
        old = history_file(self._data_dir, self.old_version)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{old}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        self._store.close()
        self._catalog.close()


def open_history(
    settings: Settings, *, refresh_seconds: float = REFRESH_SECONDS
) -> tuple[SwitchableHistory, SwitchableStore, SQLiteCatalog]:
    """
    The gateway's history: queries and the live projector's store, both
    following the catalog, and the catalog itself (to close last).
    """
    catalog = SQLiteCatalog(catalog_file(settings.data_dir))

    def open_version(version: int) -> SQLiteHistory:
        return SQLiteHistory(history_file(settings.data_dir, version))

    reads = SwitchableHistory(catalog, open_version, refresh_seconds=refresh_seconds)
    writes = SwitchableStore(catalog, open_version, refresh_seconds=refresh_seconds)
    return reads, writes, catalog


def live_projector(writes: SwitchableStore, chat: ChatService) -> ParkingProjector:
    """
    The follower's history projector: parks what fails, follows switches.
    """
    return ParkingProjector(writes, writes, encoder(chat.mapper))


def embedded_status(settings: Settings, chat: ChatService) -> Status:
    """
    The follower's place in the notification log, a rebuild, dead letters.
    """
    head = chat.recorder.max_notification_id() or 0
    catalog = SQLiteCatalog(catalog_file(settings.data_dir))
    entry = catalog.entry("history")
    catalog.close()
    status = Status("embedded", head, entry.current)
    store = SQLiteHistory(history_file(settings.data_dir, entry.current))
    try:
        status.readers.append(ReaderStatus("history", store.position("history"), head))
        status.parked = parked_status(store.letters.parked("history"), head)
    finally:
        store.close()
    if entry.building is not None:
        building = SQLiteHistory(history_file(settings.data_dir, entry.building))
        position = building.position("history")
        building.close()
        status.rebuild = RebuildStatus("history", entry.building, position, head)
    return status


def current_history(settings: Settings) -> SQLiteHistory:
    """
    The version of history that serves reads now, for ``dlq`` commands.
    """
    catalog = SQLiteCatalog(catalog_file(settings.data_dir))
    version = catalog.entry("history").current
    catalog.close()
    return SQLiteHistory(history_file(settings.data_dir, version))
