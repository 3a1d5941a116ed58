"""
The push routes: subscriptions are checked before they are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import issue_token
from infra.settings import Settings

POINT = "BN" + "A" * 85  # 65 bytes, starting 0x04, base64url
AUTH = "A" * 22  # 16 bytes


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as http:
        token = issue_token(settings.signing_secret(), "bob", ttl_seconds=60)
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def subscription(endpoint: str, p256dh: str = POINT) -> dict[str, object]:
    return {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": AUTH}}


def test_a_subscription_is_kept_and_removed_once(client: TestClient) -> None:
    body = subscription("https://push.example/abc")

    created = client.post("/v1/push/subscriptions", json=body)
    removed = client.request("DELETE", "/v1/push/subscriptions", json=body)
    again = client.request("DELETE", "/v1/push/subscriptions", json=body)

    assert (created.status_code, removed.status_code, again.status_code) == (
        201,
        204,
        404,
    )


@pytest.mark.parametrize(
    "body",
    [
        subscription("ftp://push.example/abc"),
        subscription("https://push.example/abc", p256dh="AAAA"),
        {"endpoint": "https://push.example/abc"},
    ],
)
def test_a_malformed_subscription_is_refused(
    client: TestClient, body: dict[str, object]
) -> None:
    assert client.post("/v1/push/subscriptions", json=body).status_code == 422


def test_the_vapid_key_is_an_uncompressed_point(client: TestClient) -> None:
    key = client.get("/v1/push/vapid-public-key").json()["public_key"]

    assert len(key) == 87
    assert key.startswith("B")
    assert client.get("/sw.js").status_code == 200
