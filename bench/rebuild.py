"""
How fast ``duetto projections rebuild history`` fills Cassandra from Kafka.

Run as ``python -m bench.rebuild --conversations N --messages M`` with the
servers of ``python -m infra.local start all`` running. It writes a log of
real ``Conversation`` events (messages, with a delivered and a read receipt
every tenth message) straight to a private topic, as the relay would, then
times a rebuild of that topic into a private keyspace, and prints one JSON
object: events, seconds, events/s. The topic and keyspaces are removed at
the end. Only the rebuild is timed, not the writing of the log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from confluent_kafka.admin import AdminClient

from domain.conversation import Conversation
from infra.kafka import LogProducer, ensure_topic
from infra.local.servers import SERVER_TYPES, all_settings
from infra.readmodels.parallel import ParallelRebuild
from infra.readmodels.rebuild import Rebuild, run_rebuild
from infra.readmodels.scaled import BATCH_SIZE, CassandraVersions, ScaledRebuild
from infra.records import LogRecord, chain_hash, event_mapper
from infra.settings import Settings

SECRET = "bench-rebuild-profile-secret-0123456789abcdef"
PRODUCE_BATCH = 5000


def settings_for(unique: str, partitions: int) -> Settings:
    servers = all_settings(server() for server in SERVER_TYPES.values())
    fields = {key.removeprefix("DUETTO_").lower(): v for key, v in servers.items()}
    fields |= {
        "profile": "scaled",
        "jwt_secret": SECRET,
        "kafka_topic": f"bench.rebuild.{unique}",
        "kafka_partitions": str(partitions),
        "kafka_group_prefix": f"bench-{unique}",
        "cassandra_keyspace": f"bench_rb_{unique}",
    }
    return Settings.model_validate(fields)


def log_records(conversations: int, messages: int) -> Iterator[LogRecord]:
    """
    The events of ``conversations`` conversations, numbered as a log would.
    """
    mapper = event_mapper()
    position = 0
    for n in range(conversations):
        first, second = f"bench{n}a", f"bench{n}b"
        conversation = Conversation.start(first, second)
        for seq in range(1, messages + 1):
            body = f"message {seq} in conversation {n}, of an ordinary length"
            conversation.send_message(sender=first, client_msg_id=f"m{seq}", body=body)
            if seq % 10 == 0:
                conversation.mark_delivered(user=second, up_to_seq=seq)
                conversation.mark_read(user=second, up_to_seq=seq - 1)
        previous = ""
        for event in conversation.collect_events():
            position += 1
            stored = mapper.to_stored_event(event)
            state = stored.state.decode("utf-8")
            digest = chain_hash(previous, stored.topic, state)
            yield LogRecord(
                conversation_id=conversation.id,
                version=event.originator_version,
                notification_id=position,
                topic=stored.topic,
                state=state,
                previous_hash=previous,
                hash=digest,
            )
            previous = digest


def write_log(settings: Settings, conversations: int, messages: int) -> int:
    ensure_topic(
        settings.kafka_bootstrap,
        settings.kafka_topic,
        partitions=settings.kafka_partitions,
    )
    producer = LogProducer(settings.kafka_bootstrap, settings.kafka_topic)
    written, batch = 0, []
    for record in log_records(conversations, messages):
        batch.append(record)
        if len(batch) == PRODUCE_BATCH:
            written += producer.publish(batch, timeout=60)
            batch = []
    written += producer.publish(batch, timeout=60) if batch else 0
    producer.close(30)
    return written


def time_rebuild(
    settings: Settings, batch_size: int, workers: int
) -> tuple[int, float]:
    rebuild: Rebuild
    if workers > 1:
        rebuild = ParallelRebuild(settings, workers=workers, batch_size=batch_size)
    else:
        rebuild = ScaledRebuild(settings, batch_size=batch_size)
    started = time.perf_counter()
    try:
        applied = run_rebuild(rebuild, keep_old=True)
    finally:
        rebuild.close()
    return applied, time.perf_counter() - started


def clean_up(settings: Settings) -> None:
    versions = CassandraVersions(settings)
    for version in (0, 1):
        versions.drop(version)
    catalog = f"{settings.cassandra_keyspace}_catalog"
    versions.session.execute(f"DROP KEYSPACE IF EXISTS {catalog}", timeout=60)
    versions.close()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.delete_topics([settings.kafka_topic]).values():
        future.result(timeout=30)


def run(options: argparse.Namespace) -> dict[str, Any]:
    settings = settings_for(uuid.uuid4().hex[:8], options.partitions)
    try:
        events = write_log(settings, options.conversations, options.messages)
        applied, seconds = time_rebuild(settings, options.batch_size, options.workers)
    finally:
        clean_up(settings)
    return {
        "events": events,
        "applied": applied,
        "seconds": round(seconds, 2),
        "events_per_second": round(applied / seconds),
        "conversations": options.conversations,
        "partitions": options.partitions,
        "batch_size": options.batch_size,
        "workers": options.workers,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="bench.rebuild", description=__doc__)
    root.add_argument("--conversations", type=int, default=200)
    root.add_argument("--messages", type=int, default=500)
    root.add_argument("--partitions", type=int, default=12)
    root.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    root.add_argument("--workers", type=int, default=1)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    print(json.dumps(run(parser().parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
