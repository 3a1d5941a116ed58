"""
Progress of a rebuild: a rich bar on a terminal, plain lines when redirected.

Both show events applied, events per second and the time left to the head,
which keeps moving while the service records new events.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

PLAIN_EVERY_SECONDS = 5.0


class Progress(Protocol):
    """
    Told how many events were applied and where the head now is.
    """

    def __call__(self, applied: int, *, total: int) -> None: ...


@contextmanager
def rebuild_progress(what: str, *, done: int, total: int) -> Iterator[Progress]:
    """
    Yield a reporter of progress, writing to standard error.
    """
    if sys.stderr.isatty():
        with _bar(what, done, total) as report:
            yield report
    else:
        with _lines(what, done, total) as report:
            yield report


@contextmanager
def _bar(what: str, done: int, total: int) -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeRemainingColumn(),
    )
    with Bar(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=total, completed=done, rate="-")
        started, first = time.monotonic(), done

        def report(applied: int, *, total: int) -> None:
            rate = applied / max(time.monotonic() - started, 1e-6)
            bar.update(
                task, completed=first + applied, total=total, rate=f"{rate:,.0f}"
            )

        yield report


@contextmanager
def _lines(what: str, done: int, total: int) -> Iterator[Progress]:
    started = last = time.monotonic()
    state = {"applied": 0, "total": total}

    def line() -> str:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = state["applied"] / elapsed
        at = done + state["applied"]
        left = (state["total"] - at) / rate if rate else 0.0
        return (
            f"{what}: {at} of {state['total']} events, "
            f"{rate:,.0f} events/s, {left:,.0f} s left"
        )

    def report(applied: int, *, total: int) -> None:
        nonlocal last
        state["applied"], state["total"] = applied, total
        if time.monotonic() - last >= PLAIN_EVERY_SECONDS:
            last = time.monotonic()
            print(line(), file=sys.stderr, flush=True)

    yield report
    print(f"{line()}, done", file=sys.stderr, flush=True)
