"""
A push service and a webhook receiver of the tests' own, on loopback.

``PushReceiver`` plays the browser vendor's push service: each device is a
path with a P-256 key pair and an auth secret made here, as a browser makes
them. Every request must carry a VAPID token (``Authorization: vapid t=...,
k=...``) whose ES256 signature verifies under the server's published key
and whose audience is this origin; its body must decrypt (``aes128gcm``,
RFC 8291) with the device's private key. Anything else is answered 400 and
counted as a rejection. Answers can be scripted per device.

``WebhookReceiver`` checks the HMAC-SHA256 signature over timestamp and body
and refuses a timestamp more than five minutes from its own clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

LOOPBACK = "127.0.0.1"
WAIT_SECONDS = 15.0
WEBHOOK_TOLERANCE_SECONDS = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Device:
    """
    One browser's push subscription: its endpoint path and its secrets.
    """

    name: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, origin: str) -> dict[str, Any]:
        """The ``PushSubscription.toJSON()`` a browser would hand its page."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962,
            serialization.PublicFormat.UncompressedPoint,
        )
        return {
            "endpoint": f"{origin}/push/{self.name}",
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }


@dataclass(frozen=True)
class Push:
    """A push that passed every check, with its decrypted payload."""

    device: str
    payload: dict[str, Any]
    status: int
    topic: str | None
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Receiver:
    """
    A loopback HTTP server in a thread; ``answer`` gets lower-cased headers.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rejections: list[str] = []
        answer = self.answer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, headers = answer(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests assert on what was received instead."""

        self._server = _Server((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever)

    @property
    def origin(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str]]:
        raise NotImplementedError

    def reject(self, why: str) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.rejections.append(why)
        return 400, {}


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class PushReceiver(_Receiver):
    """
    A Web Push service on loopback that verifies and decrypts what it gets.
    """

    def __init__(self) -> None:
        super().__init__()
        self.vapid_public_key: str | None = None
        self.devices: dict[str, Device] = {}
        self.scripts: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.requests: list[tuple[str, int]] = []
        self.pushes: list[Push] = []

    def device(self, name: str) -> Device:
        self.devices[name] = Device(name)
        return self.devices[name]

    def script(self, name: str, *answers: int, retry_after: str | None = None) -> None:
        """Answer the device's next requests with these statuses, then 201."""
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        self.scripts[name] = [(status, headers) for status in answers]

    def delivered(self, device: str | None = None) -> list[Push]:
        with self.lock:
            return [
                p
                for p in self.pushes
                if 200 <= p.status < 300 and device in (None, p.device)
            ]

    def requests_to(self, device: str) -> list[int]:
        with self.lock:
            return [status for name, status in self.requests if name == device]

    def wait_for(self, count: int, timeout: float = WAIT_SECONDS) -> list[Push]:
        wait_until(lambda: len(self.delivered()) >= count, f"{count} push(es)", timeout)
        return self.delivered()

    def answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str]]:
        device = self.devices.get(path.removeprefix("/push/"))
        if device is None:
            return self.reject(f"unknown endpoint {path}")
        why = self._vapid_problem(headers.get("authorization", ""))
        if why is None and headers.get("content-encoding") != "aes128gcm":
            why = "not aes128gcm"
        if why is None and "ttl" not in headers:
            why = "no TTL"
        if why is not None:
            return self.reject(why)
        try:
            plain = http_ece.decrypt(
                body,
                private_key=device.private_key,
                auth_secret=device.auth,
                version="aes128gcm",
            )
        except Exception as e:
            return self.reject(f"cannot decrypt: {e!r}")
        return self._answered(device, json.loads(plain), headers.get("topic"))

    def _answered(
        self, device: Device, payload: dict[str, Any], topic: str | None
    ) -> tuple[int, dict[str, str]]:
        with self.lock:
            script = self.scripts.get(device.name) or []
            status, headers = script.pop(0) if script else (201, {})
            self.requests.append((device.name, status))
            self.pushes.append(Push(device.name, payload, status, topic, time.time()))
        return status, headers

    def _vapid_problem(self, authorization: str) -> str | None:
        scheme, _, params = authorization.partition(" ")
        fields = dict(p.split("=", 1) for p in params.split(",") if "=" in p)
        if scheme.lower() != "vapid" or {"t", "k"} - fields.keys():
            return "no vapid authorization"
        if fields["k"] != self.vapid_public_key:
            return "not the server's published key"
        try:
            claims = verify_es256(fields["t"], unb64url(fields["k"]))
        except InvalidSignature:
            return "bad vapid signature"
        return self._claims_problem(claims)

    def _claims_problem(self, claims: dict[str, Any]) -> str | None:
        now = time.time()
        if claims.get("aud") != self.origin:
            return f"wrong audience {claims.get('aud')}"
        if not now < claims.get("exp", 0) <= now + 24 * 3600:
            return "bad expiry"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return "bad subject"
        return None


def verify_es256(token: str, public_point: bytes) -> dict[str, Any]:
    """
    Check a compact JWS signed with ES256 and return its claims.
    """
    header, claims, signature = token.split(".")
    if json.loads(unb64url(header)).get("alg") != "ES256":
        raise InvalidSignature
    raw = unb64url(signature)
    if len(raw) != 64:
        raise InvalidSignature
    der = encode_dss_signature(
        int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    )
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_point)
    key.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    parsed: dict[str, Any] = json.loads(unb64url(claims))
    return parsed


def webhook_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """
    What a webhook call signed with ``secret`` carries, computed independently.
    """
    signed = timestamp.encode("ascii") + b"." + body
    return "v1=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()


class WebhookReceiver(_Receiver):
    """
    An operator's push gateway: accepts only calls signed with its secret.
    """

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret.encode("utf-8")
        self.accepted: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"{self.origin}/hook"

    def sign(self, timestamp: str, body: bytes) -> str:
        return webhook_signature(self._secret, timestamp, body)

    def wait_for(
        self, count: int, timeout: float = WAIT_SECONDS
    ) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.accepted) >= count, "webhook calls", timeout)
        return self.accepted

    def answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str]]:
        timestamp = headers.get("x-duetto-timestamp", "")
        given = headers.get("x-duetto-signature", "")
        if not hmac.compare_digest(given, self.sign(timestamp, body)):
            self.reject("bad signature")
            return 401, {}
        stale = not timestamp.isdigit() or (
            abs(time.time() - int(timestamp)) > WEBHOOK_TOLERANCE_SECONDS
        )
        if stale:
            self.reject("stale timestamp")
            return 401, {}
        with self.lock:
            self.accepted.append(json.loads(body))
        return 204, {}
