"""
The composition root: turn ``Settings`` into the running parts of duetto.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from commands.service import ChatService
from infra.follower import LogFollower
from infra.kafka import LogProducer, ensure_topic
from infra.memory import MemoryPresence
from infra.positions import PostgresPositions, ensure_schema
from infra.relay import Relay
from infra.settings import Settings
from infra.sqlite import SQLiteHistory
from projections.fanout import FanOut
from projections.ports import HistoryQueries, Publisher
from projections.presence import PresenceTracker
from projections.runner import HistoryProjector

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """
    Everything a gateway needs, built once and closed once.
    """

    settings: Settings
    chat: ChatService
    history: HistoryQueries
    presence: PresenceTracker
    follower: LogFollower
    _store: SQLiteHistory

    def close(self) -> None:
        self.follower.stop()
        self._store.close()
        self.chat.close()
        logger.info("closed the %s profile", self.settings.profile)


def chat_service(settings: Settings) -> ChatService:
    """
    The write side on the profile's event store of record.
    """
    if settings.profile == "scaled" and settings.postgres_schema:
        ensure_schema(settings.postgres_dsn, settings.postgres_schema)
    return ChatService(env=settings.event_store_env())


def build(settings: Settings, *, publisher: Publisher) -> Services:
    """
    Wire the embedded profile; ``publisher`` reaches this process's sockets.
    """
    chat = chat_service(settings)
    store = SQLiteHistory(settings.read_model_path)
    follower = LogFollower(
        chat,
        HistoryProjector(store),
        FanOut(store, publisher),
        batch_size=settings.follower_batch_size,
        poll_seconds=settings.follower_poll_seconds,
    )
    chat.on_saved(follower.wake)

    # Whatever was recorded before a crash is projected before anyone reads.
    follower.catch_up()
    follower.start()
    logger.info("built the %s profile in %s", settings.profile, settings.data_dir)
    return Services(
        settings=settings,
        chat=chat,
        history=store,
        presence=PresenceTracker(MemoryPresence(), store, publisher),
        follower=follower,
        _store=store,
    )


@dataclass
class RelayParts:
    """
    The relay process: the event store's log, a producer and a position.
    """

    relay: Relay
    chat: ChatService
    positions: PostgresPositions

    def close(self) -> None:
        self.positions.close()
        self.chat.close()


def build_relay(settings: Settings) -> RelayParts:
    """
    Wire ``duetto relay``: PostgreSQL's notification log to the Kafka topic.
    """
    ensure_topic(
        settings.kafka_bootstrap,
        settings.kafka_topic,
        partitions=settings.kafka_partitions,
    )
    chat = chat_service(settings)
    positions = PostgresPositions(
        settings.postgres_dsn, schema=settings.postgres_schema
    )
    producer = LogProducer(settings.kafka_bootstrap, settings.kafka_topic)
    relay = Relay(chat.recorder, producer, positions)
    return RelayParts(relay=relay, chat=chat, positions=positions)
