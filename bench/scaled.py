"""
The scaled profile under load, and where each message's time goes.

Run as ``python -m bench.scaled --pairs N --messages M`` with the servers of
``python -m infra.local start all`` running. It starts a private stack (a
gateway, the relay and both projectors, with their own schema, topic and
keyspace), drives the gateway with ``bench.load``, waits until history has
caught up, and then times each stage from what the data itself records:

- ``ack``: the sender's frame to its ack (the append to PostgreSQL);
- ``relay``: the event's own timestamp to the record's Kafka CreateTime;
- ``projection``: that CreateTime to the Cassandra write time of the row;
- ``delivery``: the sender's frame to the recipient's ``message`` frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cassandra.cluster import Cluster
from confluent_kafka import Consumer, TopicPartition

from bench.load import Options, latency_summary, measure
from bench.server import cpu_seconds, duetto_command, free_port
from infra.local.servers import SERVER_TYPES, all_settings
from infra.push.webpush import new_vapid_private_key

SECRET = "bench-scaled-profile-secret-0123456789abcdef"
READY_SECONDS = 120.0


class Stack:
    """
    One private scaled deployment: its processes and its names.
    """

    def __init__(self, workdir: Path, unique: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.keyspace = f"bench_{unique}"
        self.topic = f"bench.{unique}"
        servers = all_settings(server() for server in SERVER_TYPES.values())
        self.env = {
            **os.environ,
            **servers,
            "DUETTO_PROFILE": "scaled",
            "DUETTO_JWT_SECRET": SECRET,
            "DUETTO_POSTGRES_SCHEMA": f"bench_{unique}",
            "DUETTO_KAFKA_TOPIC": self.topic,
            "DUETTO_KAFKA_GROUP_PREFIX": f"bench-{unique}",
            "DUETTO_CASSANDRA_KEYSPACE": self.keyspace,
            "DUETTO_REDIS_PREFIX": f"bench:{unique}:",
            "DUETTO_LOG_LEVEL": "WARNING",
            "DUETTO_PUSH_VAPID_PRIVATE_KEY": new_vapid_private_key(),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for name, args in (
            ("relay", ["relay"]),
            ("history", ["project", "history"]),
            ("presence", ["project", "presence"]),
            ("gateway", ["serve", "--port", str(self.port)]),
        ):
            log = (self.workdir / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(
                [*duetto_command(), *args], env=self.env, stdout=log, stderr=log
            )
        asyncio.run(self._wait_ready())

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    async def settled(self) -> None:
        """
        Wait until every event is in Cassandra (the gateway's lag is zero).
        """
        async with httpx.AsyncClient(trust_env=False) as http:
            while True:
                health = (await http.get(f"{self.url}/healthz")).json()
                if health["projection_lag"] == 0:
                    return
                await asyncio.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        async with httpx.AsyncClient(trust_env=False) as http:
            while time.monotonic() < deadline:
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.5)
        msg = f"the scaled stack was not ready; see {self.workdir}"
        raise RuntimeError(msg)


def relay_times(
    bootstrap: str, topic: str
) -> dict[tuple[str, int], tuple[float, float]]:
    """
    For each message event: its own timestamp and its Kafka CreateTime (ms).
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
        for p in partitions
    }
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    times: dict[tuple[str, int], tuple[float, float]] = {}
    remaining = {p for p, end in ends.items() if end > 0}
    while remaining:
        for message in consumer.consume(500, timeout=1.0):
            value, partition, offset = (
                message.value(),
                message.partition(),
                message.offset(),
            )
            if value is None or partition is None or offset is None:
                continue
            record = json.loads(value)
            if record["event_type"] == "MessageSent":
                event_ms = (
                    datetime.fromisoformat(record["timestamp"]).timestamp() * 1000
                )
                place = (record["conversation_id"], json.loads(record["state"])["seq"])
                times[place] = (event_ms, float(message.timestamp()[1]))
            if offset + 1 >= ends[partition]:
                remaining.discard(partition)
    consumer.close()
    return times


def write_times(port: int, keyspace: str) -> dict[tuple[str, int], float]:
    """
    The Cassandra write time (ms) of every message row.
    """
    cluster = Cluster(["127.0.0.1"], port=port, protocol_version=5)
    session = cluster.connect()
    rows = session.execute(
        f"SELECT conversation_id, seq, WRITETIME(body) FROM {keyspace}.messages"
    )
    times = {(str(row[0]), int(row[1])): row[2] / 1000 for row in rows}
    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    cluster.shutdown()
    return times


def stage_figures(stack: Stack) -> dict[str, Any]:
    relayed = relay_times(stack.env["DUETTO_KAFKA_BOOTSTRAP"], stack.topic)
    written = write_times(int(stack.env["DUETTO_CASSANDRA_PORT"]), stack.keyspace)
    relay = [created - event for event, created in relayed.values()]
    projection = [
        written[place] - created
        for place, (_, created) in relayed.items()
        if place in written
    ]
    return {
        "messages_in_kafka": len(relayed),
        "messages_in_cassandra": len(written),
        "relay_ms": latency_summary(relay),
        "projection_ms": latency_summary(projection),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = Options(
        pairs=args.pairs,
        messages=args.messages,
        concurrency=args.concurrency,
        receipts=args.receipts,
        body_bytes=64,
        timeout=args.timeout,
        compression=False,
    )
    workdir = Path(args.workdir or f"/tmp/duetto-bench-{uuid.uuid4().hex[:8]}")
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir, uuid.uuid4().hex[:8])
    print(f"starting a scaled stack, logs in {workdir}", file=sys.stderr)
    stack.start()
    try:
        result = run(stack, options)
    finally:
        stack.stop()
    print(json.dumps(result, indent=2))
    return 0


def run(stack: Stack, options: Options) -> dict[str, Any]:
    ws_url = f"ws://127.0.0.1:{stack.port}/v1/ws"
    pids = {name: process.pid for name, process in stack.processes.items()}
    cpu_before = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    load = asyncio.run(measure(ws_url, SECRET, options, pids["gateway"]))
    asyncio.run(stack.settled())
    cpu = {
        name: round((cpu_seconds(pid) or 0.0) - cpu_before[name], 2)
        for name, pid in pids.items()
    }
    return {
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "load": load,
        "stages": stage_figures(stack),
        "cpu_seconds_per_process": cpu,
    }


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bench.scaled", description=__doc__)
    root.add_argument("--pairs", type=int, default=10)
    root.add_argument("--messages", type=int, default=100)
    root.add_argument("--concurrency", type=int, default=4)
    root.add_argument("--receipts", choices=["each", "latest", "off"], default="latest")
    root.add_argument("--timeout", type=float, default=300.0)
    root.add_argument("--workdir", help="where the processes' logs go")
    return root


if __name__ == "__main__":
    sys.exit(main())
