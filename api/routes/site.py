"""
Health, the web page, and the dev-only token form behind it.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from api.auth import issue_token
from api.deps import ServicesDep

router = APIRouter(tags=["site"])


class DevTokenIn(BaseModel):
    user: str


class DevTokenOut(BaseModel):
    user: str
    token: str


@router.get("/healthz")
def health(services: ServicesDep) -> dict[str, object]:
    """Liveness, and how far the projections trail the log."""
    follower = services.follower
    return {
        "status": "ok",
        "profile": services.settings.profile,
        "log_head": follower.head(),
        "projection_lag": follower.lag(),
    }


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def web_page() -> str:
    return files("api").joinpath("static/index.html").read_text(encoding="utf-8")


@router.post("/v1/dev/token", response_model=DevTokenOut)
def dev_token(request: DevTokenIn, services: ServicesDep) -> dict[str, str]:
    """Issue a token for any user: only while the server listens on loopback."""
    settings = services.settings
    if not settings.is_loopback:
        raise HTTPException(404, "not found")
    token = issue_token(
        settings.signing_secret(), request.user, ttl_seconds=settings.token_ttl_seconds
    )
    return {"user": request.user, "token": token}
