"""Errors as the protocol writes them: `{"type": "error", "code": ..., "message": ...}`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# WebSocket close codes (RFC 6455 + IANA registry) the server uses; see docs/protocol.md.
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013

# stream error code -> close code for the fatal ones
FATAL_CLOSE = {
    "unauthorized": CLOSE_POLICY,
    "too_many_streams": CLOSE_TRY_LATER,
    "model_unavailable": CLOSE_TRY_LATER,
    "session_limit": CLOSE_POLICY,
    "idle_timeout": CLOSE_POLICY,
    "internal": CLOSE_INTERNAL,
}


def error_body(code: str, message: str, **extra: object) -> dict:
    return {"type": "error", "code": code, "message": message, **extra}


class ApiError(Exception):
    """An HTTP error with a protocol code; the handler below renders it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def install_handlers(app: FastAPI, count_error) -> None:
    """Render every HTTP error in the protocol's shape and count it by code."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        count_error(exc.code)
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        count_error("invalid_field")
        parts = ["/".join(str(p) for p in e.get("loc", ())) + ": " + e.get("msg", "") for e in exc.errors()]
        return JSONResponse(error_body("invalid_field", "; ".join(parts)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "upload_too_large"}.get(exc.status_code, "http_error")
        count_error(code)
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)
