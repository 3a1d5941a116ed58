"""
The push store's contract, run on the SQLite store and on PostgreSQL.

Both satisfy ``infra.push.ports.PushStore``; the dispatcher and the routes
rely on exactly what these tests check.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.local.servers import PostgresServer
from infra.push.ports import PushStore
from infra.push.postgres import PostgresPushStore
from infra.push.store import SQLitePushStore, Subscription, Target
from projections.notifications import PendingPush, push_id_of

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
CONVERSATION = uuid.UUID("0b7c3a52-1111-4b7a-9f25-6e4d2a1b0c93")
PHONE = Subscription("bob", "https://push.example/bob-phone", "p256dh", "auth")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PushStore]:
    opened: PushStore
    if request.param == "sqlite":
        opened = SQLitePushStore(tmp_path / "push.sqlite")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        dsn = (
            f"postgresql://{server.db_user}:{server.db_password}"
            f"@127.0.0.1:{server.port}/{server.db_name}"
        )
        opened = PostgresPushStore(dsn, schema=f"t_{uuid.uuid4().hex[:10]}")
    yield opened
    opened.close()


def pending(*seqs: int) -> PendingPush:
    return PendingPush(
        push_id=push_id_of(CONVERSATION, "bob", seqs[0]),
        conversation_id=CONVERSATION,
        recipient="bob",
        sender="alice",
        opened_at=T0,
        due_at=T0 + timedelta(seconds=3),
        seqs=seqs,
    )


def test_a_subscription_belongs_to_its_user_until_removed(store: PushStore) -> None:
    store.subscribe(PHONE, at=T0)

    assert store.subscriptions_of("bob") == [PHONE]
    assert not store.unsubscribe("carol", PHONE.endpoint)
    assert store.unsubscribe("bob", PHONE.endpoint)
    assert store.subscriptions_of("bob") == []


def test_decisions_collapse_into_one_pending_push(store: PushStore) -> None:
    store.record([pending(1)], [(CONVERSATION, 1)], position=7)
    store.record([pending(1, 2)], [(CONVERSATION, 1), (CONVERSATION, 2)], position=9)

    assert store.pending_push(CONVERSATION, "bob") == pending(1, 2)
    assert store.decided(CONVERSATION, 2)
    assert not store.decided(CONVERSATION, 3)
    assert store.position("notifier") == 9
    assert store.next_due() == T0 + timedelta(seconds=3)
    assert store.due_pushes(T0) == []


def test_a_delivery_keeps_every_attempt_and_finishes_its_push(
    store: PushStore,
) -> None:
    push = pending(1)
    store.record([push], [(CONVERSATION, 1)], position=1)
    delivery_id = uuid.uuid5(push.push_id, PHONE.endpoint)
    target = Target("webpush", PHONE.endpoint, PHONE.p256dh, PHONE.auth)
    store.start_sending(
        push.push_id, count=1, deliveries=[(delivery_id, target)], at=T0
    )

    [delivery] = store.due_deliveries(T0)
    first = store.begin_attempt(delivery_id, at=T0)
    store.finish_attempt(
        delivery_id,
        first,
        outcome="retry",
        status_code=500,
        status="pending",
        next_at=T0 + timedelta(seconds=1),
        at=T0,
    )
    second = store.begin_attempt(delivery_id, at=T0 + timedelta(seconds=1))
    store.finish_attempt(
        delivery_id,
        second,
        outcome="sent",
        status_code=201,
        status="sent",
        next_at=T0,
        at=T0 + timedelta(seconds=1),
    )

    assert (delivery.count, delivery.target, delivery.push) == (1, target, push)
    assert [
        (a.number, a.outcome, a.status_code) for a in store.attempts_of(push.push_id)
    ] == [(1, "retry", 500), (2, "sent", 201)]
    assert store.due_deliveries(T0 + timedelta(hours=1)) == []
    assert store.pending_push(CONVERSATION, "bob") is None
    assert store.next_due() is None
