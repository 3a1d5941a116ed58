"""
``duetto audit verify`` on the scaled profile: the Kafka topic against Postgres.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from confluent_kafka import KafkaException, Producer

from infra.audit.verify import Violation
from infra.bootstrap import chat_service
from infra.kafka import ensure_topic
from tests.integration.conftest import settings_from
from tests.integration.processes import (
    REPO,
    DuettoProcess,
    KeyedRecord,
    read_topic,
    wait_until,
)
from tests.unit.test_audit import record_twenty

COUNTS = "conversations 20, events 120, messages 60, receipts 40, repeated records 0"


def run_audit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DUETTO_")}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "audit", *args],
        cwd=REPO,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def relayed(env: dict[str, str], log: Path, expected: int) -> list[KeyedRecord]:
    """
    Run ``duetto relay`` until ``expected`` events are in Kafka, then stop it.
    """
    settings = settings_from(env)
    relay = DuettoProcess(["relay"], env, log)

    def all_there() -> bool:
        try:
            topic = read_topic(settings.kafka_bootstrap, settings.kafka_topic)
        except KafkaException:
            return False  # A new topic's partitions may not have leaders yet.
        return len(topic) >= expected

    try:
        wait_until(
            all_there,
            timeout=90,
            what=f"{expected} events in Kafka",
        )
    finally:
        relay.stop()
    return read_topic(settings.kafka_bootstrap, settings.kafka_topic)


def produce(
    bootstrap: str, topic: str, values: list[tuple[KeyedRecord, bytes]]
) -> None:
    """
    Write ``values`` in order, each to the partition its original was in.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for keyed, value in values:
        producer.produce(topic, key=keyed.key, value=value, partition=keyed.partition)
    assert producer.flush(30) == 0


def test_twenty_conversations_in_kafka_verify_clean_against_postgres(
    scaled_env: dict[str, str], tmp_path: Path
) -> None:
    # Given twenty conversations recorded in Postgres and relayed to Kafka.
    chat = chat_service(settings_from(scaled_env))
    record_twenty(chat)
    relayed(scaled_env, tmp_path / "relay.log", 120)

    # When the topic is verified (the scaled profile's default source).
    result = run_audit(scaled_env, "verify")

    # Then it is clean, with exact counts, and matches the store.
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [COUNTS, "clean"]
    assert "verify kafka: 120 of 120 records read, done" in result.stderr
    store = run_audit(scaled_env, "verify", "--source", "store")
    assert store.stdout.splitlines() == [COUNTS, "clean"]
    chat.close()


def test_a_tampered_copy_of_the_topic_names_all_three_changes(
    scaled_env: dict[str, str], tmp_path: Path
) -> None:
    # Given the relayed log of twenty conversations.
    settings = settings_from(scaled_env)
    chat = chat_service(settings)
    ids = record_twenty(chat)
    records = relayed(scaled_env, tmp_path / "relay.log", 120)

    # When a copy is made with one body altered, one removed, one duplicated.
    altered, removed, duplicated = ids[3], ids[7], ids[11]
    copy: list[tuple[KeyedRecord, bytes]] = []
    other_id = "00000000-0000-4000-8000-000000000000"
    for keyed in records:
        record = keyed.record
        place = (record.conversation_id, record.version)
        if place == (removed, 3):
            continue
        if place == (altered, 3):
            state = json.loads(record.state) | {"body": "I never said that"}
            record = replace(record, state=json.dumps(state))
        copy.append((keyed, record.to_json()))
        if place == (duplicated, 2):
            fields = json.loads(record.to_json()) | {"event_id": other_id}
            copy.append((keyed, json.dumps(fields).encode()))
    tampered = settings.kafka_topic + ".tampered"
    ensure_topic(settings.kafka_bootstrap, tampered, partitions=4)
    produce(settings.kafka_bootstrap, tampered, copy)
    result = run_audit(scaled_env | {"DUETTO_KAFKA_TOPIC": tampered}, "verify")

    # Then verify names each of the three by conversation and version.
    assert result.returncode == 1, result.stderr
    expected = sorted(
        [
            Violation(
                str(altered),
                3,
                "hash does not match its content: altered after hashing",
            ),
            Violation(
                str(altered), 3, "differs from the event store: its content was changed"
            ),
            Violation(str(removed), 3, "in the event store but missing here"),
            Violation(str(removed), 4, "version 3 missing before it"),
            Violation(
                str(duplicated),
                2,
                f"duplicate of this version under another event id, {other_id}",
            ),
        ]
    )
    counts = COUNTS.replace("events 120, messages 60", "events 119, messages 59")
    assert result.stdout.splitlines() == [
        counts,
        *(str(violation) for violation in expected),
        "5 violations",
    ]
    chat.close()
