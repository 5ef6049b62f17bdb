"""`GET /v1/models` (the store) and `GET /v1/arrays` (array presets)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from minutes.arrays import preset_names, preset_rows
from server.context import ApiKey, Ctx

router = APIRouter(tags=["models"])


@router.get("/v1/models")
def list_models(ctx: Ctx, _key: ApiKey) -> dict[str, Any]:
    """The models of the store (newest version of each) and which one the server uses."""
    return {"default": ctx.engine.config.model, "models": ctx.engine.models()}


@router.get("/v1/arrays")
def list_arrays(_key: ApiKey) -> dict[str, Any]:
    """Array presets a `start` message or upload may name, with their mic positions (metres)."""
    return {"presets": {name: preset_rows(name) for name in preset_names()}}
