"""The FastAPI application: only wiring; each resource has its own route module."""

from __future__ import annotations

from fastapi import FastAPI

from minutes import __version__
from server.config import ServerConfig


def create_app(config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    app = FastAPI(title="minutes", version=__version__)
    app.state.config = config

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return app
