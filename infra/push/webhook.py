"""
The operator's webhook target: a signed POST for their own push gateway.

The signature is HMAC-SHA256, keyed with the shared secret, over the decimal
Unix timestamp, a full stop, and the exact body bytes. Both travel in
headers, so a receiver can refuse a forgery (wrong signature) and a replay
(a timestamp too far from its own clock). ``X-Duetto-Delivery`` stays the
same when a delivery is repeated, so a receiver can drop the repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from infra.push.outcomes import Outcome, outcome_of
from infra.push.store import Delivery

TIMESTAMP_HEADER = "X-Duetto-Timestamp"
SIGNATURE_HEADER = "X-Duetto-Signature"
DELIVERY_HEADER = "X-Duetto-Delivery"
SIGNATURE_SCHEME = "v1"
WEBHOOK_TARGET = "webhook"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """
    The signature header's value for ``body`` sent at ``timestamp``.
    """
    signed = timestamp.encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}={digest}"


class WebhookSender:
    """
    Posts a delivery's payload to the webhook URL, signed with the secret.
    """

    def __init__(self, url: str, secret: str, *, timeout: float) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout
        # Direct connections only: ambient proxy settings are not followed.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def close(self) -> None:
        """Nothing is kept open between calls."""

    def send(self, delivery: Delivery, payload: dict[str, Any]) -> Outcome:
        body = json.dumps(
            {"delivery_id": str(delivery.delivery_id), **payload},
            separators=(",", ":"),
        ).encode("utf-8")
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(self._secret, timestamp, body),
                DELIVERY_HEADER: str(delivery.delivery_id),
            },
        )
        return self._post(request)

    def _post(self, request: urllib.request.Request) -> Outcome:
        now = datetime.now(UTC)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return Outcome("sent", int(response.status))
        except urllib.error.HTTPError as e:
            outcome = outcome_of(e.code, e.headers.get("Retry-After"), now)
            # A webhook that says "gone" is misconfigured, not a lost device.
            return Outcome("failed", e.code) if outcome.kind == "gone" else outcome
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            return Outcome("retry", detail=type(e).__name__)
