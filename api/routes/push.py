"""
Push targets: browsers register their Web Push subscriptions here.

The body is a ``PushSubscription`` as browsers serialise it with
``toJSON()``: ``{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}``.
The service worker that shows the notifications is served from the root, so
its scope covers the whole page.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import CurrentUser, ServicesDep
from api.frames import ErrorOut
from infra.push import PushRegistry
from infra.push.store import Subscription

router = APIRouter(tags=["push"])

P256_POINT_BYTES = 65
AUTH_SECRET_BYTES = 16
MAX_ENDPOINT_LENGTH = 2048


def _b64url_bytes(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)

    @field_validator("p256dh")
    @classmethod
    def _is_p256_point(cls, value: str) -> str:
        point = _b64url_bytes(value)
        if len(point) != P256_POINT_BYTES or point[0] != 4:
            raise ValueError("p256dh is an uncompressed P-256 point")
        return value

    @field_validator("auth")
    @classmethod
    def _is_auth_secret(cls, value: str) -> str:
        if len(_b64url_bytes(value)) != AUTH_SECRET_BYTES:
            raise ValueError("auth is a 16-byte secret")
        return value


class PushSubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=1, max_length=MAX_ENDPOINT_LENGTH)
    keys: SubscriptionKeys


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=1, max_length=MAX_ENDPOINT_LENGTH)


class SubscriptionOut(BaseModel):
    endpoint: str


class VapidKeyOut(BaseModel):
    public_key: str


def get_push(services: ServicesDep) -> PushRegistry:
    if services.push is None:
        raise HTTPException(503, "push notifications are not available here")
    return services.push


PushDep = Annotated[PushRegistry, Depends(get_push)]


def _check_endpoint(endpoint: str, push: PushRegistry) -> None:
    parts = urlsplit(endpoint)
    allowed = {"https", "http"} if push.allow_http else {"https"}
    if parts.scheme not in allowed or not parts.hostname:
        raise HTTPException(422, "endpoint must be an https URL")


@router.post(
    "/v1/push/subscriptions",
    status_code=201,
    response_model=SubscriptionOut,
    responses={422: {"model": ErrorOut}},
)
def subscribe(
    subscription: PushSubscriptionIn, user: CurrentUser, push: PushDep
) -> dict[str, str]:
    """Register a browser's push subscription for the signed-in user."""
    _check_endpoint(subscription.endpoint, push)
    push.subscriptions.subscribe(
        Subscription(
            user=user,
            endpoint=subscription.endpoint,
            p256dh=subscription.keys.p256dh,
            auth=subscription.keys.auth,
        ),
        at=datetime.now(UTC),
    )
    return {"endpoint": subscription.endpoint}


@router.delete(
    "/v1/push/subscriptions",
    status_code=204,
    responses={404: {"model": ErrorOut}},
)
def unsubscribe(subscription: EndpointIn, user: CurrentUser, push: PushDep) -> Response:
    """Remove one of the signed-in user's push subscriptions."""
    if not push.subscriptions.unsubscribe(user, subscription.endpoint):
        raise HTTPException(404, "no such subscription")
    return Response(status_code=204)


@router.get("/v1/push/vapid-public-key", response_model=VapidKeyOut)
def vapid_public_key(push: PushDep) -> dict[str, str]:
    """The key a browser passes to ``pushManager.subscribe`` as applicationServerKey."""
    return {"public_key": push.vapid_public_key}


@router.get("/sw.js", include_in_schema=False)
def service_worker() -> Response:
    text = files("api").joinpath("static", "sw.js").read_text(encoding="utf-8")
    return Response(text, media_type="text/javascript; charset=utf-8")
