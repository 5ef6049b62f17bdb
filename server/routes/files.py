"""`POST /v1/transcriptions` (now) and `/v1/jobs` (later, in SQLite)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any, Optional

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from compression.store import split_ref
from server.context import ApiKey, Ctx, ServerContext
from server.errors import ApiError
from server.formats import FORMATS, render
from server.jobs import public
from server.transcribe import FileParams, audio_info, parse_form, transcribe

router = APIRouter(tags=["transcription"])

OptForm = Annotated[Optional[str], Form()]


def _check_size(ctx: ServerContext, request: Request, upload: UploadFile) -> None:
    limit = ctx.config.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit + 64 * 1024:
        raise ApiError(413, "upload_too_large", f"uploads are limited to {limit} bytes")
    if upload.size is not None and upload.size > limit:
        raise ApiError(413, "upload_too_large", f"uploads are limited to {limit} bytes")


def _check_model(ctx: ServerContext, params: FileParams) -> None:
    """Refuse at once what the engine would refuse (a job would otherwise fail later)."""
    if params.model is None:
        if not ctx.engine.ready:
            raise ApiError(503, "model_unavailable", ctx.engine.reason)
        return
    name, version = split_ref(params.model)  # its shape was checked by parse_form
    versions = ctx.engine.store.versions(name)
    if not versions:
        raise ApiError(404, "unknown_model", f"no model {name!r} in the store")
    if version is not None and version not in versions:
        raise ApiError(404, "unknown_model", f"model {name!r} has no version {version!r} (it has {', '.join(versions)})")


def _answer(result: dict[str, Any], fmt: str, filename: str):
    if fmt == "json":
        return JSONResponse(result)
    return PlainTextResponse(render(result, fmt, filename), media_type=FORMATS[fmt])


@router.post("/v1/transcriptions")
async def create_transcription(
    request: Request, ctx: Ctx, _key: ApiKey,
    file: Annotated[UploadFile, File(description="WAV/FLAC/OGG, any rate, mono or multi-channel")],
    array: OptForm = None, format: OptForm = None, diarisation: OptForm = None,
    hotwords: OptForm = None, model: OptForm = None, channel: OptForm = None, hotword_boost: OptForm = None,
    text: OptForm = None, search: OptForm = None, chunk_seconds: OptForm = None,
):
    """Transcribe an upload now (files up to `max_sync_seconds`; longer ones go through jobs)."""
    _check_size(ctx, request, file)
    params = parse_form(array, format, diarisation, hotwords, model, channel, hotword_boost, text, search,
                        chunk_seconds)
    info = audio_info(file.file)
    if info.duration > ctx.config.max_sync_seconds:
        raise ApiError(413, "too_long_for_sync",
                       f"{info.duration:.0f} s is over the {ctx.config.max_sync_seconds:g} s limit: use POST /v1/jobs")
    _check_model(ctx, params)
    result = await transcribe(ctx, file.file, params)
    ctx.metrics.transcriptions.inc()
    return _answer(result, params.format, file.filename or "audio")


@router.post("/v1/jobs", status_code=202)
async def create_job(
    request: Request, ctx: Ctx, _key: ApiKey,
    file: Annotated[UploadFile, File(description="WAV/FLAC/OGG, any rate, mono or multi-channel")],
    array: OptForm = None, format: OptForm = None, diarisation: OptForm = None,
    hotwords: OptForm = None, model: OptForm = None, channel: OptForm = None, hotword_boost: OptForm = None,
    text: OptForm = None, search: OptForm = None, chunk_seconds: OptForm = None,
) -> JSONResponse:
    """Accept a file for transcription later; it is stored before this answers."""
    _check_size(ctx, request, file)
    params = parse_form(array, format, diarisation, hotwords, model, channel, hotword_boost, text, search,
                        chunk_seconds)
    info = audio_info(file.file)
    _check_model(ctx, params)
    filename = Path(file.filename or "audio").name
    job_id, path = ctx.jobs.new_path(Path(filename).suffix.lstrip(".").lower() or "bin")
    file.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(file.file, out)
        out.flush()
    job = ctx.jobs.submit(job_id, filename, path, params, round(info.duration, 3))
    body = public(job, with_result=False)
    return JSONResponse(body, status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})


@router.get("/v1/jobs")
def list_jobs(ctx: Ctx, _key: ApiKey) -> dict[str, Any]:
    """The 100 newest jobs, without results."""
    return {"jobs": [public(j, with_result=False) for j in ctx.jobs.store.list(100)]}


@router.get("/v1/jobs/{job_id}")
def get_job(job_id: str, ctx: Ctx, _key: ApiKey, format: str | None = None):
    """A job's status and, once done, its result (`?format=` renders it directly)."""
    job = ctx.jobs.store.get(job_id)
    if job is None:
        raise ApiError(404, "unknown_job", f"no job {job_id!r}")
    body = public(job)
    if format is None:
        return body
    if format not in FORMATS:
        raise ApiError(400, "invalid_field", f"format must be one of {sorted(FORMATS)}")
    if job["status"] != "done":
        raise ApiError(409, "not_finished", f"job {job_id} is {job['status']}")
    return _answer(body["result"], format, job["filename"])
