"""What both WebSocket endpoints share: auth and slot admission, an outbox with one writer,
receiving with an idle timeout, and the bridge from the engine's worker thread."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from server.auth import check_key
from server.context import ServerContext
from server.errors import FATAL_CLOSE, ApiError, error_body

log = logging.getLogger("minutes.server")


@dataclass(frozen=True)
class Outgoing:
    """A message for the client; `close` set: close the socket with that code after it."""

    payload: dict[str, Any] | None
    close: int | None = None


class Idle(Exception):
    """No message arrived within the idle timeout."""


class Connection:
    """One WebSocket with a single writer task: everything sent goes through `outbox`, so the
    engine's events, errors and the close never interleave."""

    def __init__(self, ws: WebSocket, ctx: ServerContext, endpoint: str):
        self.ws, self.ctx, self.endpoint = ws, ctx, endpoint
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.key: str | None = None

    def sink(self, event: object) -> None:
        """Thread-safe: the engine's worker hands events to this connection's loop."""
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, event)

    def send(self, payload: dict[str, Any], close: int | None = None) -> None:
        self.outbox.put_nowait(Outgoing(payload, close))

    def error(self, code: str, message: str, fatal: bool | None = None) -> None:
        fatal = code in FATAL_CLOSE if fatal is None else fatal
        self.ctx.metrics.error(code)
        close = FATAL_CLOSE.get(code) if fatal and code not in ("session_limit", "idle_timeout") else None
        self.send(error_body(code, message, fatal=fatal), close)

    async def admit(self) -> bool:
        """Accept the socket; refuse it (error + close) when unauthorised or over the limits."""
        await self.ws.accept()
        ctx = self.ctx
        try:
            self.key = check_key(ctx.config.api_keys, self.ws.headers, self.ws.query_params)
        except ApiError as exc:
            return await self._refuse("unauthorized", exc.message)
        reason = ctx.slots.try_acquire(self.key)
        if reason is not None:
            return await self._refuse("too_many_streams", reason)
        ctx.metrics.streams.labels(self.endpoint).inc()
        ctx.metrics.active.labels(self.endpoint).inc()
        return True

    async def _refuse(self, code: str, message: str) -> bool:
        self.ctx.metrics.refused.labels(code).inc()
        self.ctx.metrics.error(code)
        await self.ws.send_json(error_body(code, message, fatal=True))
        await self.ws.close(FATAL_CLOSE[code], code)
        return False

    def release(self) -> None:
        self.ctx.slots.release(self.key)
        self.ctx.metrics.active.labels(self.endpoint).dec()

    async def receive(self, timeout: float) -> dict[str, Any]:
        """The next message (`{"text": ...}` or `{"bytes": ...}`); WebSocketDisconnect at the end."""
        try:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
        except asyncio.TimeoutError:
            raise Idle() from None
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(msg.get("code", 1000))
        return msg

    async def write(self, item: Outgoing) -> bool:
        """Send one outgoing item; False once the socket is closed."""
        if self.ws.application_state != WebSocketState.CONNECTED:
            return False
        if item.payload is not None:
            await self.ws.send_json(item.payload)
        if item.close is not None:
            await self.ws.close(item.close)
            return False
        return True


async def run_until_either(receiver, sender) -> None:
    """Run the receive loop and the send loop; when one ends (client gone, or the server
    closed after `end`/a fatal error), cancel the other."""
    tasks = [asyncio.create_task(receiver), asyncio.create_task(sender)]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    for t in pending:
        try:
            await t
        except (asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            pass
    for t in done:
        exc = t.exception()
        if exc is not None and not isinstance(exc, (WebSocketDisconnect, RuntimeError)):
            log.error("websocket task failed", exc_info=exc)
