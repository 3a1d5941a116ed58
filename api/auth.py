"""
Tokens: HMAC-signed JWTs whose subject is the user id.
"""

from __future__ import annotations

import time

import jwt

from domain.errors import InvalidUserIdError
from domain.ids import UserId, check_user_id

ALGORITHM = "HS256"


class InvalidTokenError(Exception):
    """
    The token is missing, malformed, expired, or not signed with our secret.
    """


def issue_token(secret: str, user: UserId, *, ttl_seconds: int) -> str:
    now = int(time.time())
    claims = {"sub": check_user_id(user, field="user"), "iat": now}
    claims["exp"] = now + ttl_seconds
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def user_of(secret: str, token: str) -> UserId:
    """
    Return the user a token speaks for, or raise ``InvalidTokenError``.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
        )
        return check_user_id(str(claims["sub"]), field="token")
    except (jwt.PyJWTError, InvalidUserIdError) as e:
        raise InvalidTokenError(str(e)) from e


def bearer_token(authorization: str | None) -> str | None:
    """
    The token of an ``Authorization: Bearer ...`` header, if there is one.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
