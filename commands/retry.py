"""
The one place that retries a command after a concurrent append.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import RecordConflictError

from domain.errors import ChatError

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_ATTEMPTS = 30
FIRST_PAUSE_SECONDS = 0.001
LONGEST_PAUSE_SECONDS = 0.05


class ConversationBusyError(ChatError):
    """
    So many writers raced on one conversation that the command gave up.
    """

    code = "conversation_busy"
    field = "conversation_id"


def retry_on_conflict(attempt: Callable[[], T], *, what: str) -> T:
    """
    Run ``attempt`` until no other writer appended to the same conversation first.

    Each attempt reloads the aggregate, so the decision is remade against the
    events that won the race. The pause doubles with each loss, up to a cap,
    and is jittered, so writers in other processes stop colliding in step.
    """
    for number in range(1, MAX_ATTEMPTS + 1):
        try:
            return attempt()
        except RecordConflictError:
            logger.debug("append conflict on %s, attempt %s", what, number)
            ceiling = min(LONGEST_PAUSE_SECONDS, FIRST_PAUSE_SECONDS * 2**number)
            time.sleep(random.uniform(0, ceiling))
    logger.warning("gave up on %s after %s conflicts", what, MAX_ATTEMPTS)
    msg = "the conversation is busy; try again"
    raise ConversationBusyError(msg)
