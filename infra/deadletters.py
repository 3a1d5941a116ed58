"""
The embedded dead-letter queue: a table in the history version's own file.

Each version of a projection has its own parked events, so a rebuild starts
with an empty queue and parks again whatever still fails.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper

from infra.audit.decoding import UndecodableEventError, decode
from infra.records import LogRecord
from projections.deadletter import DeadLetter, Decode, Encode
from projections.ports import Undecodable

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    projector TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    topic TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL,
    parked_at TEXT NOT NULL,
    PRIMARY KEY (projector, conversation_id, version)
) WITHOUT ROWID;
"""

COLUMNS = (
    "projector, conversation_id, version, position, topic, state, error, parked_at"
)


class SQLiteDeadLetters:
    """
    Parked events in a ``dead_letters`` table of one SQLite file.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def park(self, letters: Sequence[DeadLetter]) -> None:
        rows = [_row(letter) for letter in letters]
        with self._lock:
            # Parking the same event again keeps the first error it met.
            self._db.executemany(
                f"INSERT OR IGNORE INTO dead_letters ({COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def parked(self, projector: str) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM dead_letters WHERE projector = ? "
                "ORDER BY conversation_id, version",
                (projector,),
            ).fetchall()
        return [_letter(row) for row in rows]

    def parked_conversations(self, projector: str) -> set[UUID]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT conversation_id FROM dead_letters WHERE projector = ?",
                (projector,),
            ).fetchall()
        return {UUID(cid) for (cid,) in rows}

    def release(self, letter: DeadLetter) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM dead_letters "
                "WHERE projector = ? AND conversation_id = ? AND version = ?",
                (letter.projector, str(letter.conversation_id), letter.version),
            )

    def close(self) -> None:
        self._db.close()


def encoder(mapper: Mapper[UUID]) -> Encode:
    """
    Turn a domain event into the (topic, state) the event store keeps.
    """

    def encode(event: Any) -> tuple[str, str]:
        stored = mapper.to_stored_event(event)
        return stored.topic, stored.state.decode("utf-8")

    return encode


def decoder(mapper: Mapper[UUID]) -> Decode:
    """
    Turn a parked letter back into its domain event, upcast as on any read.
    """

    def decode_letter(letter: DeadLetter) -> Any:
        record = LogRecord(
            conversation_id=letter.conversation_id,
            version=letter.version,
            notification_id=letter.position,
            topic=letter.topic,
            state=letter.state,
            previous_hash="",
            hash="",
        )
        return decode(record, mapper)

    return decode_letter


def decode_logged(record: LogRecord, mapper: Mapper[UUID]) -> Any:
    """
    The record's domain event, or ``Undecodable`` if this build cannot read it.

    The audit's decoding refuses a schema version newer than the build knows,
    which the library's mapper would build half-understood.
    """
    try:
        return decode(record, mapper)
    except UndecodableEventError as e:
        return Undecodable(
            originator_id=record.conversation_id,
            originator_version=record.version,
            topic=record.topic,
            state=record.state,
            error=str(e),
        )


def _row(letter: DeadLetter) -> tuple[object, ...]:
    return (
        letter.projector,
        str(letter.conversation_id),
        letter.version,
        letter.position,
        letter.topic,
        letter.state,
        letter.error,
        letter.parked_at.isoformat(),
    )


def _letter(row: tuple[Any, ...]) -> DeadLetter:
    projector, cid, version, position, topic, state, error, parked_at = row
    return DeadLetter(
        projector=projector,
        conversation_id=UUID(cid),
        version=int(version),
        position=int(position),
        topic=topic,
        state=state,
        error=error,
        parked_at=datetime.fromisoformat(parked_at),
    )
