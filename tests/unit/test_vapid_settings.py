"""
The VAPID key every process of the scaled profile shares, read from settings.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from infra.push.embedded import MissingVapidKeyError, vapid_keys
from infra.push.webpush import VAPID_FILE, InvalidVapidKeyError, VapidKeys
from infra.settings import Settings

SECRET = SecretStr("a-shared-token-secret-of-enough-length")


def encodings(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    return {
        "pem": pem,
        "der-base64": base64.b64encode(der).decode("ascii"),
        "raw-base64url": base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
    }


def public_point(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(point).decode("ascii").rstrip("=")


@pytest.mark.parametrize("form", ["pem", "der-base64", "raw-base64url"])
def test_a_configured_key_is_read_in_each_form(form: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    text = encodings(key)[form]

    keys = VapidKeys.from_setting(text)

    assert keys.public_key == public_point(key)


def test_a_key_that_is_not_one_is_refused() -> None:
    with pytest.raises(InvalidVapidKeyError):
        VapidKeys.from_setting("not a key")


def test_the_scaled_profile_refuses_to_make_up_its_own_key(tmp_path: Path) -> None:
    settings = Settings(profile="scaled", jwt_secret=SECRET, data_dir=tmp_path)

    with pytest.raises(MissingVapidKeyError):
        vapid_keys(settings)
    assert not (tmp_path / VAPID_FILE).exists()


def test_two_processes_with_the_same_setting_sign_with_the_same_key(
    tmp_path: Path,
) -> None:
    pem = encodings(ec.generate_private_key(ec.SECP256R1()))["pem"]
    settings = [
        Settings(
            profile="scaled",
            jwt_secret=SECRET,
            data_dir=tmp_path / name,
            push_vapid_private_key=SecretStr(pem),
        )
        for name in ("gateway", "notify")
    ]

    first, second = (vapid_keys(each).public_key for each in settings)

    assert first == second


def test_the_embedded_profile_keeps_its_key_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)

    first, second = vapid_keys(settings), vapid_keys(settings)

    assert first.public_key == second.public_key
    assert (tmp_path / VAPID_FILE).exists()
