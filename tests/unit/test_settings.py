"""
Settings that guard what a server exposes.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from api.cli import parser
from infra.settings import Settings


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.7", False),
        ("127.example.com", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert Settings(host=host).is_loopback is loopback


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(jwt_secret=SecretStr("too-short"))


def test_the_scaled_profile_needs_a_shared_secret() -> None:
    with pytest.raises(ValidationError):
        Settings(profile="scaled")


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_a_token_that_would_expire_at_once_is_refused(ttl: str) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["token", "alice", "--ttl", ttl])
