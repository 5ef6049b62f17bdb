"""What every route needs, built once per app: config, engine, metrics, slots, jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from engine import Engine
from server.auth import check_key
from server.config import ServerConfig
from server.limits import StreamSlots
from server.metrics import Metrics


@dataclass
class ServerContext:
    config: ServerConfig
    engine: Engine
    metrics: Metrics
    slots: StreamSlots
    jobs: Any = None  # server.jobs.JobQueue, set at start-up


def get_ctx(conn: HTTPConnection) -> ServerContext:
    return conn.app.state.ctx


def require_key(request: Request) -> str | None:
    """Route dependency: the caller's API key (401 when keys are on and it is wrong)."""
    ctx: ServerContext = request.app.state.ctx
    return check_key(ctx.config.api_keys, request.headers, request.query_params)


Ctx = Annotated[ServerContext, Depends(get_ctx)]
ApiKey = Annotated[Optional[str], Depends(require_key)]
