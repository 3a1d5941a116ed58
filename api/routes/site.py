"""
Health, the web page, and the dev-only token form behind it.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException, Response
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
    return {
        "status": "ok",
        "profile": services.settings.profile,
        "log_head": services.log_head(),
        "projection_lag": services.projection_lag(),
    }


# The page's own files, by name: nothing else under static/ is served.
STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def _static_text(name: str) -> str:
    return files("api").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def web_page() -> str:
    return _static_text("index.html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    # The page has no icon; saying so plainly keeps browser consoles quiet.
    return Response(status_code=204)


@router.get("/static/{name}", include_in_schema=False)
def web_asset(name: str) -> Response:
    media_type = STATIC_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, "not found")
    return Response(_static_text(name), media_type=media_type)


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
