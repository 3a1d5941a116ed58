"""
A projector as a Kafka consumer: read a batch, apply it, then commit.

Offsets are committed only after the handler returned, so a crash or a
rebalance repeats at most the uncommitted batch; every projector is
idempotent on (conversation id, version), so a repeat changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from infra.deadletters import decode_logged
from infra.kafka import ConsumedBatch, LogConsumer
from infra.records import event_mapper
from projections.ports import LoggedEvent

logger = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[LoggedEvent]], None]

MAX_BATCH = 500
POLL_SECONDS = 0.2
RETRY_PAUSE_SECONDS = 1.0


class ProjectorProcess:
    """
    Runs one projector over the log until stopped.
    """

    def __init__(
        self,
        name: str,
        consumer: LogConsumer,
        handler: BatchHandler,
        *,
        before_poll: Callable[[], None] | None = None,
    ):
        self.name = name
        self._consumer = consumer
        self._handler = handler
        # Runs between batches, e.g. to follow a switch of history versions.
        self._before_poll = before_poll
        self._mapper = event_mapper()
        self.applied = 0

    def step(self) -> int:
        """
        Apply and commit one batch; return how many records it held.
        """
        if self._before_poll is not None:
            self._before_poll()
        batch = self._consumer.poll(max_records=MAX_BATCH, timeout=POLL_SECONDS)
        if not batch:
            return 0
        try:
            self._handler(self._events(batch))
        except Exception:
            # Nothing is committed: the same records come again after a pause.
            logger.exception("%s failed on a batch; retrying it", self.name)
            self._consumer.rewind(batch)
            time.sleep(RETRY_PAUSE_SECONDS)
            return 0
        self._consumer.commit(batch)
        self.applied += len(batch)
        return len(batch)

    def run(self, stopping: threading.Event) -> None:
        logger.info("projector %s starting", self.name)
        reported = time.monotonic()
        while not stopping.is_set():
            try:
                self.step()
            except Exception:
                logger.exception("%s could not read or commit; retrying", self.name)
                time.sleep(RETRY_PAUSE_SECONDS)
            if time.monotonic() - reported >= 10:
                reported = time.monotonic()
                logger.info("projector %s applied %s records", self.name, self.applied)
        self._consumer.close()
        logger.info("projector %s stopped after %s records", self.name, self.applied)

    def _events(self, batch: ConsumedBatch) -> list[LoggedEvent]:
        return [
            LoggedEvent(
                item.record.notification_id, decode_logged(item.record, self._mapper)
            )
            for item in batch
        ]
