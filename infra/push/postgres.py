"""
The scaled push store: subscriptions, outbox and attempt log in PostgreSQL.

The same logical schema and the same state machine as
``infra.push.store`` (see its docstring), in tables prefixed ``push_`` beside
the event store. Every gateway writes subscriptions here; ``duetto notify``
writes decisions, deliveries and attempts. Each method is one transaction.
"""

# TODO(push-store-dialects): this module and infra/push/store.py repeat the same
# statements in two SQL dialects (placeholders and table names differ); one
# statement set rendered per dialect would keep the two stores from drifting.

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from domain.ids import UserId
from infra.push.store import (
    PUSH_COLUMNS,
    Attempt,
    Delivery,
    Subscription,
    Target,
    epoch_of,
    push_of_row,
    time_of,
)
from projections.notifications import PendingPush

SCHEMA = """
CREATE TABLE IF NOT EXISTS push_subscriptions (
    endpoint TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS push_subscriptions_by_user
    ON push_subscriptions (user_id);
CREATE TABLE IF NOT EXISTS push_outbox (
    push_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    opened_at DOUBLE PRECISION NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    seqs TEXT NOT NULL,
    body TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    count INTEGER
);
CREATE INDEX IF NOT EXISTS push_outbox_by_status ON push_outbox (status, due_at);
CREATE TABLE IF NOT EXISTS push_decided (
    conversation_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS push_deliveries (
    delivery_id TEXT PRIMARY KEY,
    push_id TEXT NOT NULL REFERENCES push_outbox (push_id),
    target TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    p256dh TEXT,
    auth TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS push_deliveries_by_status
    ON push_deliveries (status, next_at);
CREATE TABLE IF NOT EXISTS push_attempts (
    delivery_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    outcome TEXT,
    status_code INTEGER,
    PRIMARY KEY (delivery_id, number)
);
CREATE TABLE IF NOT EXISTS push_positions (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
"""

# Only one process creates the tables at a time; CREATE IF NOT EXISTS races.
SCHEMA_LOCK = 0x64756574746F


class PostgresPushStore:
    """
    Subscriptions and the push outbox in PostgreSQL, shared by all processes.
    """

    def __init__(self, dsn: str, *, schema: str = "") -> None:
        options = f"-c search_path={schema}" if schema else ""
        self._db = psycopg.connect(dsn, autocommit=True, options=options)
        self._lock = threading.Lock()
        self._leading = False
        with self._transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            if schema:
                db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            db.execute(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock, self._db.transaction():
            yield self._db

    def _one(self, query: str, params: Sequence[Any]) -> Any:
        with self._lock:
            return self._db.execute(query, params).fetchone()

    def _all(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(query, params).fetchall()

    def lead_dispatch(self) -> bool:
        """
        Whether this process is the one that drains the outbox; try to become it.
        """
        # A session lock, per schema: it is released when this connection
        # ends, crash included, and the next notifier to ask takes over.
        if not self._leading:
            (self._leading,) = self._one(
                "SELECT pg_try_advisory_lock(hashtext(current_schema() "
                "|| '.push_dispatcher'))",
                (),
            )
        return bool(self._leading)

    def recover_interrupted(self) -> None:
        """
        Mark attempts cut short by a crash; their deliveries are sent again.
        """
        # Only the dispatching process calls this, at its start: a gateway
        # starting must not touch attempts that are in flight elsewhere.
        with self._transaction() as db:
            db.execute(
                "UPDATE push_attempts SET outcome = 'interrupted' WHERE outcome IS NULL"
            )

    # Subscriptions.

    def subscribe(self, subscription: Subscription, *, at: datetime) -> None:
        """
        Keep a subscription; a browser's endpoint belongs to its latest user.
        """
        with self._transaction() as db:
            db.execute(
                "INSERT INTO push_subscriptions VALUES (%s, %s, %s, %s, %s) "
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
                "DELETE FROM push_subscriptions WHERE endpoint = %s AND user_id = %s",
                (endpoint, user),
            )
            return cursor.rowcount > 0

    def forget_endpoint(self, endpoint: str) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM push_subscriptions WHERE endpoint = %s", (endpoint,)
            )

    def subscriptions_of(self, user: UserId) -> list[Subscription]:
        rows = self._all(
            "SELECT user_id, endpoint, p256dh, auth FROM push_subscriptions "
            "WHERE user_id = %s ORDER BY created_at, endpoint",
            (user,),
        )
        return [Subscription(*row) for row in rows]

    # The outbox, as the decider writes it.

    def position(self, name: str) -> int | None:
        row = self._one("SELECT position FROM push_positions WHERE name = %s", (name,))
        return None if row is None else int(row[0])

    def save_position(self, name: str, position: int) -> None:
        with self._transaction() as db:
            _set_position(db, name, position)

    def pending_push(
        self, conversation_id: UUID, recipient: UserId
    ) -> PendingPush | None:
        row = self._one(
            f"SELECT {PUSH_COLUMNS} FROM push_outbox WHERE conversation_id = %s "
            "AND recipient = %s AND status = 'pending'",
            (str(conversation_id), recipient),
        )
        return None if row is None else push_of_row(row)

    def decided(self, conversation_id: UUID, seq: int) -> bool:
        row = self._one(
            "SELECT 1 FROM push_decided WHERE conversation_id = %s AND seq = %s",
            (str(conversation_id), seq),
        )
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
                _upsert_push(db, push)
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO push_decided VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    [(str(cid), seq) for cid, seq in decided],
                )
            _set_position(db, name, position)

    # The outbox, as the dispatcher drains it.

    def due_pushes(self, now: datetime) -> list[PendingPush]:
        rows = self._all(
            f"SELECT {PUSH_COLUMNS} FROM push_outbox WHERE status = 'pending' "
            "AND due_at <= %s ORDER BY due_at",
            (epoch_of(now),),
        )
        return [push_of_row(row) for row in rows]

    def cancel(self, push_id: UUID) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE push_outbox SET status = 'cancelled' WHERE push_id = %s",
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
        at_ = epoch_of(at)
        with self._transaction() as db:
            db.execute(
                "UPDATE push_outbox SET status = %s, count = %s WHERE push_id = %s",
                (status, count, str(push_id)),
            )
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO push_deliveries (delivery_id, push_id, target, "
                    "endpoint, p256dh, auth, next_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [
                        (
                            str(d),
                            str(push_id),
                            t.kind,
                            t.endpoint,
                            t.p256dh,
                            t.auth,
                            at_,
                        )
                        for d, t in deliveries
                    ],
                )

    def due_deliveries(self, now: datetime) -> list[Delivery]:
        columns = ", ".join(f"p.{column}" for column in PUSH_COLUMNS.split(", "))
        rows = self._all(
            "SELECT d.delivery_id, p.count, d.target, d.endpoint, d.p256dh, "
            f"d.auth, d.attempts, {columns} FROM push_deliveries d "
            "JOIN push_outbox p USING (push_id) "
            "WHERE d.status = 'pending' AND d.next_at <= %s ORDER BY d.next_at",
            (epoch_of(now),),
        )
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
            row = db.execute(
                "UPDATE push_deliveries SET attempts = attempts + 1 "
                "WHERE delivery_id = %s RETURNING attempts",
                (str(delivery_id),),
            ).fetchone()
            assert row is not None, "a due delivery exists"
            db.execute(
                "INSERT INTO push_attempts (delivery_id, number, started_at) "
                "VALUES (%s, %s, %s)",
                (str(delivery_id), row[0], epoch_of(at)),
            )
        return int(row[0])

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
                "UPDATE push_attempts SET finished_at = %s, outcome = %s, "
                "status_code = %s WHERE delivery_id = %s AND number = %s",
                (epoch_of(at), outcome, status_code, str(delivery_id), number),
            )
            db.execute(
                "UPDATE push_deliveries SET status = %s, next_at = %s "
                "WHERE delivery_id = %s",
                (status, epoch_of(next_at), str(delivery_id)),
            )
            _finish_push(db, delivery_id)

    def next_due(self) -> datetime | None:
        """
        When the earliest pending push or delivery falls due, if any does.
        """
        (at,) = self._one(
            "SELECT LEAST((SELECT MIN(due_at) FROM push_outbox "
            "WHERE status = 'pending'), (SELECT MIN(next_at) FROM push_deliveries "
            "WHERE status = 'pending'))",
            (),
        )
        return None if at is None else time_of(at)

    # What happened, for operators and tests.

    def attempts_of(self, push_id: UUID) -> list[Attempt]:
        rows = self._all(
            "SELECT a.delivery_id, a.number, a.started_at, a.outcome, "
            "a.status_code FROM push_attempts a JOIN push_deliveries d USING "
            "(delivery_id) WHERE d.push_id = %s ORDER BY a.started_at, a.number",
            (str(push_id),),
        )
        return [
            Attempt(UUID(d), number, time_of(started), outcome, code)
            for d, number, started, outcome, code in rows
        ]


def _upsert_push(db: psycopg.Connection[Any], push: PendingPush) -> None:
    db.execute(
        f"INSERT INTO push_outbox ({PUSH_COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (push_id) DO UPDATE SET due_at = excluded.due_at, "
        "seqs = excluded.seqs, body = excluded.body "
        "WHERE push_outbox.status = 'pending'",
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


def _set_position(db: psycopg.Connection[Any], name: str, position: int) -> None:
    # Informational on the scaled profile: Kafka's committed offsets say
    # where the notifier resumes; this says how far its decisions reach.
    db.execute(
        "INSERT INTO push_positions VALUES (%s, %s) ON CONFLICT (name) "
        "DO UPDATE SET position = GREATEST(push_positions.position, "
        "excluded.position)",
        (name, position),
    )


def _finish_push(db: psycopg.Connection[Any], delivery_id: UUID) -> None:
    db.execute(
        "UPDATE push_outbox SET status = 'done' WHERE push_id = "
        "(SELECT push_id FROM push_deliveries WHERE delivery_id = %s) "
        "AND NOT EXISTS (SELECT 1 FROM push_deliveries d "
        "WHERE d.push_id = push_outbox.push_id AND d.status = 'pending')",
        (str(delivery_id),),
    )
