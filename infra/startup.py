"""
Patience at start-up: a process waits for its servers instead of dying.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_PAUSE_SECONDS = 0.5
LONGEST_PAUSE_SECONDS = 5.0


def patiently(what: str, attempt: Callable[[], T], *, timeout: float) -> T:
    """
    Call ``attempt`` until it succeeds, pausing longer each time, for at most
    ``timeout`` seconds; then let its last error through.
    """
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            return attempt()
        except Exception as error:
            if time.monotonic() + pause > deadline:
                raise
            logger.warning("%s not reachable yet (%s); retrying", what, error)
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_SECONDS)
