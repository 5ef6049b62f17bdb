"""The FastAPI application: only wiring; each resource has its own route module."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from engine import Engine
from minutes import __version__
from server import ws_stream, ws_vosk
from server.config import ServerConfig
from server.context import ServerContext
from server.errors import install_handlers
from server.jobs import JobQueue
from server.limits import StreamSlots
from server.metrics import Metrics
from server.upload_limit import UploadLimit
from server.routes import files, health, models

log = logging.getLogger("minutes.server")
WEB = Path(__file__).resolve().parents[1] / "clients" / "web"


def create_app(config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    metrics = Metrics()
    ctx = ServerContext(config, Engine(config.engine, metrics.observe_decode), metrics,
                        StreamSlots(config.max_streams, config.max_streams_per_key))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx.engine.start()
        ctx.jobs = JobQueue(ctx, config.jobs_db, config.jobs_dir)
        ctx.jobs.start()
        log.info("minutes %s serving on %s:%d (model %r from %s)", __version__, config.host, config.port,
                 ctx.engine.config.model, config.engine.store)
        try:
            yield
        finally:
            await ctx.jobs.stop()
            ctx.engine.stop()

    app = FastAPI(title="minutes", version=__version__, lifespan=lifespan,
                  description="Streaming meeting transcription. WebSocket protocol: docs/protocol.md.")
    app.state.config = config
    app.state.ctx = ctx
    install_handlers(app, metrics.error)
    app.add_middleware(UploadLimit, limit=config.max_upload_bytes, paths=("/v1/transcriptions", "/v1/jobs"),
                       on_refuse=metrics.error)
    for module in (health, models, files, ws_stream, ws_vosk):
        app.include_router(module.router)
    if (WEB / "index.html").is_file():  # the clients' demo page, when it is there
        app.mount("/demo", StaticFiles(directory=WEB, html=True), name="demo")

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("/demo/")

    return app
