"""
The push store's port: what the routes, the decider and the dispatcher need.

``SQLitePushStore`` (embedded) and ``PostgresPushStore`` (scaled) both
satisfy it, so the notifier, the dispatcher and the routes are written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.ids import UserId
from infra.push.store import Attempt, Delivery, Subscription, Target
from projections.notifications import PendingPush


class Subscriptions(Protocol):
    """
    Browsers' push subscriptions, as the push routes keep them.
    """

    def subscribe(self, subscription: Subscription, *, at: datetime) -> None:
        """Keep a subscription; an endpoint belongs to its latest user."""
        ...

    def unsubscribe(self, user: UserId, endpoint: str) -> bool:
        """Forget ``user``'s subscription; false if there was none."""
        ...

    def close(self) -> None: ...


class PushStore(Subscriptions, Protocol):
    """
    Subscriptions, the push outbox, its deliveries and the attempt log.
    """

    def forget_endpoint(self, endpoint: str) -> None:
        """Drop a subscription the push service no longer knows."""
        ...

    def subscriptions_of(self, user: UserId) -> list[Subscription]: ...

    def position(self, name: str) -> int | None: ...

    def save_position(self, name: str, position: int) -> None: ...

    def pending_push(
        self, conversation_id: UUID, recipient: UserId
    ) -> PendingPush | None: ...

    def decided(self, conversation_id: UUID, seq: int) -> bool: ...

    def record(
        self,
        pushes: Sequence[PendingPush],
        decided: Sequence[tuple[UUID, int]],
        *,
        position: int,
        name: str = "notifier",
    ) -> None:
        """Save pushes, decided messages and the position in one transaction."""
        ...

    def due_pushes(self, now: datetime) -> list[PendingPush]: ...

    def cancel(self, push_id: UUID) -> None: ...

    def start_sending(
        self,
        push_id: UUID,
        *,
        count: int,
        deliveries: Sequence[tuple[UUID, Target]],
        at: datetime,
    ) -> None:
        """Fix the push's count and targets: from here on it is only sent."""
        ...

    def due_deliveries(self, now: datetime) -> list[Delivery]: ...

    def begin_attempt(self, delivery_id: UUID, *, at: datetime) -> int:
        """Write down that a request is about to leave; return its number."""
        ...

    def finish_attempt(
        self,
        delivery_id: UUID,
        number: int,
        *,
        outcome: str,
        status_code: int | None,
        status: str,
        next_at: datetime,
        at: datetime,
    ) -> None:
        """Record an attempt's outcome and where its delivery stands now."""
        ...

    def next_due(self) -> datetime | None:
        """When the earliest pending push or delivery falls due, if any does."""
        ...

    def attempts_of(self, push_id: UUID) -> list[Attempt]: ...
