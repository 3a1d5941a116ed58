"""
Load generator: N pairs of users chat over real WebSockets, and we time it.

Each pair has a sender and a recipient, each on a socket of its own. The
sender sends M messages to its peer, keeping at most ``--concurrency`` of them
unacked at once; the recipient answers every ``message`` frame with
``delivered`` and ``read`` receipts. Latency is measured send to receive: from
just before the sender writes the ``send`` frame to the moment the recipient
reads the ``message`` frame, both on this process's monotonic clock.

Run ``python -m bench.load --help``. One JSON object goes to stdout; progress
goes to stderr once a second. It is a benchmark, not a test: nothing here
passes or fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.auth import issue_token
from bench.server import LocalServer, cpu_seconds, listening_pid
from infra.settings import Settings

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
CONNECT_AT_ONCE = 20
TOKEN_TTL_SECONDS = 3600
RECEIPT_MODES = ("each", "latest", "off")


@dataclass(frozen=True)
class Options:
    pairs: int
    messages: int
    concurrency: int
    receipts: str
    body_bytes: int
    timeout: float
    compression: bool


@dataclass
class Stats:
    """
    Counters shared by every pair of one run; one event loop, so no locks.
    """

    sent: int = 0
    acked: int = 0
    received: int = 0
    receipts_sent: int = 0
    receipts_received: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    ack_latencies_ms: list[float] = field(default_factory=list)
    last_delivery: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)


class Pair:
    """
    One sender and one recipient, each with a socket, and what they expect.
    """

    def __init__(self, index: int, run: str, options: Options, stats: Stats):
        self.sender = f"bench-{run}-s{index}"
        self.recipient = f"bench-{run}-r{index}"
        self.options = options
        self.stats = stats
        self.body = "x" * options.body_bytes
        self.sent_at: dict[str, float] = {}
        self.window = asyncio.Semaphore(options.concurrency)
        self.failed = 0
        self.acked = 0
        self.received = 0
        self.last_seq = 0
        self.marked = 0
        self.receipts_pending = 0
        self.conversation_id = ""
        self.latest_seq = asyncio.Event()
        self.done = asyncio.Event()
        self.sender_ws: ClientConnection | None = None
        self.recipient_ws: ClientConnection | None = None

    async def open(self, url: str, tokens: dict[str, str]) -> None:
        # The recipient comes online first, so every message finds it there.
        self.recipient_ws = await _connect(url, tokens[self.recipient], self.options)
        self.sender_ws = await _connect(url, tokens[self.sender], self.options)

    async def run(self) -> None:
        assert self.sender_ws is not None
        assert self.recipient_ws is not None
        tasks = [
            asyncio.create_task(self._send_all(self.sender_ws)),
            asyncio.create_task(self._read_sender(self.sender_ws)),
            asyncio.create_task(self._read_recipient(self.recipient_ws)),
        ]
        if self.options.receipts == "latest":
            tasks.append(asyncio.create_task(self._mark_latest(self.recipient_ws)))
        try:
            await self.done.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        for ws in (self.sender_ws, self.recipient_ws):
            if ws is not None:
                await ws.close()

    def missing(self) -> int:
        return self.options.messages - self.failed - self.received

    async def _send_all(self, ws: ClientConnection) -> None:
        for number in range(self.options.messages):
            await self.window.acquire()
            client_msg_id = f"m{number}"
            frame = {
                "type": "send",
                "to": self.recipient,
                "body": self.body,
                "client_msg_id": client_msg_id,
                "ref": client_msg_id,
            }
            text = json.dumps(frame)
            self.sent_at[client_msg_id] = time.perf_counter()
            await ws.send(text)
            self.stats.sent += 1

    async def _read_sender(self, ws: ClientConnection) -> None:
        async for raw in _frames(ws, self.stats, "sender"):
            kind = raw.get("type")
            if kind == "ack":
                self._on_ack(raw)
            elif kind == "error":
                self.stats.errors[f"send_{raw.get('code')}"] += 1
                self.failed += 1
                self.window.release()
                self._check_done()
            elif kind == "receipt":
                self.stats.receipts_received += 1
        self.done.set()  # The socket closed: nothing more can arrive.

    def _on_ack(self, frame: dict[str, Any]) -> None:
        sent = self.sent_at.get(str(frame.get("client_msg_id")))
        if sent is not None:
            self.stats.ack_latencies_ms.append((time.perf_counter() - sent) * 1000)
        self.acked += 1
        self.stats.acked += 1
        self.window.release()
        self._check_done()

    async def _read_recipient(self, ws: ClientConnection) -> None:
        async for raw in _frames(ws, self.stats, "recipient"):
            kind = raw.get("type")
            if kind == "message":
                await self._on_message(ws, raw)
            elif kind == "receipt":
                self.stats.receipts_received += 1
                if "ref" in raw:
                    self._on_receipt_reply()
            elif kind == "error":
                self.stats.errors[f"receipt_{raw.get('code')}"] += 1
                self._on_receipt_reply()
        self.done.set()  # The socket closed: nothing more can arrive.

    def _on_receipt_reply(self) -> None:
        self.receipts_pending -= 1
        if self.receipts_pending == 0 and self.last_seq > self.marked:
            self.latest_seq.set()  # Only the "latest" mode waits on this.
        self._check_done()

    async def _on_message(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        now = time.perf_counter()
        sent = self.sent_at.get(str(frame.get("client_msg_id")))
        if frame.get("sender") != self.sender or sent is None:
            self.stats.errors["unexpected_message"] += 1
            return
        seq = int(frame["seq"])
        if seq <= self.last_seq:
            self.stats.errors["repeated_or_reordered"] += 1
            return
        self.last_seq = seq
        self.stats.latencies_ms.append((now - sent) * 1000)
        self.received += 1
        self.stats.received += 1
        self.stats.last_delivery = now
        self.conversation_id = str(frame["conversation_id"])
        if self.options.receipts == "each":
            await self._mark(ws, seq)
        elif self.options.receipts == "latest":
            self.latest_seq.set()
        self._check_done()

    async def _mark_latest(self, ws: ClientConnection) -> None:
        """
        Mark only the newest seq seen, so a burst costs one pair of receipts.
        """
        while True:
            await self.latest_seq.wait()
            self.latest_seq.clear()
            if self.receipts_pending == 0 and self.last_seq > self.marked:
                self.marked = self.last_seq
                await self._mark(ws, self.marked)

    async def _mark(self, ws: ClientConnection, seq: int) -> None:
        for kind in ("delivered", "read"):
            frame = {
                "type": kind,
                "conversation_id": self.conversation_id,
                "up_to_seq": seq,
                "ref": f"{kind}{seq}",
            }
            self.receipts_pending += 1
            self.stats.receipts_sent += 1
            await ws.send(json.dumps(frame))

    def _check_done(self) -> None:
        messages = self.options.messages
        sends_settled = self.acked + self.failed >= messages
        receipts_settled = self.receipts_pending <= 0
        if self.options.receipts == "latest":
            receipts_settled = receipts_settled and self.marked >= self.last_seq
        if sends_settled and self.missing() <= 0 and receipts_settled:
            self.done.set()


async def _connect(url: str, token: str, options: Options) -> ClientConnection:
    return await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression="deflate" if options.compression else None,
        proxy=None,
        max_queue=None,
        open_timeout=30,
    )


async def _frames(
    ws: ClientConnection, stats: Stats, side: str
) -> AsyncIterator[dict[str, Any]]:
    try:
        async for raw in ws:
            frame = json.loads(raw)
            if isinstance(frame, dict):
                yield frame
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd is not None else "without_close_frame"
        if code != 1000:
            stats.errors[f"{side}_closed_{code}"] += 1


# Running a whole benchmark.


async def open_pairs(pairs: Sequence[Pair], url: str, tokens: dict[str, str]) -> None:
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def open_one(pair: Pair) -> None:
        async with gate:
            await pair.open(url, tokens)

    await asyncio.gather(*(open_one(pair) for pair in pairs))


async def report_progress(stats: Stats, started: float, options: Options) -> None:
    expected = options.pairs * options.messages
    previous = 0
    while True:
        await asyncio.sleep(1.0)
        elapsed = time.perf_counter() - started
        rate, previous = stats.received - previous, stats.received
        print(
            f"[{elapsed:6.1f}s] sent {stats.sent}/{expected} acked {stats.acked} "
            f"received {stats.received} ({rate}/s) receipts {stats.receipts_sent} "
            f"errors {sum(stats.errors.values())}",
            file=sys.stderr,
            flush=True,
        )


async def measure(
    url: str, secret: str, options: Options, server_pid: int | None
) -> dict[str, Any]:
    """
    Connect every pair, run them all at once, and return the figures.
    """
    run = uuid.uuid4().hex[:8]
    stats = Stats()
    pairs = [Pair(i, run, options, stats) for i in range(options.pairs)]
    users = [user for pair in pairs for user in (pair.sender, pair.recipient)]
    tokens = {u: issue_token(secret, u, ttl_seconds=TOKEN_TTL_SECONDS) for u in users}

    connect_started = time.perf_counter()
    await open_pairs(pairs, url, tokens)
    connect_seconds = time.perf_counter() - connect_started

    # The clocks start once everyone is connected.
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    client_cpu_before = time.process_time()
    started = time.perf_counter()
    progress = asyncio.create_task(report_progress(stats, started, options))
    runs = [asyncio.create_task(pair.run()) for pair in pairs]
    _, unfinished = await asyncio.wait(runs, timeout=options.timeout)
    duration = time.perf_counter() - started
    # Rates count until the last delivery, not the wait for lost messages.
    active = max(stats.last_delivery - started, 1e-9) if stats.received else duration
    cpu_after = cpu_seconds(server_pid) if server_pid else None
    client_cpu = time.process_time() - client_cpu_before

    progress.cancel()
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*runs, progress, return_exceptions=True)
    await asyncio.gather(*(pair.close() for pair in pairs), return_exceptions=True)
    missing = sum(max(0, pair.missing()) for pair in pairs)
    if missing:
        stats.errors["missing_messages"] += missing

    server_cpu = None
    if cpu_before is not None and cpu_after is not None:
        server_cpu = cpu_after - cpu_before
    return summary(
        options,
        stats,
        duration=duration,
        active=active,
        connect_seconds=connect_seconds,
        timed_out=bool(unfinished),
        server_pid=server_pid,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
    )


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """
    The nearest-rank percentile of already sorted values.
    """
    if not sorted_values:
        return None
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    figures = {
        "p50": percentile(ordered, 0.50),
        "p90": percentile(ordered, 0.90),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else None,
    }
    return {name: _round(value) for name, value in figures.items()}


def summary(
    options: Options,
    stats: Stats,
    *,
    duration: float,
    active: float,
    connect_seconds: float,
    timed_out: bool,
    server_pid: int | None,
    server_cpu: float | None,
    client_cpu: float,
) -> dict[str, Any]:
    return {
        "pairs": options.pairs,
        "messages": options.messages,
        "concurrency": options.concurrency,
        "receipts": options.receipts,
        "body_bytes": options.body_bytes,
        "compression": options.compression,
        "delivered": stats.received,
        "delivered_per_s": _round(stats.received / active),
        "latency_ms": latency_summary(stats.latencies_ms),
        "acks": stats.acked,
        "acks_per_s": _round(stats.acked / active),
        "ack_latency_ms": latency_summary(stats.ack_latencies_ms),
        "receipts_sent": stats.receipts_sent,
        "receipt_frames_received": stats.receipts_received,
        "errors": sum(stats.errors.values()),
        "error_kinds": dict(stats.errors),
        "timed_out": timed_out,
        "duration_s": _round(duration),
        "until_last_delivery_s": _round(active),
        "connect_s": _round(connect_seconds),
        "server_pid": server_pid,
        "server_cpu_s": _round(server_cpu),
        "server_cpu_pct": _round(server_cpu / duration * 100) if server_cpu else None,
        "client_cpu_s": _round(client_cpu),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# The command line.


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="WebSocket load generator for duetto; prints one JSON object.",
    )
    cli.add_argument("--pairs", type=_positive, default=10, help="user pairs")
    cli.add_argument("--messages", type=_positive, default=100, help="per sender")
    cli.add_argument(
        "--url",
        help="a running server's ws://127.0.0.1:PORT[/v1/ws]; without it, the "
        "benchmark starts its own. Tokens are then signed with the secret that "
        "this environment's DUETTO_* settings name",
    )
    cli.add_argument(
        "--concurrency",
        type=_positive,
        default=4,
        help="unacked messages each sender keeps in flight (default 4)",
    )
    cli.add_argument(
        "--receipts",
        choices=RECEIPT_MODES,
        default="each",
        help="each: delivered+read per message (default); latest: only for the "
        "newest seq seen; off: none",
    )
    cli.add_argument("--body-bytes", type=_positive, default=64, help="default 64")
    cli.add_argument(
        "--timeout", type=float, default=300.0, help="give up after this many seconds"
    )
    cli.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="do not offer permessage-deflate (browsers do offer it)",
    )
    cli.add_argument("--server-pid", type=int, help="pid whose CPU time to report")
    cli.add_argument(
        "--keep-data", action="store_true", help="keep the own server's data dir"
    )
    return cli


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def loopback_url(url: str) -> tuple[str, int]:
    """
    Check that ``url`` points at this machine and return it with its port.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname not in LOOPBACK_HOSTS:
        msg = f"only ws:// URLs on the loopback interface are allowed, not {url!r}"
        raise SystemExit(msg)
    if parts.port is None:
        raise SystemExit(f"give the port in {url!r}")
    path = parts.path if parts.path not in {"", "/"} else "/v1/ws"
    return f"ws://{parts.hostname}:{parts.port}{path}", parts.port


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    options = Options(
        pairs=args.pairs,
        messages=args.messages,
        concurrency=args.concurrency,
        receipts=args.receipts,
        body_bytes=args.body_bytes,
        timeout=args.timeout,
        compression=args.compression,
    )
    # Other work on the machine skews every figure; say how busy it was.
    load = {"load_avg_1m_before": round(os.getloadavg()[0], 2)}
    if args.url:
        url, port = loopback_url(args.url)
        pid = args.server_pid or listening_pid(port)
        secret = Settings().signing_secret()
        return {"url": url, **load, **await measure(url, secret, options, pid)}
    with LocalServer(keep_data=args.keep_data) as server:
        print(f"starting duetto serve on port {server.port}", file=sys.stderr)
        await server.wait_ready()
        result = await measure(server.url, server.secret, options, server.pid)
        server.check_alive()
        return {"url": server.url, **load, **result}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
