"""
The embedded profile's notifier: a thread that follows the log and pushes.

It reads the notification log after its own position, which the push store
keeps with the decisions, so a restart resumes where it stopped and decides
nothing twice. Between batches it drains the outbox, waking early when a
push or a retry falls due.
"""

from __future__ import annotations

import logging

from commands.service import ChatService
from infra.push.dispatcher import Clock, PushDispatcher, utc_now
from infra.push.ports import PushStore
from infra.worker import Worker
from projections.notifications import PushDecider
from projections.ports import LoggedEvent

logger = logging.getLogger(__name__)

NOTIFIER = "notifier"


class PushNotifier:
    """
    Decides on new messages and sends due pushes, in one background thread.
    """

    def __init__(
        self,
        chat: ChatService,
        store: PushStore,
        decider: PushDecider,
        dispatcher: PushDispatcher,
        *,
        batch_size: int,
        poll_seconds: float,
        clock: Clock = utc_now,
    ) -> None:
        self._chat = chat
        self._store = store
        self._decider = decider
        self._dispatcher = dispatcher
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._clock = clock
        # Nothing past the saved position was decided by a failed step, so
        # the next step retries it.
        self._worker = Worker("push-notifier", self.step, self._pause)

    def start(self) -> None:
        # Pushes are for what happens from now on: a first start begins at
        # the head, not at the beginning of a long log.
        if self._store.position(NOTIFIER) is None:
            head = self._chat.recorder.max_notification_id() or 0
            self._store.save_position(NOTIFIER, head)
        logger.info("notifier at position %s", self._store.position(NOTIFIER))
        self._worker.start()

    def wake(self) -> None:
        """
        Say that something was appended; the thread reads it at once.
        """
        self._worker.wake()

    def stop(self) -> None:
        self._worker.stop()
        self._dispatcher.close()

    def step(self) -> None:
        """
        Decide on everything new in the log, then send what is due.
        """
        while self._follow():
            pass
        self._dispatcher.run_due()

    def _pause(self) -> float:
        due = self._store.next_due()
        if due is None:
            return self._poll_seconds
        until = (due - self._clock()).total_seconds()
        return min(self._poll_seconds, max(0.0, until))

    def _follow(self) -> bool:
        start = (self._store.position(NOTIFIER) or 0) + 1
        notifications = self._chat.recorder.select_notifications(
            start=start, limit=self._batch_size
        )
        if not notifications:
            return False
        self._decider.handle(
            [
                LoggedEvent(n.id, self._chat.mapper.to_domain_event(n))
                for n in notifications
            ]
        )
        return len(notifications) == self._batch_size
