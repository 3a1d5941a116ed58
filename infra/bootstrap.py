"""
The composition root: turn ``Settings`` into the running parts of duetto.

Each process of a profile has one builder here. The scaled profile's client
libraries are imported inside its builders, so the embedded profile runs
without them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from commands.service import ChatService
from domain.ids import UserId
from infra.follower import LogFollower
from infra.memory import MemoryPresence
from infra.push import PushRegistry
from infra.push.embedded import build_push
from infra.settings import Settings
from infra.startup import patiently
from projections.fanout import FanOut
from projections.frames import presence_frame
from projections.ports import HistoryQueries, Publisher
from projections.presence import PresenceTracker

logger = logging.getLogger(__name__)

Closer = Callable[[], None]
Part = TypeVar("Part")
Watcher = Callable[[UserId, str], None]


def _ignore(user: UserId, connection_id: str) -> None:
    """A gateway that sees every socket itself has nothing to subscribe to."""


@dataclass
class Services:
    """
    Everything a gateway needs, built once and closed once.

    ``watch`` and ``unwatch`` tell the profile that a socket of a user opened
    or closed on this gateway, so pushes for that user reach this process.
    """

    settings: Settings
    chat: ChatService
    history: HistoryQueries
    presence: PresenceTracker
    follower: LogFollower | None = None
    push: PushRegistry | None = None
    lag: Callable[[], int | None] | None = None
    watch: Watcher = _ignore
    unwatch: Watcher = _ignore
    closers: list[Closer] = field(default_factory=list)

    def log_head(self) -> int:
        return self.chat.recorder.max_notification_id() or 0

    def projection_lag(self) -> int | None:
        """
        Events recorded but not yet in history, wherever they are on the way.
        """
        if self.follower is not None:
            return self.follower.lag()
        return None if self.lag is None else self.lag()

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        logger.info("closed the %s profile", self.settings.profile)


def history_group(settings: Settings) -> str:
    return f"{settings.kafka_group_prefix}-history"


def presence_group(settings: Settings) -> str:
    return f"{settings.kafka_group_prefix}-presence"


def chat_service(settings: Settings) -> ChatService:
    """
    The write side on the profile's event store of record.
    """
    if settings.profile == "scaled" and settings.postgres_schema:
        from infra.positions import ensure_schema

        ensure_schema(settings.postgres_dsn, settings.postgres_schema)
    return ChatService(env=settings.event_store_env())


def build(settings: Settings, *, publisher: Publisher) -> Services:
    """
    Wire a gateway; ``publisher`` reaches this process's own sockets.
    """
    if settings.profile == "scaled":
        return build_scaled_gateway(settings, local=publisher)
    return build_embedded(settings, publisher=publisher)


def build_embedded(settings: Settings, *, publisher: Publisher) -> Services:
    """
    One process: SQLite event store and history, presence in memory.
    """
    from infra.readmodels.embedded import live_projector, open_history

    chat = chat_service(settings)
    store, writes, catalog = open_history(settings)
    follower = LogFollower(
        chat,
        live_projector(writes, chat),
        FanOut(store, publisher),
        batch_size=settings.follower_batch_size,
        poll_seconds=settings.follower_poll_seconds,
    )
    chat.on_saved(follower.wake)
    presence = PresenceTracker(MemoryPresence(), store, publisher)
    push, notifier = build_push(settings, chat, store, presence)
    chat.on_saved(notifier.wake)

    # Whatever was recorded before a crash is projected before anyone reads.
    follower.catch_up()
    follower.start()
    notifier.start()
    logger.info("built the embedded profile in %s", settings.data_dir)
    return Services(
        settings=settings,
        chat=chat,
        history=store,
        presence=presence,
        follower=follower,
        push=push,
        closers=[
            catalog.close,
            writes.close,
            chat.close,
            store.close,
            follower.stop,
            push.subscriptions.close,
            notifier.stop,
        ],
    )


def build_scaled_gateway(settings: Settings, *, local: Publisher) -> Services:
    """
    A gateway of many: PostgreSQL, Cassandra for reads, Redis for the rest.
    """
    from infra.lag import GroupLag, relay_lag
    from infra.positions import PostgresPositions
    from infra.push.scaled import build_registry
    from infra.readmodels.scaled import open_scaled_history
    from infra.redis import (
        Names,
        RedisPresence,
        RedisPublisher,
        RedisSubscriber,
        connect,
    )

    push = build_registry(settings)  # First: a missing VAPID key stops it here.
    chat = _patiently(settings, "PostgreSQL", lambda: chat_service(settings))
    history, versions = _patiently(
        settings, "Cassandra", lambda: open_scaled_history(settings)
    )
    client = _patiently(settings, "Redis", lambda: connect(settings.redis_url))
    names = Names(prefix=settings.redis_prefix)
    store = RedisPresence(
        client, ttl_seconds=settings.presence_ttl_seconds, names=names
    )
    tracker = PresenceTracker(store, history, RedisPublisher(client, names=names))

    def reconcile(came_online: Sequence[UserId]) -> None:
        # After Redis came back, tell everyone what its stored state says.
        for user in came_online:
            tracker.announce(user)
        for user in subscriber.watched_users():
            for peer in history.peers_of(user):
                local.publish(user, presence_frame(tracker.status(peer)))

    subscriber = RedisSubscriber(
        settings.redis_url,
        local.publish,
        names=names,
        presence=store,
        on_reconnect=reconcile,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    subscriber.start()
    positions = PostgresPositions(
        settings.postgres_dsn, schema=settings.postgres_schema
    )
    group = GroupLag(
        settings.kafka_bootstrap, settings.kafka_topic, history_group(settings)
    )

    def lag() -> int:
        head = chat.recorder.max_notification_id() or 0
        return relay_lag(head, positions) + group.records_behind()

    logger.info("built a scaled gateway")
    return Services(
        settings=settings,
        chat=chat,
        history=history,
        presence=tracker,
        lag=lag,
        push=push,
        watch=subscriber.watch,
        unwatch=subscriber.unwatch,
        closers=[
            push.subscriptions.close,
            chat.close,
            versions.close,
            history.close,
            client.close,
            subscriber.stop,
            positions.close,
            group.close,
        ],
    )


@dataclass
class Process:
    """
    A background process of the scaled profile: what to run and what to close.
    """

    run: Callable[[threading.Event], None]
    closers: list[Closer]

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


def build_relay(settings: Settings) -> Process:
    """
    ``duetto relay``: PostgreSQL's notification log to the Kafka topic.
    """
    from infra.kafka import LogProducer
    from infra.positions import PostgresPositions
    from infra.relay import Relay

    _ensure_topic(settings)
    chat = _patiently(settings, "PostgreSQL", lambda: chat_service(settings))
    positions = PostgresPositions(
        settings.postgres_dsn, schema=settings.postgres_schema
    )
    producer = LogProducer(settings.kafka_bootstrap, settings.kafka_topic)
    relay = Relay(chat.recorder, producer, positions)
    return Process(run=relay.run, closers=[chat.close, positions.close])


def build_projector(settings: Settings, name: str) -> Process:
    """
    ``duetto project NAME``: one projector as a member of its consumer group.
    """
    from infra.consumer import ProjectorProcess
    from infra.kafka import LogConsumer
    from infra.readmodels import scaled

    _ensure_topic(settings)
    history, versions = _patiently(
        settings, "Cassandra", lambda: scaled.open_scaled_history(settings)
    )
    closers: list[Closer] = [versions.close, history.close]
    before_poll = None
    if name == "history":
        # Writes go to the catalog's current version, parking what fails.
        writes = scaled.live_store(versions)
        closers.append(writes.close)
        handler = scaled.live_projector(writes).handle
        consumer = LogConsumer(
            settings.kafka_bootstrap, settings.kafka_topic, history_group(settings)
        )
        before_poll = scaled.SwitchFollower(writes, consumer)
    elif name == "presence":
        from infra.redis import Names, RedisPublisher, connect

        client = _patiently(settings, "Redis", lambda: connect(settings.redis_url))
        closers.append(client.close)
        publisher = RedisPublisher(client, names=Names(prefix=settings.redis_prefix))
        handler = FanOut(history, publisher).handle
        # Pushes are for people online now: a new group starts at the head.
        consumer = LogConsumer(
            settings.kafka_bootstrap,
            settings.kafka_topic,
            presence_group(settings),
            start_at="latest",
        )
    else:
        msg = f"no projector named {name!r}"
        raise ValueError(msg)
    process = ProjectorProcess(name, consumer, handler, before_poll=before_poll)
    return Process(run=process.run, closers=closers)


def _ensure_topic(settings: Settings) -> None:
    from infra.kafka import ensure_topic

    _patiently(
        settings,
        "Kafka",
        lambda: ensure_topic(
            settings.kafka_bootstrap,
            settings.kafka_topic,
            partitions=settings.kafka_partitions,
        ),
    )


def _patiently(settings: Settings, what: str, attempt: Callable[[], Part]) -> Part:
    # The servers of the scaled profile may start after, or restart under,
    # the process: wait for them rather than fail at once.
    return patiently(what, attempt, timeout=settings.startup_timeout_seconds)
