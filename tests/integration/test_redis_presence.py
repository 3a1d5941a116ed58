"""
RedisPresence against the real Redis: two instances play two gateways.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
import redis

from infra.redis import Names, RedisPresence, RedisUnavailableError, connect
from projections.views import PresenceView

pytestmark = pytest.mark.integration

TTL_SECONDS = 60.0
SHORT_TTL_SECONDS = 1.0


def gateway(
    client: redis.Redis, names: Names, ttl: float = TTL_SECONDS
) -> RedisPresence:
    return RedisPresence(client, ttl_seconds=ttl, names=names)


def eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_second_device_on_another_gateway_changes_nothing(
    client: redis.Redis, names: Names
) -> None:
    # Given alice on two devices, each behind its own gateway
    one, two = gateway(client, names), gateway(client, names)
    opened = datetime.now(UTC)
    assert one.connected("alice", "c1", opened) is True
    assert two.connected("alice", "c2", opened) is False

    # When the first device closes, she stays online, with no transition
    assert one.disconnected("alice", "c1", opened + timedelta(seconds=1)) is False
    assert two.status("alice").online is True

    # Then the second close is the one offline transition, seen by both
    closed = opened + timedelta(seconds=2, microseconds=123)
    assert two.disconnected("alice", "c2", closed) is True
    for store in (one, two):
        view = store.status("alice")
        assert (view.online, view.last_seen) == (False, closed)


def test_racing_gateways_see_each_transition_exactly_once(
    client: redis.Redis, names: Names
) -> None:
    stores = [gateway(client, names) for _ in range(4)]
    devices = [(stores[i % 4], f"c{i}") for i in range(16)]
    for _ in range(10):
        # Every device connects at once, then every device disconnects at once
        online = _race([partial(store.connected, "bob", c) for store, c in devices])
        offline = _race([partial(store.disconnected, "bob", c) for store, c in devices])
        assert (online.count(True), offline.count(True)) == (1, 1)
    assert stores[0].status("bob").online is False


def _race(calls: list[Callable[[datetime], bool]]) -> list[bool]:
    barrier = threading.Barrier(len(calls))
    results: list[bool] = [False] * len(calls)

    def run(index: int) -> None:
        barrier.wait(timeout=5)
        results[index] = calls[index](datetime.now(UTC))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_dead_gateways_connection_expires_after_the_ttl(
    client: redis.Redis, names: Names
) -> None:
    # Given a gateway that registers carol and then dies without a word
    # (every gateway shares one time-to-live: it is one setting)
    dead = gateway(client, names, SHORT_TTL_SECONDS)
    alive = gateway(client, names, SHORT_TTL_SECONDS)
    before = datetime.now(UTC)
    dead.connected("carol", "c1", before)
    assert alive.status("carol").online is True

    # When its time-to-live passes with no heartbeat
    went_offline = eventually(
        lambda: not alive.status("carol").online, SHORT_TTL_SECONDS + 2
    )

    # Then carol reads as offline, last seen when the dead gateway vouched for
    # her, and her next connection anywhere is a fresh online transition
    assert went_offline
    last_seen = alive.status("carol").last_seen
    assert last_seen is not None
    assert abs(last_seen - before) < timedelta(seconds=0.5)
    assert alive.connected("carol", "c2", datetime.now(UTC)) is True


def test_heartbeats_keep_a_connection_alive_past_the_ttl(
    client: redis.Redis, names: Names
) -> None:
    store = gateway(client, names, SHORT_TTL_SECONDS)
    store.connected("dave", "c1", datetime.now(UTC))

    for _ in range(8):
        time.sleep(SHORT_TTL_SECONDS / 4)
        assert store.heartbeat() == []
    assert store.status("dave").online is True

    assert eventually(lambda: not store.status("dave").online, SHORT_TTL_SECONDS + 2)


def test_reconcile_registers_what_redis_lost(client: redis.Redis, names: Names) -> None:
    # Given a gateway with two of erin's devices, and Redis losing its keys
    store = gateway(client, names)
    store.connected("erin", "c1", datetime.now(UTC))
    store.connected("erin", "c2", datetime.now(UTC))
    client.delete(names.connections("erin"))
    assert store.status("erin").online is False

    # When the gateway reconciles, erin comes back online once, then stays
    assert store.reconcile() == ["erin"]
    assert store.reconcile() == []

    # Then both devices are registered again: closing one keeps her online
    assert store.disconnected("erin", "c1", datetime.now(UTC)) is False
    assert store.status("erin").online is True


def test_closing_an_unknown_connection_is_no_transition(
    client: redis.Redis, names: Names
) -> None:
    store = gateway(client, names)
    store.connected("fay", "c1", datetime.now(UTC))

    assert store.disconnected("fay", "nope", datetime.now(UTC)) is False
    assert store.disconnected("gus", "nope", datetime.now(UTC)) is False
    assert store.status("fay").online is True
    assert store.status("gus") == PresenceView("gus", False, None)


def test_unreachable_redis_raises_its_own_error_and_keeps_the_connection(
    names: Names,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    client = connect(f"redis://127.0.0.1:{free_port}/0", retries=0)
    store = gateway(client, names)

    with pytest.raises(RedisUnavailableError) as raised:
        store.connected("hal", "c1", datetime.now(UTC))

    assert isinstance(raised.value.__cause__, redis.ConnectionError)
    assert store.live_connections() == {"c1": "hal"}
    client.close()
