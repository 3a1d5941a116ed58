"""
The rebuild loop, the same on both profiles.

A ``Rebuild`` builds one new version of a projection from the log. The loop
applies batches until the new version has caught up with the head, records
the switch in the catalog, applies once more whatever arrived meanwhile, and
drops the old version unless told to keep it. Every batch is stored with its
position in the new version, so a rebuild killed at any point resumes there.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from infra.readmodels.progress import rebuild_progress

logger = logging.getLogger(__name__)


class Rebuild(Protocol):
    """
    One rebuild in progress: a new version filled from the log.
    """

    name: str
    version: int
    old_version: int

    def done(self) -> int:
        """Events of the log already in the new version."""
        ...

    def head(self) -> int:
        """Events in the log now."""
        ...

    def step(self) -> int:
        """Apply the next batch; return how many events it held, 0 at the head."""
        ...

    def switch(self) -> None: ...

    def drop_old(self) -> None: ...

    def close(self) -> None: ...


def run_rebuild(
    rebuild: Rebuild, *, keep_old: bool = False, max_rate: float | None = None
) -> int:
    """
    Build, switch and (unless ``keep_old``) drop; return the events applied.
    """
    what = f"rebuild {rebuild.name} v{rebuild.version}"
    logger.info("%s: resuming at %s of %s events", what, rebuild.done(), rebuild.head())
    applied = _catch_up(rebuild, what, max_rate)

    # Reads and the live projector move to the new version from here on.
    rebuild.switch()
    logger.info("%s: switched reads from v%s", what, rebuild.old_version)
    while count := rebuild.step():
        applied += count
    if not keep_old and rebuild.old_version != rebuild.version:
        rebuild.drop_old()
        logger.info("%s: dropped v%s", what, rebuild.old_version)
    return applied


def _catch_up(rebuild: Rebuild, what: str, max_rate: float | None) -> int:
    applied = 0
    started = time.monotonic()
    with rebuild_progress(what, done=rebuild.done(), total=rebuild.head()) as report:
        while count := rebuild.step():
            applied += count
            report(applied, total=rebuild.head())
            if max_rate:
                # Hold the pace an operator asked for, to spare the stores.
                ahead = applied / max_rate - (time.monotonic() - started)
                time.sleep(max(0.0, ahead))
    return applied
