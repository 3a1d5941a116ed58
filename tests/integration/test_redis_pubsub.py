"""
RedisPublisher and RedisSubscriber against the real Redis, two gateways.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import redis

from domain.ids import UserId
from infra.local.servers import RedisServer
from infra.redis import (
    Names,
    RedisPresence,
    RedisPublisher,
    RedisSubscriber,
)
from projections.ports import Frame

pytestmark = pytest.mark.integration

WAIT_SECONDS = 5.0

Received = queue.Queue[tuple[UserId, Frame]]


@pytest.fixture
def start_gateway(
    redis_server: RedisServer, names: Names
) -> Iterator[Callable[[], tuple[RedisSubscriber, Received]]]:
    started: list[RedisSubscriber] = []

    def start() -> tuple[RedisSubscriber, Received]:
        received: Received = queue.Queue()
        subscriber = RedisSubscriber(
            redis_server.url,
            lambda user, frame: received.put((user, frame)),
            names=names,
        )
        subscriber.start()
        started.append(subscriber)
        return subscriber, received

    yield start
    for subscriber in started:
        subscriber.stop()


def subscribers_of(client: redis.Redis, channel: str) -> int:
    [(_, count)] = client.pubsub_numsub(channel)
    return int(count)


def eventually(check: Callable[[], bool], timeout: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_a_frame_reaches_every_gateway_with_a_socket_of_its_user(
    client: redis.Redis,
    names: Names,
    start_gateway: Callable[[], tuple[RedisSubscriber, Received]],
) -> None:
    # Given alice on both gateways and bob on the second only
    (one, one_got), (two, two_got) = start_gateway(), start_gateway()
    one.watch("alice", "a1")
    two.watch("alice", "a2")
    two.watch("bob", "b1")
    alice, bob = names.user_channel("alice"), names.user_channel("bob")
    assert eventually(lambda: subscribers_of(client, alice) == 2)
    assert eventually(lambda: subscribers_of(client, bob) == 1)

    # When a frame is published to each of them
    publisher = RedisPublisher(client, names=names)
    to_alice: Frame = {"type": "message", "body": "שלום 👋🏽 مرحبا", "seq": 1}
    publisher.publish("alice", to_alice)
    publisher.publish("bob", {"type": "receipt", "read_up_to": 1})

    # Then alice's frame reaches both gateways intact, and bob's only the second
    assert one_got.get(timeout=WAIT_SECONDS) == ("alice", to_alice)
    # (one publisher's frames reach one gateway in the order they were sent)
    got = [two_got.get(timeout=WAIT_SECONDS) for _ in range(2)]
    assert got == [("alice", to_alice), ("bob", {"type": "receipt", "read_up_to": 1})]
    assert one_got.empty()


def test_a_channel_is_left_when_the_last_socket_closes(
    client: redis.Redis,
    names: Names,
    start_gateway: Callable[[], tuple[RedisSubscriber, Received]],
) -> None:
    subscriber, _ = start_gateway()
    channel = names.user_channel("carol")
    subscriber.watch("carol", "c1")
    subscriber.watch("carol", "c2")
    assert eventually(lambda: subscribers_of(client, channel) == 1)

    subscriber.unwatch("carol", "c1")
    time.sleep(0.2)
    assert subscribers_of(client, channel) == 1

    subscriber.unwatch("carol", "c2")
    assert eventually(lambda: subscribers_of(client, channel) == 0)
    assert subscriber.watched_users() == []


def test_users_watched_before_the_thread_starts_are_subscribed(
    client: redis.Redis, redis_server: RedisServer, names: Names
) -> None:
    received: Received = queue.Queue()
    subscriber = RedisSubscriber(
        redis_server.url, lambda user, frame: received.put((user, frame)), names=names
    )
    subscriber.watch("dave", "d1")

    subscriber.start()
    try:
        channel = names.user_channel("dave")
        assert eventually(lambda: subscribers_of(client, channel) == 1)
        RedisPublisher(client, names=names).publish("dave", {"type": "presence"})
        assert received.get(timeout=WAIT_SECONDS) == ("dave", {"type": "presence"})
    finally:
        subscriber.stop()


def test_the_subscriber_thread_sends_presence_heartbeats(
    client: redis.Redis, redis_server: RedisServer, names: Names
) -> None:
    # Given a gateway whose presence lives 1 s unless its thread heartbeats
    presence = RedisPresence(client, ttl_seconds=1.0, names=names)
    subscriber = RedisSubscriber(
        redis_server.url,
        lambda user, frame: None,
        names=names,
        presence=presence,
        heartbeat_seconds=0.25,
    )
    presence.connected("erin", "e1", datetime.now(UTC))
    subscriber.start()

    # When three time-to-lives pass, erin is still online
    try:
        time.sleep(3.0)
        assert presence.status("erin").online is True
    finally:
        subscriber.stop()

    # Then without heartbeats she expires
    assert eventually(lambda: not presence.status("erin").online, 3.0)
