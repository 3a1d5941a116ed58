"""
The embedded read models: history, conversation lists and receipts in SQLite.

One connection writes (the log follower's thread); every other thread reads
through a connection of its own, which WAL mode lets run beside the writer.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from uuid import UUID

from domain.ids import UserId
from infra.deadletters import SQLiteDeadLetters
from projections.history import (
    ConversationOpened,
    HistoryChange,
    MarksRaised,
    MessageStored,
)
from projections.views import (
    ConversationView,
    HistoryPage,
    MessageView,
    ReceiptView,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT PRIMARY KEY,
    user_a TEXT NOT NULL,
    user_b TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_activity TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_conversations (
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    delivered_up_to INTEGER NOT NULL DEFAULT 0,
    read_up_to INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    projector TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""

MESSAGE_COLUMNS = (
    "conversation_id, seq, message_id, sender, body, sent_at, client_msg_id"
)

# The list of a user's conversations, newest activity first. Unread counts the
# peer's messages past the user's read mark: one's own messages are never unread.
CONVERSATIONS_OF = """
SELECT c.conversation_id, uc.peer, c.last_seq,
       mine.delivered_up_to, mine.read_up_to,
       theirs.delivered_up_to, theirs.read_up_to,
       (SELECT COUNT(*) FROM messages m
         WHERE m.conversation_id = c.conversation_id
           AND m.seq > mine.read_up_to AND m.sender != uc.user_id)
FROM user_conversations uc
JOIN conversations c ON c.conversation_id = uc.conversation_id
JOIN receipts mine
  ON mine.conversation_id = c.conversation_id AND mine.user_id = uc.user_id
JOIN receipts theirs
  ON theirs.conversation_id = c.conversation_id AND theirs.user_id = uc.peer
WHERE uc.user_id = ?
ORDER BY c.last_activity DESC, c.conversation_id
"""


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # History can always be rebuilt from the event store, which keeps full
    # durability; here a crash keeps every commit, a power loss may drop the
    # last ones together with their position, so they are projected again.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


class SQLiteHistory:
    """
    History store and queries over one SQLite file.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer = connect(path)
        self._writer.executescript(SCHEMA)
        self.letters = SQLiteDeadLetters(path)
        """Events this version's projector parked (the dead-letter queue)."""
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def close(self) -> None:
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        self.letters.close()
        self._writer.close()

    # Writing.

    def apply(
        self, changes: Sequence[HistoryChange], *, projector: str, position: int
    ) -> None:
        with self._write_lock, self._transaction() as db:
            for change in changes:
                self._apply_one(db, change)
            db.execute(
                "INSERT INTO positions VALUES (?, ?) ON CONFLICT (projector) "
                "DO UPDATE SET position = excluded.position "
                "WHERE excluded.position > positions.position",
                (projector, position),
            )

    def position(self, projector: str) -> int:
        row = (
            self._reader()
            .execute("SELECT position FROM positions WHERE projector = ?", (projector,))
            .fetchone()
        )
        return int(row[0]) if row else 0

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            yield self._writer
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise
        self._writer.execute("COMMIT")

    def _apply_one(self, db: sqlite3.Connection, change: HistoryChange) -> None:
        if isinstance(change, ConversationOpened):
            self._open(db, change)
        elif not self._claim_version(db, change):
            return  # Applied before: a replay of the log changes nothing.
        elif isinstance(change, MessageStored):
            self._store_message(db, change)
        else:
            self._raise_marks(db, change)

    def _open(self, db: sqlite3.Connection, change: ConversationOpened) -> None:
        cid, user_a, user_b = str(change.conversation_id), change.user_a, change.user_b
        db.execute(
            "INSERT OR IGNORE INTO conversations VALUES (?, ?, ?, ?, 0, ?)",
            (cid, user_a, user_b, change.version, change.started_at.isoformat()),
        )
        db.executemany(
            "INSERT OR IGNORE INTO user_conversations VALUES (?, ?, ?)",
            [(user_a, cid, user_b), (user_b, cid, user_a)],
        )
        db.executemany(
            "INSERT OR IGNORE INTO receipts VALUES (?, ?, 0, 0)",
            [(cid, user_a), (cid, user_b)],
        )

    def _claim_version(
        self, db: sqlite3.Connection, change: MessageStored | MarksRaised
    ) -> bool:
        cursor = db.execute(
            "UPDATE conversations SET version = ? "
            "WHERE conversation_id = ? AND version < ?",
            (change.version, str(change.conversation_id), change.version),
        )
        return cursor.rowcount == 1

    def _store_message(self, db: sqlite3.Connection, change: MessageStored) -> None:
        message = change.message
        db.execute(
            f"INSERT OR IGNORE INTO messages ({MESSAGE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                str(message.conversation_id),
                message.seq,
                str(message.message_id),
                message.sender,
                message.body,
                message.sent_at.isoformat(),
                message.client_msg_id,
            ),
        )
        db.execute(
            "UPDATE conversations SET last_seq = MAX(last_seq, ?), last_activity = ? "
            "WHERE conversation_id = ?",
            (message.seq, message.sent_at.isoformat(), str(message.conversation_id)),
        )

    def _raise_marks(self, db: sqlite3.Connection, change: MarksRaised) -> None:
        db.execute(
            "UPDATE receipts SET delivered_up_to = MAX(delivered_up_to, ?), "
            "read_up_to = MAX(read_up_to, ?) "
            "WHERE conversation_id = ? AND user_id = ?",
            (
                change.delivered_up_to,
                change.read_up_to,
                str(change.conversation_id),
                change.user,
            ),
        )

    # Reading.

    def participants(self, conversation_id: UUID) -> tuple[UserId, UserId] | None:
        row = (
            self._reader()
            .execute(
                "SELECT user_a, user_b FROM conversations WHERE conversation_id = ?",
                (str(conversation_id),),
            )
            .fetchone()
        )
        return (row[0], row[1]) if row else None

    def peers_of(self, user: UserId) -> list[UserId]:
        rows = self._reader().execute(
            "SELECT peer FROM user_conversations WHERE user_id = ?", (user,)
        )
        return [peer for (peer,) in rows]

    def conversations_of(self, user: UserId) -> list[ConversationView]:
        reader = self._reader()
        rows = reader.execute(CONVERSATIONS_OF, (user,)).fetchall()
        return [self._conversation_view(reader, user, row) for row in rows]

    def _conversation_view(
        self, reader: sqlite3.Connection, user: UserId, row: sqlite3.Row
    ) -> ConversationView:
        cid, peer, last_seq, my_d, my_r, their_d, their_r, unread = row
        conversation_id = UUID(cid)
        return ConversationView(
            conversation_id=conversation_id,
            user=user,
            peer=peer,
            last_seq=last_seq,
            last_message=self._message_at(reader, cid, last_seq),
            unread=unread,
            mine=ReceiptView(conversation_id, user, my_d, my_r),
            theirs=ReceiptView(conversation_id, peer, their_d, their_r),
        )

    def _message_at(
        self, reader: sqlite3.Connection, cid: str, seq: int
    ) -> MessageView | None:
        row = reader.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages "
            "WHERE conversation_id = ? AND seq = ?",
            (cid, seq),
        ).fetchone()
        return _message_view(row) if row else None

    def page(
        self,
        conversation_id: UUID,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> HistoryPage:
        """
        Newest first by default; oldest first when ``after_seq`` is given.
        """
        ascending = after_seq is not None
        query = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?"
        params: list[object] = [str(conversation_id)]
        if after_seq is not None:
            query += " AND seq > ?"
            params.append(after_seq)
        if before_seq is not None:
            query += " AND seq < ?"
            params.append(before_seq)
        query += f" ORDER BY seq {'ASC' if ascending else 'DESC'} LIMIT ?"
        # One row more than asked tells whether anything lies beyond this page.
        params.append(limit + 1)

        rows = self._reader().execute(query, params).fetchall()
        messages = [_message_view(row) for row in rows[:limit]]
        end = len(rows) <= limit
        cursor = None if end or not messages else messages[-1].seq
        return HistoryPage(messages=messages, cursor=cursor, end=end)

    def receipts(self, conversation_id: UUID) -> list[ReceiptView]:
        rows = self._reader().execute(
            "SELECT user_id, delivered_up_to, read_up_to FROM receipts "
            "WHERE conversation_id = ? ORDER BY user_id",
            (str(conversation_id),),
        )
        return [ReceiptView(conversation_id, *row) for row in rows]

    def _reader(self) -> sqlite3.Connection:
        reader: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if reader is None:
            reader = connect(self._path)
            self._local.connection = reader
            with self._readers_lock:
                self._readers.append(reader)
        return reader


def _message_view(row: tuple[str, int, str, str, str, str, str]) -> MessageView:
    cid, seq, message_id, sender, body, sent_at, client_msg_id = row
    return MessageView(
        conversation_id=UUID(cid),
        seq=seq,
        message_id=UUID(message_id),
        sender=sender,
        body=body,
        sent_at=datetime.fromisoformat(sent_at),
        client_msg_id=client_msg_id,
    )
