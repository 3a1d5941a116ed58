"""
Progress of a long read: a bar on a terminal, plain lines when redirected.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PLAIN_EVERY_SECONDS = 5.0

Advance = Callable[[int], None]


@contextmanager
def progress(what: str, total: int | None) -> Iterator[Advance]:
    """
    Yield a function that counts records read; report on standard error.
    """
    if sys.stderr.isatty():
        with _bar(what, total) as advance:
            yield advance
    else:
        with _lines(what, total) as advance:
            yield advance


@contextmanager
def _bar(what: str, total: int | None) -> Iterator[Advance]:
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        yield advance


@contextmanager
def _lines(what: str, total: int | None) -> Iterator[Advance]:
    done = 0
    last = time.monotonic()
    of = "" if total is None else f" of {total}"

    def advance(n: int) -> None:
        nonlocal done, last
        done += n
        if time.monotonic() - last >= PLAIN_EVERY_SECONDS:
            last = time.monotonic()
            print(f"{what}: {done}{of} records read", file=sys.stderr, flush=True)

    yield advance
    print(f"{what}: {done}{of} records read, done", file=sys.stderr, flush=True)
