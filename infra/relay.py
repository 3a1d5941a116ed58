"""
The relay: from the event store's notification log to the Kafka log, exactly.

It reads notifications in order after its saved position, produces each as a
record keyed by conversation with the idempotent producer, and saves its
position only past the prefix Kafka acknowledged. A crash therefore repeats
at most the unsaved tail, with the same event ids, keys and hashes, which the
consumers' idempotence absorbs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from eventsourcing.persistence import ApplicationRecorder

from infra.kafka import LogProducer
from infra.records import ChainHeads

logger = logging.getLogger(__name__)

RELAY_NAME = "relay"


class PositionStore(Protocol):
    """
    Remembers how far a named reader of the notification log has got.
    """

    def get(self, name: str) -> int: ...

    def save(self, name: str, position: int) -> None: ...


class Relay:
    """
    Moves notifications to Kafka in order, saving its position after acks.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        producer: LogProducer,
        positions: PositionStore,
        *,
        batch_size: int = 500,
        flush_timeout: float = 10.0,
        poll_seconds: float = 0.02,
    ) -> None:
        self._recorder = recorder
        self._producer = producer
        self._positions = positions
        self._chain = ChainHeads(recorder)
        self._batch_size = batch_size
        self._flush_timeout = flush_timeout
        self._poll_seconds = poll_seconds
        self.relayed = 0

    @property
    def position(self) -> int:
        return self._positions.get(RELAY_NAME)

    def head(self) -> int:
        return self._recorder.max_notification_id() or 0

    def relay_once(self) -> int:
        """
        Relay one batch; return how many records Kafka acknowledged.
        """
        notifications = self._recorder.select_notifications(
            start=self.position + 1, limit=self._batch_size
        )
        if not notifications:
            return 0
        records = [self._chain.record(n) for n in notifications]
        acked = self._producer.publish(records, timeout=self._flush_timeout)
        if acked:
            self._positions.save(RELAY_NAME, records[acked - 1].notification_id)
            self.relayed += acked
        if acked < len(records):
            # The unacked tail is produced again, so its chain is rebuilt then.
            self._chain.forget([r.conversation_id for r in records[acked:]])
            logger.warning(
                "kafka acked %s of %s records; retrying from notification %s",
                acked,
                len(records),
                records[acked].notification_id,
            )
        return acked

    def run(self, stopping: threading.Event) -> None:
        """
        Relay until ``stopping`` is set, then flush with a bounded wait.
        """
        logger.info(
            "relay starting at position %s, head %s", self.position, self.head()
        )
        reported = time.monotonic()
        while not stopping.is_set():
            if self.relay_once() == 0:
                stopping.wait(self._poll_seconds)
            if time.monotonic() - reported >= 10:
                reported = time.monotonic()
                logger.info("relayed %s, at position %s", self.relayed, self.position)
        unsent = self._producer.close(self._flush_timeout)
        logger.info(
            "relay stopped at position %s (%s records unsent)", self.position, unsent
        )
