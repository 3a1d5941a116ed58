"""
The push dispatcher: claim pushes that fell due, then send their deliveries.

Claiming is the last decision: a push whose messages all reached a device
in the meantime is cancelled; otherwise its count and targets are fixed and
written down before anything is sent. Each delivery is then tried until it
is sent, gone or out of attempts, with every attempt recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import uuid5

from domain.ids import UserId
from infra.push.outcomes import Outcome, backoff_seconds
from infra.push.ports import PushStore
from infra.push.store import Delivery, Target
from infra.push.webhook import WEBHOOK_TARGET
from projections.notifications import PendingPush, payload, still_unseen
from projections.ports import HistoryQueries

logger = logging.getLogger(__name__)

WEB_PUSH_TARGET = "webpush"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Sender(Protocol):
    """
    Makes one attempt at one delivery.
    """

    def send(self, delivery: Delivery, payload: dict[str, Any]) -> Outcome: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """
    How soon to try again after a retryable answer, and how often at most.
    """

    base_seconds: float
    max_attempts: int


class PushDispatcher:
    """
    Drains the outbox: due pushes become deliveries, deliveries get sent.
    """

    def __init__(
        self,
        store: PushStore,
        queries: HistoryQueries,
        senders: Mapping[str, Sender],
        *,
        webhook_url: str | None,
        retry: RetryPolicy,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._queries = queries
        self._senders = senders
        self._webhook_url = webhook_url
        self._retry = retry
        self._clock = clock

    def run_due(self) -> None:
        """
        Claim every push that fell due, then try every delivery that is due.
        """
        for push in self._store.due_pushes(self._clock()):
            self._claim(push)
        for delivery in self._store.due_deliveries(self._clock()):
            self._deliver(delivery)

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()

    def _claim(self, push: PendingPush) -> None:
        unseen = still_unseen(push, self._delivered_mark(push))
        if not unseen:
            self._store.cancel(push.push_id)
            logger.info("push %s cancelled: all delivered in time", push.push_id)
            return
        deliveries = [
            (uuid5(push.push_id, target.endpoint), target)
            for target in self._targets(push.recipient)
        ]
        self._store.start_sending(
            push.push_id, count=len(unseen), deliveries=deliveries, at=self._clock()
        )
        logger.info(
            "push %s for %s: %s message(s), %s target(s)",
            push.push_id,
            push.recipient,
            len(unseen),
            len(deliveries),
        )

    def _delivered_mark(self, push: PendingPush) -> int:
        for receipt in self._queries.receipts(push.conversation_id):
            if receipt.user == push.recipient:
                return receipt.delivered_up_to
        return 0

    def _targets(self, recipient: UserId) -> list[Target]:
        targets = [
            Target(WEB_PUSH_TARGET, s.endpoint, s.p256dh, s.auth)
            for s in self._store.subscriptions_of(recipient)
        ]
        if self._webhook_url is not None:
            targets.append(Target(WEBHOOK_TARGET, self._webhook_url))
        return targets

    def _deliver(self, delivery: Delivery) -> None:
        number = self._store.begin_attempt(delivery.delivery_id, at=self._clock())
        sender = self._senders[delivery.target.kind]
        outcome = sender.send(delivery, payload(delivery.push, delivery.count))
        status, next_at = self._after(number, outcome)
        if outcome.kind == "gone":
            self._store.forget_endpoint(delivery.target.endpoint)
        self._store.finish_attempt(
            delivery.delivery_id,
            number,
            outcome=outcome.kind,
            status_code=outcome.status_code,
            status=status,
            next_at=next_at,
            at=self._clock(),
        )
        logger.info(
            "delivery %s of push %s, attempt %s: %s %s %s",
            delivery.delivery_id,
            delivery.push.push_id,
            number,
            outcome.kind,
            outcome.status_code,
            outcome.detail,
        )

    def _after(self, number: int, outcome: Outcome) -> tuple[str, datetime]:
        now = self._clock()
        if outcome.kind != "retry":
            return outcome.kind, now
        if number >= self._retry.max_attempts:
            return "failed", now
        wait = backoff_seconds(
            number,
            base_seconds=self._retry.base_seconds,
            retry_after=outcome.retry_after,
        )
        return "pending", now + timedelta(seconds=wait)
