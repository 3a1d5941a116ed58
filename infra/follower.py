"""
The embedded profile's follower of the event store's notification log.

A thread reads new notifications in order, hands each batch to the history
projector, then to the fan-out. The projector's position is stored with its
rows, so a restart resumes exactly where it stopped. The fan-out keeps no
position: after a restart it pushes only what is new, and clients catch up
on anything older with ``sync``.
"""

from __future__ import annotations

import logging

from commands.service import ChatService
from infra.deadletters import decode_logged
from infra.records import record_of
from infra.worker import Worker
from projections.deadletter import ParkingProjector
from projections.fanout import FanOut
from projections.ports import LoggedEvent
from projections.runner import HistoryProjector

logger = logging.getLogger(__name__)


class LogFollower:
    """
    Follows the notification log in a background thread until stopped.
    """

    def __init__(
        self,
        chat: ChatService,
        projector: HistoryProjector | ParkingProjector,
        fanout: FanOut,
        *,
        batch_size: int,
        poll_seconds: float,
    ) -> None:
        self._chat = chat
        self._projector = projector
        self._fanout = fanout
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._fanout_from = self.head()
        # A failed batch advanced no position, so the next step retries it.
        self._worker = Worker("log-follower", self.catch_up, lambda: poll_seconds)

    def start(self) -> None:
        logger.info(
            "following the log from position %s (head %s)",
            self._projector.position,
            self._fanout_from,
        )
        self._worker.start()

    def wake(self) -> None:
        """
        Say that something was appended; the thread reads it at once.
        """
        self._worker.wake()

    def stop(self) -> None:
        self._worker.stop()

    def head(self) -> int:
        return self._chat.recorder.max_notification_id() or 0

    def lag(self) -> int:
        return max(0, self.head() - self._projector.position)

    def catch_up(self) -> None:
        """
        Project everything already in the log, in the calling thread.
        """
        while self._step():
            pass

    def _step(self) -> bool:
        start = self._projector.position + 1
        notifications = self._chat.recorder.select_notifications(
            start=start, limit=self._batch_size
        )
        if not notifications:
            return False
        # An event this build cannot read comes as Undecodable, to be parked.
        mapper = self._chat.mapper
        batch = [
            LoggedEvent(n.id, decode_logged(record_of(n, ""), mapper))
            for n in notifications
        ]
        self._projector.handle(batch)
        self._fanout.handle([e for e in batch if e.position > self._fanout_from])
        return len(notifications) == self._batch_size
