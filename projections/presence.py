"""
Presence: online while any device is connected, last seen when the last leaves.

Only transitions are announced, to everyone who shares a conversation with
the user, so a second device coming or going changes nothing for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from domain.ids import UserId
from projections.frames import presence_frame
from projections.ports import HistoryQueries, PresenceStore, Publisher
from projections.views import PresenceView

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class PresenceTracker:
    """
    Records connections and announces each user's online/offline transitions.
    """

    def __init__(
        self,
        store: PresenceStore,
        queries: HistoryQueries,
        publisher: Publisher,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._queries = queries
        self._publisher = publisher
        self._clock = clock

    def connected(self, user: UserId, connection_id: str) -> None:
        if self._store.connected(user, connection_id, self._clock()):
            logger.info("user %s came online", user)
            self.announce(user)

    def disconnected(self, user: UserId, connection_id: str) -> None:
        if self._store.disconnected(user, connection_id, self._clock()):
            logger.info("user %s went offline", user)
            self.announce(user)

    def status(self, user: UserId) -> PresenceView:
        return self._store.status(user)

    def announce(self, user: UserId) -> None:
        """
        Tell everyone who shares a conversation with ``user`` what the store says.
        """
        frame = presence_frame(self._store.status(user))
        for peer in self._queries.peers_of(user):
            self._publisher.publish(peer, frame)
