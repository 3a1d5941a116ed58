"""
The dead-letter queue: events a projector could not apply, parked in order.

A projector that fails on one event must not stop the whole log. The event
is parked with the error, and so is every later event of the same
conversation, because a conversation's events only make sense in order. The
other conversations go on. ``retry`` applies a conversation's parked events
in version order once the cause is fixed, and un-parks each one that applied.

A store that is down is not a poison event: ``ReadModelUnavailableError``
leaves the batch unapplied and the position where it was, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from projections.history import changes_for
from projections.ports import (
    HistoryStore,
    LoggedEvent,
    ReadModelUnavailableError,
    Undecodable,
)

logger = logging.getLogger(__name__)

WAITING = "waiting behind an earlier parked event of its conversation"


@dataclass(frozen=True)
class DeadLetter:
    """
    One parked event, stored as the event store holds it (topic and state).
    """

    projector: str
    conversation_id: UUID
    version: int
    position: int
    topic: str
    state: str
    error: str
    parked_at: datetime


class DeadLetters(Protocol):
    """
    Where a projector parks what it could not apply.
    """

    def park(self, letters: Sequence[DeadLetter]) -> None: ...

    def parked(self, projector: str) -> list[DeadLetter]:
        """Every parked letter, by conversation, then version."""
        ...

    def parked_conversations(self, projector: str) -> set[UUID]: ...

    def release(self, letter: DeadLetter) -> None: ...


Encode = Callable[[Any], tuple[str, str]]
"""A domain event to its stored (topic, state)."""
Decode = Callable[[DeadLetter], Any]
"""A parked letter back to its domain event."""


class ParkingProjector:
    """
    Applies batches to history, parking what fails instead of stopping.
    """

    def __init__(
        self,
        store: HistoryStore,
        letters: DeadLetters,
        encode: Encode,
        *,
        name: str = "history",
    ) -> None:
        self.name = name
        self._store = store
        self._letters = letters
        self._encode = encode

    @property
    def position(self) -> int:
        return self._store.position(self.name)

    def handle(self, batch: Sequence[LoggedEvent]) -> None:
        if not batch:
            return
        # A Kafka batch interleaves partitions: its highest id is the position.
        last = max(logged.position for logged in batch)
        parked = self._letters.parked_conversations(self.name)
        fresh = [e for e in batch if _conversation(e) not in parked]
        self._park(e for e in batch if _conversation(e) in parked)
        try:
            if any(isinstance(e.event, Undecodable) for e in fresh):
                raise ValueError("the batch holds an event that does not decode")
            self._apply(fresh, last)
        except ReadModelUnavailableError:
            raise
        except Exception:
            logger.warning(
                "%s failed on a batch; applying it event by event", self.name
            )
            self._one_by_one(fresh, parked)
            self._store.apply([], projector=self.name, position=last)

    def _apply(self, events: Sequence[LoggedEvent], position: int) -> None:
        changes = [change for e in events for change in changes_for(e.event)]
        self._store.apply(changes, projector=self.name, position=position)

    def _one_by_one(self, events: Sequence[LoggedEvent], parked: set[UUID]) -> None:
        for logged in events:
            conversation = _conversation(logged)
            if conversation in parked:
                self._park([logged])
                continue
            try:
                if isinstance(logged.event, Undecodable):
                    raise ValueError(logged.event.error)
                self._apply([logged], logged.position)
            except ReadModelUnavailableError:
                raise
            except Exception as e:
                logger.exception(
                    "%s parked conversation %s version %s at position %s",
                    self.name,
                    conversation,
                    logged.event.originator_version,
                    logged.position,
                )
                self._park([logged], error=f"{type(e).__name__}: {e}")
                parked.add(conversation)

    def _park(self, events: Any, *, error: str = WAITING) -> None:
        letters = [self._letter(logged, error) for logged in events]
        if letters:
            self._letters.park(letters)

    def _letter(self, logged: LoggedEvent, error: str) -> DeadLetter:
        event = logged.event
        if isinstance(event, Undecodable):
            topic, state = event.topic, event.state
        else:
            topic, state = self._encode(event)
        return DeadLetter(
            projector=self.name,
            conversation_id=_conversation(logged),
            version=logged.event.originator_version,
            position=logged.position,
            topic=topic,
            state=state,
            error=error,
            parked_at=datetime.now(UTC),
        )


@dataclass(frozen=True)
class RetryOutcome:
    """
    What a retry did: letters applied, and conversations still parked.
    """

    applied: int
    still_parked: dict[UUID, str]


def retry(
    store: HistoryStore, letters: DeadLetters, decode: Decode, *, projector: str
) -> RetryOutcome:
    """
    Apply every parked letter in order; stop a conversation at its first failure.

    Passes repeat until nothing is left to apply, so letters parked by the live
    projector while a pass ran are applied too.
    """
    applied, failed = 0, dict[UUID, str]()
    while True:
        pending = [
            letter
            for letter in letters.parked(projector)
            if letter.conversation_id not in failed
        ]
        if not pending:
            return RetryOutcome(applied, failed)
        for letter in pending:
            if letter.conversation_id in failed:
                continue
            error = _retry_one(store, letters, decode, letter)
            if error is None:
                applied += 1
            else:
                failed[letter.conversation_id] = error


def _retry_one(
    store: HistoryStore, letters: DeadLetters, decode: Decode, letter: DeadLetter
) -> str | None:
    try:
        changes = changes_for(decode(letter))
        store.apply(changes, projector=letter.projector, position=letter.position)
    except ReadModelUnavailableError:
        raise
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    letters.release(letter)
    return None


def _conversation(logged: LoggedEvent) -> UUID:
    conversation: UUID = logged.event.originator_id
    return conversation
