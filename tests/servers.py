"""
The real servers of the scaled profile, for any test that needs them.

A server that is already running (say, started by hand with
``python -m infra.local start all``) is used as it is and left running;
one that a test session starts, it stops at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from infra.local.servers import LocalServer

Server = TypeVar("Server", bound=LocalServer)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    if server.running_pid() is not None:
        yield server
        return
    server.install()
    server.start()
    try:
        yield server
    finally:
        server.stop()
