"""
Helpers for integration tests: duetto processes and a plain reader of the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from infra.records import LogRecord

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class KeyedRecord:
    key: bytes
    partition: int
    record: LogRecord


class DuettoProcess:
    """
    One ``duetto`` command running as a child process, logging to a file.
    """

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._handle = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=self._handle,
            stderr=subprocess.STDOUT,
        )

    def signal(self, signum: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self._handle.close()

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.wait(10)


def read_topic(bootstrap: str, topic: str, *, timeout: float = 30) -> list[KeyedRecord]:
    """
    Every record on ``topic`` from the start, read without a consumer group.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        return _read_until(consumer, ends, time.monotonic() + timeout)
    finally:
        consumer.close()


def _read_until(
    consumer: Consumer, ends: dict[int, int], deadline: float
) -> list[KeyedRecord]:
    records: list[KeyedRecord] = []
    remaining = {p for p, end in ends.items() if end > 0}
    while remaining and time.monotonic() < deadline:
        for message in consumer.consume(num_messages=500, timeout=0.5):
            partition, offset, value = (
                message.partition(),
                message.offset(),
                message.value(),
            )
            if message.error() or partition is None or offset is None or value is None:
                continue
            key = message.key() or b""
            records.append(KeyedRecord(key, partition, LogRecord.from_json(value)))
            if offset + 1 >= ends[partition]:
                remaining.discard(partition)
    return records


def wait_until(condition: object, *, timeout: float, what: str) -> None:
    """
    Poll ``condition`` (a callable returning truthy) until it holds, or fail.

    An error while polling counts as "not yet": a server that was just
    restarted may refuse a request or two before it answers again.
    """
    assert callable(condition)
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if condition():
                return
        except Exception as error:
            last_error = error
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} ({last_error!r})")
        time.sleep(0.1)
