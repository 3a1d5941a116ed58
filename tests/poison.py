"""
A history store that fails on one chosen event until it is "fixed".
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from projections.history import HistoryChange
from projections.ports import HistoryStore, ReadModelUnavailableError


class PoisonError(Exception):
    """The poison event reached the store."""


class PoisonedStore:
    """
    Wraps a real store; raises on the event (conversation, version) while poisoned.
    """

    def __init__(self, store: HistoryStore, conversation_id: UUID, version: int):
        self._store = store
        self._poison = (conversation_id, version)
        self.poisoned = True
        self.unavailable = False

    def apply(
        self, changes: Sequence[HistoryChange], *, projector: str, position: int
    ) -> None:
        if self.unavailable:
            raise ReadModelUnavailableError("the store is down")
        names = {(change.conversation_id, change.version) for change in changes}
        if self.poisoned and self._poison in names:
            raise PoisonError(f"cannot apply {self._poison}")
        self._store.apply(changes, projector=projector, position=position)

    def position(self, projector: str) -> int:
        return self._store.position(projector)
