"""`/healthz` (the process answers), `/readyz` (a model is loaded), `/metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from server.context import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(ctx: Ctx) -> JSONResponse:
    """Readiness: 200 when the server's model is loaded and the decoder runs, else 503."""
    engine = ctx.engine
    if engine.ready:
        m = engine.model()
        return JSONResponse({"status": "ready", "model": {"name": m.name, "version": m.manifest.version},
                             "diarisation": engine.diarisation_available})
    return JSONResponse({"status": "not_ready", "reason": engine.reason}, status_code=503)


@router.get("/metrics")
def metrics(ctx: Ctx) -> Response:
    """Prometheus text format."""
    m, engine = ctx.metrics, ctx.engine
    m.queue_depth.set(engine.queue_depth)
    m.engine_streams.set(engine.active_streams)
    m.rtf.set(engine.rtf())
    if ctx.jobs is not None:
        counts = ctx.jobs.store.counts()
        for status in ("queued", "running", "done", "failed"):
            m.jobs.labels(status).set(counts.get(status, 0))
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
