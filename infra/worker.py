"""
A background thread that does one step of work when woken, or after a pause.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

RETRY_PAUSE_SECONDS = 1.0


class Worker:
    """
    Runs ``step`` in its own thread whenever woken, or once ``pause()``
    seconds have gone by, until stopped. A step that fails is logged and
    tried again after a pause: each step must be safe to repeat.
    """

    def __init__(
        self, name: str, step: Callable[[], None], pause: Callable[[], float]
    ) -> None:
        self._name = name
        self._step = step
        self._pause = pause
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """
        Say that there is work; the thread does a step at once.
        """
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._pause())
            self._wake.clear()
            try:
                self._step()
            except Exception:
                logger.exception("%s failed a step; retrying", self._name)
                self._stopping.wait(RETRY_PAUSE_SECONDS)
