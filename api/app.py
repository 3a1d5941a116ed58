"""
``create_app``: the FastAPI application, wired through ``infra.bootstrap``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, ws
from api.hub import Hub
from api.routes import conversations, messages, presence, push, site
from infra import bootstrap
from infra.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """
    Build the app; its services start with the lifespan and close with it.
    """
    settings = settings or Settings()
    hub = Hub()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        services = bootstrap.build(settings, publisher=hub)
        app.state.services = services
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="duetto",
        summary="Real-time 1-on-1 chat, event-sourced.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.hub = hub
    errors.register(app)
    for router in (
        messages.router,
        conversations.router,
        presence.router,
        push.router,
        site.router,
        ws.router,
    ):
        app.include_router(router)
    return app
