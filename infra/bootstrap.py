"""
The composition root: turn ``Settings`` into the running parts of duetto.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from commands.service import ChatService
from infra.follower import LogFollower
from infra.memory import MemoryPresence
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


def build(settings: Settings, *, publisher: Publisher) -> Services:
    """
    Wire the embedded profile; ``publisher`` reaches this process's sockets.
    """
    chat = ChatService(env=settings.event_store_env())
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
