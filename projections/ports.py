"""
The ports the read side writes through and answers from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from domain.ids import UserId
from projections.history import HistoryChange
from projections.views import (
    ConversationView,
    HistoryPage,
    PresenceView,
    ReceiptView,
)

Frame = dict[str, Any]
"""A JSON object pushed to a client's sockets."""


class ReadModelUnavailableError(Exception):
    """
    A read model's store did not answer; the request may be tried again.
    """


@dataclass(frozen=True)
class Undecodable:
    """
    A logged event this build cannot read: kept as stored, never skipped.

    Projectors refuse it: the parking projector parks it (and its
    conversation's later events), a plain projector raises.
    """

    originator_id: UUID
    originator_version: int
    topic: str
    state: str
    error: str


class UndecodableError(Exception):
    """
    A projector met an event it cannot read.
    """


@dataclass(frozen=True)
class LoggedEvent:
    """
    A domain event together with its position in the log.
    """

    position: int
    event: Any


class HistoryStore(Protocol):
    """
    Writes history row changes together with the projector's position.
    """

    def apply(
        self, changes: Sequence[HistoryChange], *, projector: str, position: int
    ) -> None: ...

    def position(self, projector: str) -> int: ...


class HistoryQueries(Protocol):
    """
    Answers the questions clients ask of history.
    """

    def participants(self, conversation_id: UUID) -> tuple[UserId, UserId] | None: ...

    def conversations_of(self, user: UserId) -> list[ConversationView]: ...

    def peers_of(self, user: UserId) -> list[UserId]: ...

    def page(
        self,
        conversation_id: UUID,
        *,
        before_seq: int | None = None,
        after_seq: int | None = None,
        limit: int = 50,
    ) -> HistoryPage: ...

    def receipts(self, conversation_id: UUID) -> list[ReceiptView]: ...


class PresenceStore(Protocol):
    """
    Counts each user's live connections; online while any is open.
    """

    def connected(self, user: UserId, connection_id: str, at: datetime) -> bool:
        """Record a connection; true if the user just came online."""
        ...

    def disconnected(self, user: UserId, connection_id: str, at: datetime) -> bool:
        """Forget a connection; true if the user just went offline."""
        ...

    def status(self, user: UserId) -> PresenceView: ...


class Publisher(Protocol):
    """
    Delivers a frame to every connected device of one user.
    """

    def publish(self, user: UserId, frame: Frame) -> None: ...
