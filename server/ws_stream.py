"""WebSocket `/v1/stream`: the v1 protocol of docs/protocol.md.

One task receives (start, audio, stop), another sends (ready, partial, final, speakers,
tracks, error, end); `finally` frees the stream the moment the client goes.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, WebSocket

from engine import End, EngineError, Partial
from engine.audio import AudioFormatError, decode_pcm
from engine.events import Failure
from engine.spec import StreamSpec
from engine.stream import EngineStream, Synced
from server.errors import CLOSE_NORMAL, CLOSE_POLICY
from server.protocol import AppliedOptions, ArrayInfo, Limits, ModelRef, ProtocolError, Ready, parse_start, parse_text
from server.wsbase import Connection, Idle, Outgoing, run_until_either

log = logging.getLogger("minutes.server")
router = APIRouter()
MAX_BACKLOG_SECONDS = 20.0  # undecoded audio a stream may queue before the server stops reading
STALE_BACKLOG = 50  # queued outgoing messages past which partials are skipped (the client reads slowly)


@router.websocket("/v1/stream")
async def stream_endpoint(ws: WebSocket) -> None:
    conn = Connection(ws, ws.app.state.ctx, "stream")
    if not await conn.admit():
        return
    session = StreamSession(conn)
    try:
        await run_until_either(session.receive_loop(), session.send_loop())
    finally:
        session.free()
        conn.release()


class StreamSession:
    def __init__(self, conn: Connection):
        self.conn = conn
        self.cfg = conn.ctx.config
        self.engine = conn.ctx.engine
        self.spec: StreamSpec | None = None
        self.stream: EngineStream | None = None
        self.stopping = False
        self.close_code = CLOSE_NORMAL
        self.seconds = 0.0

    def free(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.engine.notify()

    # -- receiving ---------------------------------------------------------------------
    async def receive_loop(self) -> None:
        while True:
            try:
                msg = await self.conn.receive(self.cfg.idle_timeout_seconds)
            except Idle:
                if not self.stopping:  # after stop the client waits for us, not the other way round
                    self.limit("idle_timeout", f"no message for {self.cfg.idle_timeout_seconds:g} s")
                continue
            if msg.get("bytes") is not None:
                self.on_audio(msg["bytes"])
                await self.throttle()
            elif msg.get("text") is not None:
                await self.on_text(msg["text"])

    async def on_text(self, text: str) -> None:
        try:
            msg = parse_text(text)
        except ProtocolError as exc:
            return self.conn.error(exc.code, str(exc))
        kind = msg.get("type")
        if kind == "start":
            await self.on_start(msg)
        elif kind == "stop":
            if self.stream is None:
                return self.conn.error("not_started", "stop before a valid start")
            if not self.stopping:
                self.stopping = True
                self.stream.finish("stop")
                self.engine.notify()
        else:
            self.conn.error("unknown_type", f"unknown message type {kind!r}; expected start or stop")

    async def on_start(self, msg: dict) -> None:
        if self.stream is not None:
            return self.conn.error("already_started", "the stream has already started; the start was ignored")
        try:
            spec = parse_start(msg)
            if spec.model is not None and not self.engine.loaded(spec.model):
                stream = await asyncio.to_thread(self.engine.open_stream, spec, self.conn.sink)
            else:
                stream = self.engine.open_stream(spec, self.conn.sink)
        except ProtocolError as exc:
            return self.conn.error(exc.code, str(exc))
        except EngineError as exc:
            return self.conn.error(exc.code, str(exc))
        self.spec, self.stream = spec, stream
        self.conn.send(self.ready_message(spec, stream).to_dict())

    def ready_message(self, spec: StreamSpec, stream: EngineStream) -> Ready:
        model, rec = stream.model, stream.model.recogniser
        warnings = []
        diarisation = stream.diariser is not None
        if spec.diarisation and not diarisation:
            warnings.append(self.engine.diarisation_reason or "diarisation needs an array geometry with 2 or more mics")
        decoding = stream.decoding  # what the recogniser stream was built with
        warnings.extend(decoding.warnings)
        text_format, why = self.engine.text_format(spec)
        if why:
            warnings.append(why)
        return Ready(
            stream.id, ModelRef(model.name, model.manifest.version), spec.sample_rate, rec.sample_rate,
            spec.encoding, spec.channels, None if spec.geometry is None else ArrayInfo(spec.preset, spec.geometry),
            decoding.chunk_seconds,
            AppliedOptions(spec.partials, decoding.hotwords, decoding.hotword_boost, diarisation, model.ref,
                           spec.channel, text_format),
            decoding,
            Limits(self.cfg.max_message_bytes, self.cfg.max_session_seconds, self.cfg.idle_timeout_seconds),
            tuple(warnings),
        )

    def on_audio(self, data: bytes) -> None:
        if self.stream is None:
            return self.conn.error("not_started", "audio before a valid start message")
        if self.stopping:
            return self.conn.error("stopped", "audio after stop was ignored")
        if len(data) > self.cfg.max_message_bytes:
            return self.conn.error("message_too_large", f"{len(data)} bytes is over the limit of {self.cfg.max_message_bytes}")
        try:
            frames = decode_pcm(data, self.spec.encoding, self.spec.channels)
        except AudioFormatError as exc:
            return self.conn.error(exc.code, str(exc))
        self.stream.accept(frames)
        self.engine.notify()
        self.seconds += len(frames) / self.spec.sample_rate
        if self.seconds >= self.cfg.max_session_seconds:
            self.limit("session_limit", f"the stream reached the limit of {self.cfg.max_session_seconds:g} s")

    async def throttle(self) -> None:
        """Stop reading while the decoder is far behind this stream (TCP then slows the client)."""
        while self.stream is not None and not self.stream.closed and self.stream.backlog_seconds > MAX_BACKLOG_SECONDS:
            await asyncio.sleep(0.05)

    def limit(self, code: str, message: str) -> None:
        """A limit ends the stream: error, then the usual flush (final, end), then close 1008."""
        self.conn.error(code, message, fatal=True)
        if self.stream is None:
            return self.conn.send(None, CLOSE_POLICY)
        if not self.stopping:
            self.stopping, self.close_code = True, CLOSE_POLICY
            self.stream.finish(code)
            self.engine.notify()

    # -- sending -------------------------------------------------------------------------
    async def send_loop(self) -> None:
        while True:
            item = await self.conn.outbox.get()
            if isinstance(item, Outgoing):
                if not await self.conn.write(item):
                    return
            elif isinstance(item, Failure):
                self.conn.error(item.code, item.message, fatal=True)
            elif isinstance(item, End):
                summary = item.to_dict()
                log.info("stream %s ended (%s, %.1f s of audio, rtf %.3f)", item.stream_id, item.reason,
                         item.duration, summary["rtf"], extra={"fields": {k: v for k, v in summary.items() if k != "text"}})
                await self.conn.write(Outgoing(summary, self.close_code))
                self.stream = None  # the engine has already dropped it
                return
            elif isinstance(item, Partial) and self.conn.outbox.qsize() > STALE_BACKLOG:
                continue  # a slow reader: newer partials and the final are queued behind this one
            elif not isinstance(item, Synced):
                await self.conn.write(Outgoing(item.to_dict()))
