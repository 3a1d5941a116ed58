"""
Wiring of push notifications for the scaled profile.

Gateways keep subscriptions in PostgreSQL and serve the shared VAPID key.
``duetto notify`` is a member of the ``<prefix>-notify`` consumer group: it
feeds each batch to ``PushDecider``, whose decisions reach PostgreSQL before
the batch's offsets are committed, and between batches it runs the
dispatcher over the outbox. A crash therefore repeats at most an
uncommitted batch, which the decided-message table turns into no change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from infra.consumer import ProjectorProcess
from infra.kafka import LogConsumer, ensure_topic
from infra.push import PushRegistry
from infra.push.dispatcher import PushDispatcher, RetryPolicy
from infra.push.embedded import policy_of, senders_of, vapid_keys
from infra.push.postgres import PostgresPushStore
from infra.settings import Settings
from infra.startup import patiently
from projections.notifications import PushDecider

if TYPE_CHECKING:
    from infra.bootstrap import Process

logger = logging.getLogger(__name__)

Part = TypeVar("Part")

RETRY_PAUSE_SECONDS = 1.0


def notify_group(settings: Settings) -> str:
    return f"{settings.kafka_group_prefix}-notify"


def push_store(settings: Settings) -> PostgresPushStore:
    """
    The shared push store, waiting for PostgreSQL if it is not up yet.
    """
    return _patiently(
        settings,
        "PostgreSQL",
        lambda: PostgresPushStore(
            settings.postgres_dsn, schema=settings.postgres_schema
        ),
    )


def build_registry(settings: Settings) -> PushRegistry:
    """
    What a scaled gateway's push routes need; refuses a missing VAPID key.
    """
    keys = vapid_keys(settings)
    return PushRegistry(
        push_store(settings), keys.public_key, allow_http=settings.is_loopback
    )


class NotifyProcess:
    """
    ``duetto notify``: decide on each batch of the log, then send what is due.
    """

    def __init__(
        self,
        consumer: LogConsumer,
        store: PostgresPushStore,
        decider: PushDecider,
        dispatcher: PushDispatcher,
    ) -> None:
        self._consumer = consumer
        self._store = store
        # Offsets are committed only after the decider's transaction.
        self._decisions = ProjectorProcess("notify", consumer, decider.handle)
        self._dispatcher = dispatcher

    def run(self, stopping: threading.Event) -> None:
        logger.info("notifier starting")
        while not stopping.is_set():
            try:
                self._decisions.step()
                # Members split the decisions by partition; one drains.
                if self._store.lead_dispatch():
                    self._dispatcher.run_due()
            except Exception:
                # Nothing past the committed offsets was lost: it comes again.
                logger.exception("notifier step failed; retrying")
                time.sleep(RETRY_PAUSE_SECONDS)
        self._consumer.close()
        self._dispatcher.close()
        logger.info("notifier stopped")


def build_notify(settings: Settings) -> Process:
    """
    ``duetto notify``: the decider on a consumer group, and the dispatcher.
    """
    from infra.bootstrap import Process
    from infra.cassandra.cluster import connect as connect_history
    from infra.redis import Names, RedisPresence, connect

    keys = vapid_keys(settings)
    _patiently(
        settings,
        "Kafka",
        lambda: ensure_topic(
            settings.kafka_bootstrap,
            settings.kafka_topic,
            partitions=settings.kafka_partitions,
        ),
    )
    history = _patiently(settings, "Cassandra", lambda: connect_history(settings))
    client = _patiently(settings, "Redis", lambda: connect(settings.redis_url))
    presence = RedisPresence(
        client,
        ttl_seconds=settings.presence_ttl_seconds,
        names=Names(prefix=settings.redis_prefix),
    )
    store = push_store(settings)
    store.recover_interrupted()
    decider = PushDecider(
        store, history, lambda user: presence.status(user).online, policy_of(settings)
    )
    dispatcher = PushDispatcher(
        store,
        history,
        senders_of(settings, keys),
        webhook_url=settings.push_webhook_url,
        retry=RetryPolicy(settings.push_retry_base_seconds, settings.push_max_attempts),
    )
    # Pushes are for what happens from now on: a new group starts at the head.
    consumer = LogConsumer(
        settings.kafka_bootstrap,
        settings.kafka_topic,
        notify_group(settings),
        start_at="latest",
    )
    process = NotifyProcess(consumer, store, decider, dispatcher)
    return Process(run=process.run, closers=[history.close, client.close, store.close])


def _patiently(settings: Settings, what: str, attempt: Callable[[], Part]) -> Part:
    return patiently(what, attempt, timeout=settings.startup_timeout_seconds)
