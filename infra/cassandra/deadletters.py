"""
The scaled dead-letter queue: a ``dead_letters`` table in the history keyspace.

One partition per projector: parked events are few and read all at once,
by ``status``, ``dlq list`` and the projector before each batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from cassandra.concurrent import execute_concurrent_with_args

from infra.cassandra.errors import translated
from projections.deadletter import DeadLetter

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = (
    "projector, conversation_id, version, position, topic, state, error, parked_at"
)
CQL = {
    "park": f"INSERT INTO {{ks}}.dead_letters ({COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
    "parked": f"SELECT {COLUMNS} FROM {{ks}}.dead_letters WHERE projector = ?",
    "release": "DELETE FROM {ks}.dead_letters "
    "WHERE projector = ? AND conversation_id = ? AND version = ?",
}


class CassandraDeadLetters:
    """
    Parked events of one keyspace version, in Cassandra.
    """

    def __init__(self, session: Any, keyspace: str) -> None:
        self._session = session
        with translated(f"prepare dead-letter statements in {keyspace}"):
            self._cql = {
                name: session.prepare(text.format(ks=keyspace))
                for name, text in CQL.items()
            }

    def park(self, letters: Sequence[DeadLetter]) -> None:
        # IF NOT EXISTS: parking the same event again keeps its first error.
        rows = [_row(letter) for letter in letters]
        with translated(f"park {len(rows)} events"):
            execute_concurrent_with_args(
                self._session, self._cql["park"], rows, raise_on_first_error=True
            )

    def parked(self, projector: str) -> list[DeadLetter]:
        with translated(f"read the parked events of {projector}"):
            rows = list(self._session.execute(self._cql["parked"], (projector,)))
        return [_letter(row) for row in rows]

    def parked_conversations(self, projector: str) -> set[UUID]:
        return {letter.conversation_id for letter in self.parked(projector)}

    def release(self, letter: DeadLetter) -> None:
        key = (letter.projector, letter.conversation_id, letter.version)
        with translated(f"release {letter.conversation_id} v{letter.version}"):
            self._session.execute(self._cql["release"], key)


def _row(letter: DeadLetter) -> tuple[object, ...]:
    parked_at = (letter.parked_at - EPOCH) // timedelta(microseconds=1)
    return (
        letter.projector,
        letter.conversation_id,
        letter.version,
        letter.position,
        letter.topic,
        letter.state,
        letter.error,
        parked_at,
    )


def _letter(row: Any) -> DeadLetter:
    return DeadLetter(
        projector=str(row.projector),
        conversation_id=row.conversation_id,
        version=int(row.version),
        position=int(row.position),
        topic=str(row.topic),
        state=str(row.state),
        error=str(row.error),
        parked_at=EPOCH + timedelta(microseconds=int(row.parked_at)),
    )
