"""
Push notifications for people with no device online: stores, senders, wiring.

``projections.notifications`` decides what to push and when; this package
keeps subscriptions and the outbox, sends Web Push and webhook calls, and
wires the embedded profile's notifier thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.push.ports import Subscriptions


@dataclass(frozen=True)
class PushRegistry:
    """
    What the push routes need: the subscriptions and the key browsers use.

    Plain ``http`` endpoints are accepted only by a server on loopback, the
    way a test's own push receiver is reached; anything else must be https.
    """

    subscriptions: Subscriptions
    vapid_public_key: str
    allow_http: bool
