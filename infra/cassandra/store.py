"""
The scaled profile's history in Cassandra, answering exactly as SQLiteHistory.

Tables (created by the files in ``migrations/``)::

    conversations          conversation_id -> user_a, user_b, started_at
    conversations_by_user  (user_id) conversation_id -> peer, started_at
    messages               (conversation_id, bucket) seq DESC -> the message
    message_buckets        (conversation_id) bucket DESC
    messages_by_sender     (conversation_id, sender) seq
    receipts               (conversation_id) user_id, kind, up_to DESC
    positions              (projector) position DESC

A message lives in bucket ``seq // BUCKET_SIZE``, so no partition grows past
``BUCKET_SIZE`` messages and a history page is a slice of one or two of them.

Why nothing here moves backwards
--------------------------------
Cassandra settles two writes of one cell by their write timestamps, and a
rebuild or a second projector instance may write with equal timestamps, or
write an older change after a newer one. So this adapter never updates a
cell to a new value:

- conversations, messages and the index tables are written once, with values
  that depend only on the change: every replay writes identical cells;
- a conversation's last seq and last activity are not cells but its newest
  message: the first row of its highest bucket in ``message_buckets``;
- a receipt mark is a clustering row per value. Raising it inserts the row of
  the new value and deletes the rows below it, in one single-partition batch.
  A delete only covers values below one written with it, so the highest value
  ever written is never deleted: the mark read back (the highest row) can
  only rise, whatever the order and the timestamps of the writes;
- the projector position is kept the same way.

Unread is derived, not counted: the peer's rows in ``messages_by_sender`` past
the user's read mark, one slice of one partition.

TODO(unread-partitions): ``messages_by_sender`` keeps one partition per
(conversation, sender) that grows with the conversation; bucket it like
``messages`` before conversations reach millions of messages, or its
partitions outgrow what Cassandra handles well.

Idempotence on (conversation id, version)
-----------------------------------------
SQLiteHistory skips a change whose version it has already passed. Here every
write is a function of its change alone, so applying a change again, in any
batch, rewrites the same rows and no read is needed before a write. One
difference follows: SQLite drops a change that arrives after a later version
of its conversation, this adapter applies it. With the log's per-conversation
order (one Kafka partition per conversation) both end with the same rows.

Writing and failing
-------------------
``apply`` turns changes into prepared statements, groups them by table
partition into small unlogged batches, runs them concurrently and only then
records the position. Driver errors leave as ``HistoryUnavailableError`` or
``HistoryRequestError``: the position is then not recorded, and the caller
applies the same batch again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from domain.ids import UserId
from infra.cassandra.deadletters import CassandraDeadLetters
from infra.cassandra.errors import translated
from infra.cassandra.migrate import check_keyspace
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

BUCKET_SIZE = 1000
"""Messages per partition. Part of the schema: changing it re-buckets history."""

# Cassandra warns about batches over 5 KiB; these stay below that.
MAX_BATCH_STATEMENTS = 30
MAX_BATCH_BYTES = 4000
CONCURRENCY = 64
ROW_OVERHEAD_BYTES = 64

SEQ_MIN = -(2**63)
SEQ_MAX = 2**63 - 1
DELIVERED = "delivered"
READ = "read"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

MESSAGE_COLUMNS = (
    "conversation_id, seq, message_id, sender, body, sent_at, client_msg_id"
)

CQL = {
    "insert_conversation": "INSERT INTO {ks}.conversations "
    "(conversation_id, user_a, user_b, started_at) VALUES (?, ?, ?, ?) "
    "USING TIMESTAMP ?",
    "insert_membership": "INSERT INTO {ks}.conversations_by_user "
    "(user_id, conversation_id, peer, started_at) VALUES (?, ?, ?, ?) "
    "USING TIMESTAMP ?",
    "insert_message": "INSERT INTO {ks}.messages "
    "(conversation_id, bucket, seq, message_id, sender, body, sent_at, "
    "client_msg_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "insert_bucket": "INSERT INTO {ks}.message_buckets (conversation_id, bucket) "
    "VALUES (?, ?) USING TIMESTAMP ?",
    "insert_sent": "INSERT INTO {ks}.messages_by_sender "
    "(conversation_id, sender, seq) VALUES (?, ?, ?) USING TIMESTAMP ?",
    "insert_mark": "INSERT INTO {ks}.receipts (conversation_id, user_id, kind, "
    "up_to) VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "prune_marks": "DELETE FROM {ks}.receipts USING TIMESTAMP ? WHERE "
    "conversation_id = ? AND user_id = ? AND kind = ? AND up_to < ?",
    "insert_position": "INSERT INTO {ks}.positions (projector, position) "
    "VALUES (?, ?) USING TIMESTAMP ?",
    "prune_positions": "DELETE FROM {ks}.positions USING TIMESTAMP ? "
    "WHERE projector = ? AND position < ?",
    "select_position": "SELECT position FROM {ks}.positions "
    "WHERE projector = ? LIMIT 1",
    "select_participants": "SELECT user_a, user_b FROM {ks}.conversations "
    "WHERE conversation_id = ?",
    "select_memberships": "SELECT conversation_id, peer, started_at "
    "FROM {ks}.conversations_by_user WHERE user_id = ?",
    "select_buckets": "SELECT bucket FROM {ks}.message_buckets "
    "WHERE conversation_id = ?",
    "select_newest": f"SELECT {MESSAGE_COLUMNS} FROM {{ks}}.messages "
    "WHERE conversation_id = ? AND bucket = ? AND seq >= ? AND seq <= ? "
    "ORDER BY seq DESC LIMIT ?",
    "select_oldest": f"SELECT {MESSAGE_COLUMNS} FROM {{ks}}.messages "
    "WHERE conversation_id = ? AND bucket = ? AND seq >= ? AND seq <= ? "
    "ORDER BY seq ASC LIMIT ?",
    "select_marks": "SELECT user_id, kind, up_to FROM {ks}.receipts "
    "WHERE conversation_id = ?",
    "count_sent_after": "SELECT COUNT(*) FROM {ks}.messages_by_sender "
    "WHERE conversation_id = ? AND sender = ? AND seq > ?",
}


@dataclass(frozen=True)
class _Write:
    """
    One bound statement, with the partition it writes and the row it names.
    """

    partition: tuple[object, ...]
    row: tuple[object, ...]
    statement: Any
    size: int = ROW_OVERHEAD_BYTES


@dataclass(frozen=True)
class _Membership:
    conversation_id: UUID
    peer: UserId
    started_at: int


class CassandraHistory:
    """
    History store and queries over one Cassandra keyspace.

    ``write_timestamp`` fixes the timestamp of every write, as a rebuild does;
    by default each ``apply`` uses the client's clock. ``batch`` bounds each
    single-partition batch (statements, bytes); a rebuild's large batches
    stay under Cassandra's 50 KiB refusal threshold.
    """

    def __init__(
        self,
        session: Any,
        keyspace: str,
        *,
        write_timestamp: int | None = None,
        owns_cluster: bool = False,
        batch: tuple[int, int] = (MAX_BATCH_STATEMENTS, MAX_BATCH_BYTES),
    ) -> None:
        self._session = session
        self._keyspace = check_keyspace(keyspace)
        self._write_timestamp = write_timestamp
        self._owns_cluster = owns_cluster
        self._batch = batch
        with translated(f"prepare history statements in {keyspace}"):
            self._cql = {
                name: session.prepare(text.format(ks=keyspace))
                for name, text in CQL.items()
            }
        self.letters = CassandraDeadLetters(session, keyspace)
        """Events this version's projector parked (the dead-letter queue)."""

    @property
    def keyspace(self) -> str:
        return self._keyspace

    def close(self) -> None:
        if self._owns_cluster:
            self._session.cluster.shutdown()

    # Writing.

    def apply(
        self, changes: Sequence[HistoryChange], *, projector: str, position: int
    ) -> None:
        timestamp = self._timestamp()
        writes = self._writes(changes, timestamp)
        with translated(f"apply history up to position {position}"):
            self._run(_batches(writes, self._batch))
            # Only once every row is written: a failure above repeats the batch.
            positions = self._position_writes(projector, position, timestamp)
            self._run(_batches(positions, self._batch))

    def position(self, projector: str) -> int:
        with translated(f"read the position of {projector}"):
            row = self._session.execute(self._cql["select_position"], (projector,))
            first = row.one()
        return int(first.position) if first else 0

    def _timestamp(self) -> int:
        if self._write_timestamp is not None:
            return self._write_timestamp
        return time.time_ns() // 1000

    def _run(self, statements: list[Any]) -> None:
        execute_concurrent(
            self._session,
            [(statement, ()) for statement in statements],
            concurrency=CONCURRENCY,
            raise_on_first_error=True,
        )

    def _writes(self, changes: Sequence[HistoryChange], timestamp: int) -> list[_Write]:
        # Changes repeated within a batch name the same rows: write each once.
        unique: dict[tuple[object, ...], _Write] = {}
        for change in changes:
            for write in self._writes_for(change, timestamp):
                unique[write.row] = write
        return list(unique.values())

    def _writes_for(self, change: HistoryChange, timestamp: int) -> list[_Write]:
        if isinstance(change, ConversationOpened):
            return self._opened(change, timestamp)
        if isinstance(change, MessageStored):
            return self._stored(change.message, timestamp)
        return self._raised(change, timestamp)

    def _opened(self, change: ConversationOpened, timestamp: int) -> list[_Write]:
        cid, started_at = change.conversation_id, _micros(change.started_at)
        conversation = self._cql["insert_conversation"].bind(
            (cid, change.user_a, change.user_b, started_at, timestamp)
        )
        writes = [_Write(("conversations", cid), ("conversation", cid), conversation)]
        sides = [(change.user_a, change.user_b), (change.user_b, change.user_a)]
        for user, peer in sides:
            membership = self._cql["insert_membership"].bind(
                (user, cid, peer, started_at, timestamp)
            )
            writes.append(_Write(("by_user", user), ("member", user, cid), membership))
        return writes

    def _stored(self, message: MessageView, timestamp: int) -> list[_Write]:
        cid, seq, sender = message.conversation_id, message.seq, message.sender
        bucket = seq // BUCKET_SIZE
        values = (
            cid,
            bucket,
            seq,
            message.message_id,
            sender,
            message.body,
            _micros(message.sent_at),
            message.client_msg_id,
            timestamp,
        )
        text = message.body + message.client_msg_id + sender
        size = ROW_OVERHEAD_BYTES + len(text.encode())
        row = self._cql["insert_message"].bind(values)
        index = self._cql["insert_bucket"].bind((cid, bucket, timestamp))
        sent = self._cql["insert_sent"].bind((cid, sender, seq, timestamp))
        return [
            _Write(("messages", cid, bucket), ("message", cid, seq), row, size),
            _Write(("buckets", cid), ("bucket", cid, bucket), index),
            _Write(("sent", cid, sender), ("sent", cid, seq), sent),
        ]

    def _raised(self, change: MarksRaised, timestamp: int) -> list[_Write]:
        cid, user = change.conversation_id, change.user
        marks = {DELIVERED: change.delivered_up_to, READ: change.read_up_to}
        writes = []
        for kind, mark in marks.items():
            if mark <= 0:
                continue  # Every mark starts at 0: there is nothing to raise.
            insert = self._cql["insert_mark"].bind((cid, user, kind, mark, timestamp))
            prune = self._cql["prune_marks"].bind((timestamp, cid, user, kind, mark))
            row = ("mark", cid, user, kind, mark)
            writes.append(_Write(("receipts", cid), (*row, "insert"), insert))
            writes.append(_Write(("receipts", cid), (*row, "prune"), prune))
        return writes

    def _position_writes(
        self, projector: str, position: int, timestamp: int
    ) -> list[_Write]:
        insert = self._cql["insert_position"].bind((projector, position, timestamp))
        prune = self._cql["prune_positions"].bind((timestamp, projector, position))
        partition = ("positions", projector)
        return [
            _Write(partition, ("position", "insert"), insert),
            _Write(partition, ("position", "prune"), prune),
        ]

    # Reading.

    def participants(self, conversation_id: UUID) -> tuple[UserId, UserId] | None:
        with translated(f"read conversation {conversation_id}"):
            row = self._session.execute(
                self._cql["select_participants"], (conversation_id,)
            ).one()
        return (str(row.user_a), str(row.user_b)) if row else None

    def peers_of(self, user: UserId) -> list[UserId]:
        return [membership.peer for membership in self._memberships(user)]

    def conversations_of(self, user: UserId) -> list[ConversationView]:
        memberships = self._memberships(user)
        keys = [(m.conversation_id,) for m in memberships]
        with translated(f"read the conversations of {user}"):
            buckets = self._gather("select_buckets", keys)
            marks = self._gather("select_marks", keys)
        receipts = [
            _receipts(m.conversation_id, (user, m.peer), rows)
            for m, rows in zip(memberships, marks, strict=True)
        ]
        unread = self._unread(user, memberships, receipts)
        lasts = self._last_messages(memberships, buckets)
        views = [
            _conversation_view(user, m, last, count, receipt)
            for m, last, count, receipt in zip(
                memberships, lasts, unread, receipts, strict=True
            )
        ]
        return _by_activity(views, memberships, lasts)

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
        if limit < 0:
            raise ValueError("limit must not be negative")
        ascending = after_seq is not None
        low = SEQ_MIN if after_seq is None else _clamp(after_seq + 1)
        high = SEQ_MAX if before_seq is None else _clamp(before_seq - 1)

        # One row more than asked tells whether anything lies beyond this page.
        with translated(f"read a page of {conversation_id}"):
            buckets = self._buckets(conversation_id)
            rows = self._slice(
                conversation_id, buckets, (low, high), ascending, limit + 1
            )
        messages = rows[:limit]
        end = len(rows) <= limit
        cursor = None if end or not messages else messages[-1].seq
        return HistoryPage(messages=messages, cursor=cursor, end=end)

    def receipts(self, conversation_id: UUID) -> list[ReceiptView]:
        users = self.participants(conversation_id)
        if users is None:
            return []
        with translated(f"read the receipts of {conversation_id}"):
            rows = list(
                self._session.execute(self._cql["select_marks"], (conversation_id,))
            )
        by_user = _receipts(conversation_id, users, rows)
        return [by_user[user] for user in sorted(users)]

    def _memberships(self, user: UserId) -> list[_Membership]:
        with translated(f"read the conversations of {user}"):
            rows = self._session.execute(self._cql["select_memberships"], (user,))
            memberships = [
                _Membership(row.conversation_id, str(row.peer), int(row.started_at))
                for row in rows
            ]
        return sorted(memberships, key=lambda m: str(m.conversation_id))

    def _buckets(self, conversation_id: UUID) -> list[int]:
        rows = self._session.execute(self._cql["select_buckets"], (conversation_id,))
        return [int(row.bucket) for row in rows]

    def _gather(
        self, name: str, params: Iterable[tuple[object, ...]]
    ) -> list[list[Any]]:
        """
        Run one prepared query per parameter tuple, all at once, in order.
        """
        futures = [self._session.execute_async(self._cql[name], p) for p in params]
        return [list(future.result()) for future in futures]

    def _slice(
        self,
        conversation_id: UUID,
        buckets: list[int],
        seqs: tuple[int, int],
        ascending: bool,
        want: int,
    ) -> list[MessageView]:
        """
        Up to ``want`` messages with seqs in ``seqs``, bucket after bucket.
        """
        low, high = seqs
        if low > high:
            return []
        # Buckets come highest first; a page reads only those its range touches.
        touched = [b for b in buckets if low // BUCKET_SIZE <= b <= high // BUCKET_SIZE]
        statement = self._cql["select_oldest" if ascending else "select_newest"]
        rows: list[Any] = []
        for bucket in reversed(touched) if ascending else touched:
            params = (conversation_id, bucket, low, high, want - len(rows))
            rows.extend(self._session.execute(statement, params))
            if len(rows) >= want:
                break
        return [_message_view(row) for row in rows]

    def _unread(
        self,
        user: UserId,
        memberships: list[_Membership],
        receipts: list[dict[UserId, ReceiptView]],
    ) -> list[int]:
        # One's own messages are never unread: count the peer's past the mark.
        params = [
            (m.conversation_id, m.peer, receipt[user].read_up_to)
            for m, receipt in zip(memberships, receipts, strict=True)
        ]
        with translated(f"count the unread messages of {user}"):
            counts = self._gather("count_sent_after", params)
        return [int(rows[0][0]) for rows in counts]

    def _last_messages(
        self, memberships: list[_Membership], buckets: list[list[Any]]
    ) -> list[MessageView | None]:
        tops = [
            (m.conversation_id, rows[0].bucket, SEQ_MIN, SEQ_MAX, 1)
            for m, rows in zip(memberships, buckets, strict=True)
            if rows
        ]
        with translated("read the last messages of conversations"):
            newest = iter(self._gather("select_newest", tops))
            lasts: list[MessageView | None] = []
            for m, rows in zip(memberships, buckets, strict=True):
                found = [_message_view(row) for row in next(newest)] if rows else []
                if rows and not found:
                    # A bucket may be indexed just before its first message.
                    older = [int(row.bucket) for row in rows[1:]]
                    seqs = (SEQ_MIN, SEQ_MAX)
                    found = self._slice(m.conversation_id, older, seqs, False, 1)
                lasts.append(found[0] if found else None)
        return lasts


def _batches(writes: list[_Write], limits: tuple[int, int]) -> list[Any]:
    """
    Statements to run: unlogged batches, each within one partition.
    """
    by_partition: dict[tuple[object, ...], list[_Write]] = {}
    for write in writes:
        by_partition.setdefault(write.partition, []).append(write)
    statements: list[Any] = []
    for group in by_partition.values():
        statements.extend(_statement_of(chunk) for chunk in _chunks(group, limits))
    return statements


def _chunks(group: list[_Write], limits: tuple[int, int]) -> Iterable[list[_Write]]:
    most, most_bytes = limits
    chunk: list[_Write] = []
    size = 0
    for write in group:
        full = len(chunk) >= most or size + write.size > most_bytes
        if chunk and full:
            yield chunk
            chunk, size = [], 0
        chunk.append(write)
        size += write.size
    if chunk:
        yield chunk


def _statement_of(chunk: list[_Write]) -> Any:
    if len(chunk) == 1:
        return chunk[0].statement
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for write in chunk:
        batch.add(write.statement)
    return batch


def _receipts(
    conversation_id: UUID, users: Iterable[UserId], rows: list[Any]
) -> dict[UserId, ReceiptView]:
    """
    Each user's marks: the highest row of each kind, 0 where there is none.
    """
    marks: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (str(row.user_id), str(row.kind))
        marks[key] = max(marks.get(key, 0), int(row.up_to))
    return {
        user: ReceiptView(
            conversation_id,
            user,
            marks.get((user, DELIVERED), 0),
            marks.get((user, READ), 0),
        )
        for user in users
    }


def _conversation_view(
    user: UserId,
    membership: _Membership,
    last: MessageView | None,
    unread: int,
    receipts: dict[UserId, ReceiptView],
) -> ConversationView:
    return ConversationView(
        conversation_id=membership.conversation_id,
        user=user,
        peer=membership.peer,
        last_seq=last.seq if last else 0,
        last_message=last,
        unread=unread,
        mine=receipts[user],
        theirs=receipts[membership.peer],
    )


def _by_activity(
    views: list[ConversationView],
    memberships: list[_Membership],
    lasts: list[MessageView | None],
) -> list[ConversationView]:
    """
    Most recent activity first; the conversation id breaks ties, as in SQLite.
    """
    activity = [
        _micros(last.sent_at) if last else membership.started_at
        for membership, last in zip(memberships, lasts, strict=True)
    ]
    # The views come sorted by conversation id, and sorted() is stable.
    ordered = sorted(zip(activity, views, strict=True), key=lambda pair: -pair[0])
    return [view for _, view in ordered]


def _message_view(row: Any) -> MessageView:
    return MessageView(
        conversation_id=row.conversation_id,
        seq=int(row.seq),
        message_id=row.message_id,
        sender=str(row.sender),
        body=str(row.body),
        sent_at=_datetime(int(row.sent_at)),
        client_msg_id=str(row.client_msg_id),
    )


def _micros(at: datetime) -> int:
    """
    Microseconds since the epoch; a time without a zone is taken as UTC.
    """
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(microseconds=1)


def _datetime(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _clamp(seq: int) -> int:
    return min(max(seq, SEQ_MIN), SEQ_MAX)
