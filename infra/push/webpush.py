"""
Web Push (RFC 8030) with VAPID (RFC 8292), encrypted as RFC 8291 requires.

``pywebpush`` encrypts the payload with ``aes128gcm`` for the subscription's
keys and signs the VAPID token; this module keeps the server's VAPID key and
turns each answer, or the lack of one, into an ``Outcome``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from infra.push.outcomes import Outcome, outcome_of
from infra.push.store import Delivery

logger = logging.getLogger(__name__)

VAPID_FILE = "vapid.pem"
# How long a push service keeps a push for a device that is not reachable.
PUSH_TTL_SECONDS = 24 * 3600


class InvalidVapidKeyError(ValueError):
    """
    The configured VAPID private key cannot be read.
    """


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


class VapidKeys:
    """
    The server's VAPID key pair: from settings, or made in the data directory.
    """

    def __init__(self, vapid: Vapid) -> None:
        self.vapid = vapid

    @classmethod
    def load_or_create(cls, path: Path) -> VapidKeys:
        if not path.exists():
            vapid = Vapid()
            vapid.generate_keys()
            path.parent.mkdir(parents=True, exist_ok=True)
            # Readable by this user alone, from the moment it exists.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(vapid.private_pem())
            logger.info("created a VAPID key in %s", path.parent)
        return cls(Vapid.from_pem(path.read_bytes()))

    @classmethod
    def from_setting(cls, text: str) -> VapidKeys:
        """
        Keys from a setting: a PEM, or base64url of the raw key or its DER.
        """
        try:
            if "-----BEGIN" in text:
                return cls(Vapid.from_pem(text.strip().encode("ascii")))
            # Standard base64 is taken too: it differs only in two letters.
            urlsafe = text.strip().replace("+", "-").replace("/", "_")
            return cls(Vapid.from_string(urlsafe.rstrip("=")))
        except (ValueError, TypeError, binascii.Error) as e:
            msg = "DUETTO_PUSH_VAPID_PRIVATE_KEY is not a P-256 private key"
            raise InvalidVapidKeyError(msg) from e

    @property
    def public_key(self) -> str:
        """
        The public key as browsers take it: an uncompressed P-256 point, base64url.
        """
        point = self.vapid.public_key.public_bytes(
            serialization.Encoding.X962,
            serialization.PublicFormat.UncompressedPoint,
        )
        return b64url(point)


def new_vapid_private_key() -> str:
    """
    A fresh VAPID private key as PEM, for ``DUETTO_PUSH_VAPID_PRIVATE_KEY``.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


class WebPushSender:
    """
    Sends one delivery to a browser's push service and classifies the answer.
    """

    def __init__(self, keys: VapidKeys, *, subject: str, timeout: float) -> None:
        self._keys = keys
        self._subject = subject
        self._timeout = timeout
        self._session = requests.Session()
        # Push endpoints are reached directly, never through ambient proxies.
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def send(self, delivery: Delivery, payload: dict[str, Any]) -> Outcome:
        target = delivery.target
        info = {
            "endpoint": target.endpoint,
            "keys": {"p256dh": target.p256dh, "auth": target.auth},
        }
        try:
            response = webpush(
                info,
                data=json.dumps(payload, separators=(",", ":")),
                vapid_private_key=self._keys.vapid,
                vapid_claims={"sub": self._subject, "aud": _origin(target.endpoint)},
                timeout=self._timeout,
                ttl=PUSH_TTL_SECONDS,
                # A repeat after a crash replaces the first at the push service.
                headers={"Topic": delivery.push.push_id.hex, "Urgency": "normal"},
                requests_session=self._session,
            )
        except WebPushException as e:
            return _refused(e)
        except requests.RequestException as e:
            return Outcome("retry", detail=type(e).__name__)
        return Outcome("sent", int(response.status_code))


def _refused(error: WebPushException) -> Outcome:
    response = error.response
    if response is None:
        return Outcome("failed", detail="no response")
    now = datetime.now(UTC)
    return outcome_of(response.status_code, response.headers.get("Retry-After"), now)


def _origin(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"
