"""
What a push service's answer means for a delivery, and when to try again.

2xx is sent. 404 and 410 mean the subscription no longer exists. 429, 5xx,
timeouts and refused connections are worth another try, no sooner than the
service's ``Retry-After`` asks. Any other answer will not change on a retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

Kind = Literal["sent", "retry", "gone", "failed"]

MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True)
class Outcome:
    """
    How one attempt ended: its kind, the HTTP status, and any Retry-After.
    """

    kind: Kind
    status_code: int | None = None
    retry_after: float | None = None
    detail: str = ""


def outcome_of(status_code: int, retry_after: str | None, now: datetime) -> Outcome:
    """
    Classify an HTTP answer to a push.
    """
    if 200 <= status_code < 300:
        return Outcome("sent", status_code)
    if status_code in {404, 410}:
        return Outcome("gone", status_code)
    if status_code == 429 or status_code >= 500:
        return Outcome("retry", status_code, parse_retry_after(retry_after, now))
    return Outcome("failed", status_code)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """
    Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (at - now).total_seconds())


def backoff_seconds(
    attempts: int, *, base_seconds: float, retry_after: float | None
) -> float:
    """
    The pause before the next attempt: doubling, but never under Retry-After.
    """
    doubling = base_seconds * 2.0 ** max(0, attempts - 1)
    wait = max(doubling, retry_after or 0.0)
    return min(wait, MAX_BACKOFF_SECONDS)
