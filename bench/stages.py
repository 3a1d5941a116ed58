"""
``duetto serve`` with a stopwatch around each stage of a message's path.

Run it instead of ``duetto serve`` and point ``bench.load --url`` at it. The
server is the real one; this module only wraps some functions, at run time,
in timers that add up calls, wall time and the calling thread's CPU time. When
the server stops, the totals are written as JSON to ``--out``. Stages nest (a
save contains its commit), so the figures are not to be summed.

    DUETTO_DATA_DIR=/tmp/d DUETTO_JWT_SECRET=... \\
        python -m bench.stages --port 8800 --out /tmp/stages.json

The wrappers cost a few microseconds per call, which inflates the cheapest
stages; compare runs with and without them before trusting small figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import eventsourcing.application
import eventsourcing.persistence
import eventsourcing.sqlite
from starlette.websockets import WebSocket

import api.hub
import api.ws
from api import cli
from commands.service import ChatService
from domain.conversation import Conversation
from infra.sqlite import SQLiteHistory
from projections.fanout import FanOut
from projections.runner import HistoryProjector


@dataclass
class Stage:
    calls: int = 0
    wall: float = 0.0
    cpu: float = 0.0


STAGES: dict[str, Stage] = {}
LOCK = threading.Lock()


def _record(name: str, wall: float, cpu: float) -> None:
    with LOCK:
        stage = STAGES.setdefault(name, Stage())
        stage.calls += 1
        stage.wall += wall
        stage.cpu += cpu


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            now_wall, now_cpu = time.perf_counter(), time.thread_time()
            _record(name, now_wall - wall, now_cpu - cpu)

    return wrapper


def timed_async(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall = time.perf_counter()
        try:
            return await function(*args, **kwargs)
        finally:
            # Wall time only: the loop's thread runs other tasks meanwhile.
            _record(name, time.perf_counter() - wall, 0.0)

    return wrapper


def patch(owner: Any, attribute: str, name: str) -> None:
    replace(owner, attribute, functools.partial(timed, name))


def replace(owner: Any, attribute: str, wrap: Callable[[Any], Any]) -> None:
    setattr(owner, attribute, wrap(getattr(owner, attribute)))


def queued(run_in_threadpool: Callable[..., Any]) -> Callable[..., Any]:
    """
    Time how long a job waits for a worker thread before it starts.
    """

    async def wrapper(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        submitted = time.perf_counter()

        def started(*inner: Any, **inner_kwargs: Any) -> Any:
            _record("threadpool.queue_wait", time.perf_counter() - submitted, 0.0)
            return function(*inner, **inner_kwargs)

        return await run_in_threadpool(started, *args, **kwargs)

    return wrapper


def instrument() -> None:
    # The gateway, on the event loop's thread.
    patch(api.ws, "parse_frame", "ws.parse_frame")
    for kind, handler in list(api.ws.HANDLERS.items()):
        api.ws.HANDLERS[kind] = timed_async(f"ws.on_{kind} (await)", handler)
    replace(api.ws, "run_in_threadpool", queued)

    # The write side, on worker threads.
    for method in ("send_message", "mark_delivered", "mark_read"):
        patch(ChatService, method, f"chat.{method}")
    patch(ChatService, "_load", "chat._load (with lock wait)")
    patch(eventsourcing.application.Repository, "get", "repository.get")
    patch(eventsourcing.application, "deepcopy", "repository.deepcopy")
    patch(eventsourcing.persistence.EventStore, "get", "event_store.get (fastforward)")
    patch(Conversation, "send_message", "domain.send_message")
    patch(eventsourcing.application.Application, "save", "app.save")
    patch(eventsourcing.persistence.Mapper, "to_stored_event", "mapper.encode")
    patch(eventsourcing.persistence.ConnectionPool, "get_connection", "pool.get")
    recorder = eventsourcing.sqlite.SQLiteAggregateRecorder
    patch(recorder, "insert_events", "sqlite.insert_events")
    patch(eventsourcing.sqlite.SQLiteConnection, "commit", "sqlite.commit")

    # The log follower's thread.
    app_recorder = eventsourcing.sqlite.SQLiteApplicationRecorder
    patch(app_recorder, "select_notifications", "follower.select_notifications")
    patch(eventsourcing.persistence.Mapper, "to_domain_event", "mapper.decode")
    patch(HistoryProjector, "handle", "projector.handle")
    patch(SQLiteHistory, "apply", "history.apply (sqlite)")
    patch(FanOut, "handle", "fanout.handle")
    patch(SQLiteHistory, "receipts", "history.receipts (fanout query)")

    # Back on the event loop: queue, encode, write.
    patch(api.hub.Hub, "_deliver", "hub.deliver")
    shim = SimpleNamespace(dumps=timed("hub.json_dumps", json.dumps))
    replace(api.hub, "json", lambda _: shim)
    WebSocket.send_text = timed_async(  # type: ignore[method-assign]
        "ws.send_text (deflate + write)", WebSocket.send_text
    )


def report() -> dict[str, dict[str, float]]:
    with LOCK:
        return {
            name: {
                "calls": stage.calls,
                "wall_ms": round(stage.wall * 1000, 1),
                "cpu_ms": round(stage.cpu * 1000, 1),
                "wall_us_per_call": round(stage.wall / stage.calls * 1e6, 1),
                "cpu_us_per_call": round(stage.cpu / stage.calls * 1e6, 1),
            }
            for name, stage in sorted(STAGES.items())
        }


def main(argv: Sequence[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="python -m bench.stages")
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--out", type=Path, required=True)
    options = args.parse_args(argv)
    instrument()
    try:
        return cli.main(["serve", "--host", "127.0.0.1", "--port", str(options.port)])
    finally:
        options.out.write_text(json.dumps(report(), indent=2))


if __name__ == "__main__":
    sys.exit(main())
