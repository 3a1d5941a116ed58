"""
The embedded push store: subscriptions, the push outbox and its attempt log.

A push moves ``pending`` (decided, waiting for its due time) to ``sending``
(targets chosen, one delivery each) to ``done``, or to ``cancelled`` when the
recipient received everything in time. A delivery moves ``pending`` to
``sent``, ``gone`` (the push service forgot the subscription) or ``failed``.
Each attempt is written before the request leaves and again with its
outcome, so a restart resends exactly the deliveries that have no outcome,
under the same push id, which the push service and the webhook receiver use
to collapse a repeat.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from domain.ids import UserId
from infra.sqlite import connect
from projections.notifications import PendingPush

SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    endpoint TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_by_user ON subscriptions (user_id);
CREATE TABLE IF NOT EXISTS pushes (
    push_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    opened_at REAL NOT NULL,
    due_at REAL NOT NULL,
    seqs TEXT NOT NULL,
    body TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    count INTEGER
);
CREATE INDEX IF NOT EXISTS pushes_by_status ON pushes (status, due_at);
CREATE TABLE IF NOT EXISTS decided (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    push_id TEXT NOT NULL REFERENCES pushes (push_id),
    target TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    p256dh TEXT,
    auth TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, next_at);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    status_code INTEGER,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""

PUSH_COLUMNS = (
    "push_id, conversation_id, recipient, sender, opened_at, due_at, seqs, body"
)
PushRow = tuple[str, str, str, str, float, float, str, str | None]


@dataclass(frozen=True)
class Subscription:
    """
    A browser's Web Push subscription, as ``PushManager.subscribe`` made it.
    """

    user: UserId
    endpoint: str
    p256dh: str
    auth: str


@dataclass(frozen=True)
class Target:
    """
    Where one delivery of a push goes: a subscription, or the webhook.
    """

    kind: str
    endpoint: str
    p256dh: str | None = None
    auth: str | None = None


@dataclass(frozen=True)
class Delivery:
    """
    One push to one target, with the count decided when it fell due.
    """

    delivery_id: UUID
    push: PendingPush
    count: int
    target: Target
    attempts: int


@dataclass(frozen=True)
class Attempt:
    """
    One request to a target and what came of it; no outcome while in flight.
    """

    delivery_id: UUID
    number: int
    started_at: datetime
    outcome: str | None
    status_code: int | None


def epoch_of(at: datetime) -> float:
    """Seconds since the epoch, as both stores keep times."""
    return at.timestamp()


def time_of(epoch: float) -> datetime:
    """The UTC time of seconds since the epoch."""
    return datetime.fromtimestamp(epoch, UTC)


def push_of_row(row: PushRow) -> PendingPush:
    """A pending push from its ``PUSH_COLUMNS``, in either store."""
    push_id, cid, recipient, sender, opened, due, seqs, body = row
    return PendingPush(
        push_id=UUID(push_id),
        conversation_id=UUID(cid),
        recipient=recipient,
        sender=sender,
        opened_at=time_of(opened),
        due_at=time_of(due),
        seqs=tuple(json.loads(seqs)),
        body=body,
    )


class SQLitePushStore:
    """
    Subscriptions and the push outbox in one SQLite file, for one process.
    """

    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._interrupted()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _interrupted(self) -> None:
        # An attempt without an outcome was cut short by a crash; its delivery
        # is still pending and will be sent again.
        with self._transaction() as db:
            db.execute(
                "UPDATE attempts SET outcome = 'interrupted' WHERE outcome IS NULL"
            )

    # Subscriptions.

    def subscribe(self, subscription: Subscription, *, at: datetime) -> None:
        """
        Keep a subscription; a browser's endpoint belongs to its latest user.
        """
        with self._transaction() as db:
            db.execute(
                "INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, "
                "p256dh = excluded.p256dh, auth = excluded.auth",
                (
                    subscription.endpoint,
                    subscription.user,
                    subscription.p256dh,
                    subscription.auth,
                    epoch_of(at),
                ),
            )

    def unsubscribe(self, user: UserId, endpoint: str) -> bool:
        """
        Forget ``user``'s subscription; false if they had none at ``endpoint``.
        """
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM subscriptions WHERE endpoint = ? AND user_id = ?",
                (endpoint, user),
            )
            return cursor.rowcount > 0

    def forget_endpoint(self, endpoint: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM subscriptions WHERE endpoint = ?", (endpoint,))

    def subscriptions_of(self, user: UserId) -> list[Subscription]:
        with self._lock:
            rows = self._db.execute(
                "SELECT user_id, endpoint, p256dh, auth FROM subscriptions "
                "WHERE user_id = ? ORDER BY created_at, endpoint",
                (user,),
            ).fetchall()
        return [Subscription(*row) for row in rows]

    # The outbox, as the decider writes it.

    def position(self, name: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT position FROM positions WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else int(row[0])

    def save_position(self, name: str, position: int) -> None:
        with self._transaction() as db:
            self._set_position(db, name, position)

    def pending_push(
        self, conversation_id: UUID, recipient: UserId
    ) -> PendingPush | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {PUSH_COLUMNS} FROM pushes WHERE conversation_id = ? "
                "AND recipient = ? AND status = 'pending'",
                (str(conversation_id), recipient),
            ).fetchone()
        return None if row is None else push_of_row(row)

    def decided(self, conversation_id: UUID, seq: int) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM decided WHERE conversation_id = ? AND seq = ?",
                (str(conversation_id), seq),
            ).fetchone()
        return row is not None

    def record(
        self,
        pushes: Sequence[PendingPush],
        decided: Sequence[tuple[UUID, int]],
        *,
        position: int,
        name: str = "notifier",
    ) -> None:
        with self._transaction() as db:
            for push in pushes:
                self._upsert_push(db, push)
            db.executemany(
                "INSERT OR IGNORE INTO decided VALUES (?, ?)",
                [(str(cid), seq) for cid, seq in decided],
            )
            self._set_position(db, name, position)

    def _upsert_push(self, db: sqlite3.Connection, push: PendingPush) -> None:
        db.execute(
            f"INSERT INTO pushes ({PUSH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (push_id) DO UPDATE SET due_at = excluded.due_at, "
            "seqs = excluded.seqs, body = excluded.body WHERE status = 'pending'",
            (
                str(push.push_id),
                str(push.conversation_id),
                push.recipient,
                push.sender,
                epoch_of(push.opened_at),
                epoch_of(push.due_at),
                json.dumps(list(push.seqs)),
                push.body,
            ),
        )

    def _set_position(self, db: sqlite3.Connection, name: str, position: int) -> None:
        db.execute(
            "INSERT INTO positions VALUES (?, ?) ON CONFLICT (name) "
            "DO UPDATE SET position = excluded.position "
            "WHERE excluded.position > positions.position",
            (name, position),
        )

    # The outbox, as the dispatcher drains it.

    def due_pushes(self, now: datetime) -> list[PendingPush]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {PUSH_COLUMNS} FROM pushes WHERE status = 'pending' "
                "AND due_at <= ? ORDER BY due_at",
                (epoch_of(now),),
            ).fetchall()
        return [push_of_row(row) for row in rows]

    def cancel(self, push_id: UUID) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE pushes SET status = 'cancelled' WHERE push_id = ?",
                (str(push_id),),
            )

    def start_sending(
        self,
        push_id: UUID,
        *,
        count: int,
        deliveries: Sequence[tuple[UUID, Target]],
        at: datetime,
    ) -> None:
        """
        Fix the push's count and targets: from here on it is only ever sent.
        """
        status = "sending" if deliveries else "done"
        with self._transaction() as db:
            db.execute(
                "UPDATE pushes SET status = ?, count = ? WHERE push_id = ?",
                (status, count, str(push_id)),
            )
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (delivery_id, push_id, target, "
                "endpoint, p256dh, auth, next_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        str(delivery_id),
                        str(push_id),
                        target.kind,
                        target.endpoint,
                        target.p256dh,
                        target.auth,
                        epoch_of(at),
                    )
                    for delivery_id, target in deliveries
                ],
            )

    def due_deliveries(self, now: datetime) -> list[Delivery]:
        with self._lock:
            rows = self._db.execute(
                "SELECT d.delivery_id, p.count, d.target, d.endpoint, d.p256dh, "
                "d.auth, d.attempts, "
                + ", ".join(f"p.{column}" for column in PUSH_COLUMNS.split(", "))
                + " FROM deliveries d JOIN pushes p USING (push_id) "
                "WHERE d.status = 'pending' AND d.next_at <= ? ORDER BY d.next_at",
                (epoch_of(now),),
            ).fetchall()
        return [
            Delivery(
                delivery_id=UUID(row[0]),
                push=push_of_row(row[7:]),
                count=row[1],
                target=Target(*row[2:6]),
                attempts=row[6],
            )
            for row in rows
        ]

    def begin_attempt(self, delivery_id: UUID, *, at: datetime) -> int:
        """
        Write down that a request is about to leave; return its number.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET attempts = attempts + 1 WHERE delivery_id = ?",
                (str(delivery_id),),
            )
            (number,) = db.execute(
                "SELECT attempts FROM deliveries WHERE delivery_id = ?",
                (str(delivery_id),),
            ).fetchone()
            db.execute(
                "INSERT INTO attempts (delivery_id, number, started_at) "
                "VALUES (?, ?, ?)",
                (str(delivery_id), number, epoch_of(at)),
            )
        return int(number)

    def finish_attempt(
        self,
        delivery_id: UUID,
        number: int,
        *,
        outcome: str,
        status_code: int | None,
        status: str,
        next_at: datetime,
        at: datetime,
    ) -> None:
        """
        Record an attempt's outcome and where its delivery stands now.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE attempts SET finished_at = ?, outcome = ?, status_code = ? "
                "WHERE delivery_id = ? AND number = ?",
                (epoch_of(at), outcome, status_code, str(delivery_id), number),
            )
            db.execute(
                "UPDATE deliveries SET status = ?, next_at = ? WHERE delivery_id = ?",
                (status, epoch_of(next_at), str(delivery_id)),
            )
            self._finish_push(db, delivery_id)

    def _finish_push(self, db: sqlite3.Connection, delivery_id: UUID) -> None:
        db.execute(
            "UPDATE pushes SET status = 'done' WHERE push_id = "
            "(SELECT push_id FROM deliveries WHERE delivery_id = ?) AND NOT EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.push_id = pushes.push_id "
            "AND d.status = 'pending')",
            (str(delivery_id),),
        )

    def next_due(self) -> datetime | None:
        """
        When the earliest pending push or delivery falls due, if any does.
        """
        with self._lock:
            (at,) = self._db.execute(
                "SELECT MIN(at) FROM (SELECT MIN(due_at) AS at FROM pushes "
                "WHERE status = 'pending' UNION ALL SELECT MIN(next_at) "
                "FROM deliveries WHERE status = 'pending')"
            ).fetchone()
        return None if at is None else time_of(at)

    # What happened, for operators and tests.

    def attempts_of(self, push_id: UUID) -> list[Attempt]:
        with self._lock:
            rows = self._db.execute(
                "SELECT a.delivery_id, a.number, a.started_at, a.outcome, "
                "a.status_code FROM attempts a JOIN deliveries d USING "
                "(delivery_id) WHERE d.push_id = ? ORDER BY a.started_at, a.number",
                (str(push_id),),
            ).fetchall()
        return [
            Attempt(UUID(d), number, time_of(started), outcome, code)
            for d, number, started, outcome, code in rows
        ]
