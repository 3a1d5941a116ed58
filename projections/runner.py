"""
The history projector: apply a batch of logged events and advance its position.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from projections.history import HistoryChange, changes_for
from projections.ports import (
    HistoryStore,
    LoggedEvent,
    Undecodable,
    UndecodableError,
)

logger = logging.getLogger(__name__)


class HistoryProjector:
    """
    Projects events into history; the store writes rows and position together.
    """

    name = "history"

    def __init__(self, store: HistoryStore) -> None:
        self._store = store

    @property
    def position(self) -> int:
        return self._store.position(self.name)

    def handle(self, batch: Sequence[LoggedEvent]) -> None:
        if not batch:
            return
        changes: list[HistoryChange] = []
        for logged in batch:
            if isinstance(logged.event, Undecodable):
                raise UndecodableError(logged.event.error)
            changes.extend(changes_for(logged.event))
        self._store.apply(changes, projector=self.name, position=batch[-1].position)
        logger.debug("history at position %s", batch[-1].position)
