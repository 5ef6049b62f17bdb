"""WebSocket `/v1/vosk` (and `/`): vosk-server's protocol, so Vosk clients work unchanged.

Vosk's server answers every binary frame with exactly one message — `{"partial": ...}`, or
`{"result": [...], "text": ...}` when an utterance ended in it — and `{"eof" : 1}` with the
final result before closing. Here each frame is decoded by the same batching worker as
`/v1/stream`; the reply waits until the worker has caught up with that frame (`sync`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from engine import End, EngineError, Final, Partial
from engine.audio import AudioFormatError, decode_pcm
from engine.events import Failure
from engine.spec import StreamSpec
from engine.stream import EngineStream, Synced
from minutes.types import Word
from server.errors import CLOSE_NORMAL, CLOSE_POLICY, FATAL_CLOSE, error_body
from server.protocol import ProtocolError, parse_hotwords, parse_text
from server.wsbase import Connection, Idle, Outgoing

log = logging.getLogger("minutes.server")
router = APIRouter()
COLLECT_TIMEOUT = 300.0  # s a reply may wait for the decoder before the stream is given up


@router.websocket("/v1/vosk")
@router.websocket("/")
async def vosk_endpoint(ws: WebSocket) -> None:
    conn = Connection(ws, ws.app.state.ctx, "vosk")
    if not await conn.admit():
        return
    session = VoskSession(conn)
    try:
        await session.run()
    except WebSocketDisconnect:
        pass
    except StreamFailed as exc:
        await session.error("internal", str(exc), FATAL_CLOSE["internal"])
    finally:
        session.free()
        conn.release()


class StreamFailed(Exception):
    """The engine gave up on this connection's stream."""


class VoskSession:
    def __init__(self, conn: Connection):
        self.conn, self.cfg, self.engine = conn, conn.ctx.config, conn.ctx.engine
        self.sample_rate = self.cfg.vosk_sample_rate
        self.words = True
        self.max_alternatives = 0
        self.hotwords: tuple[str, ...] = ()
        self.stream: EngineStream | None = None
        self.tokens = itertools.count()
        self.partial = ""
        self.done_words: list[Word] = []  # words of segments closed since the last reply
        self.done_alternatives: tuple = ()  # the last of those segments' n best (minutes.types.Alternative)
        self.seconds = 0.0

    def free(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.engine.notify()

    async def send(self, payload: dict[str, Any] | None, close: int | None = None) -> bool:
        return await self.conn.write(Outgoing(payload, close))

    async def error(self, code: str, message: str, close: int | None = None) -> bool:
        self.conn.ctx.metrics.error(code)
        return await self.send(error_body(code, message, fatal=close is not None), close)

    async def run(self) -> None:
        while True:
            try:
                msg = await self.conn.receive(self.cfg.idle_timeout_seconds)
            except Idle:
                await self.error("idle_timeout", f"no message for {self.cfg.idle_timeout_seconds:g} s", CLOSE_POLICY)
                return
            if msg.get("bytes") is not None:
                if not await self.on_audio(msg["bytes"]):
                    return
            elif msg.get("text") is not None:
                if not await self.on_text(msg["text"]):
                    return

    async def on_text(self, text: str) -> bool:
        try:
            obj = parse_text(text)
        except ProtocolError as exc:
            return await self.error(exc.code, str(exc))
        if "config" in obj:
            try:
                self.configure(obj["config"])
            except ProtocolError as exc:
                return await self.error(exc.code, str(exc))
            return True  # vosk-server sends nothing back for a config
        if "eof" in obj:
            await self.send(await self.finish())
            await self.send(None, CLOSE_NORMAL)
            return False
        if "reset" in obj:
            return await self.send(await self.cut())
        return await self.error("unknown_type", 'expected {"config": ...}, {"eof" : 1}, {"reset" : 1} or audio')

    def configure(self, cfg: Any) -> None:
        if not isinstance(cfg, dict):
            raise ProtocolError("invalid_config", "config must be an object")
        rate = cfg.get("sample_rate", self.sample_rate)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1000 <= rate <= 384000:
            raise ProtocolError("invalid_config", "sample_rate must be a number in 1000..384000")
        if "phrase_list" in cfg:
            phrases = cfg["phrase_list"]  # Vosk's "[unk]" entry (out-of-grammar words) is no phrase
            phrases = [w for w in phrases if w != "[unk]"] if isinstance(phrases, list) else phrases
            self.hotwords = parse_hotwords(phrases, "invalid_config")
        alternatives = cfg.get("max_alternatives", self.max_alternatives) or 0
        if isinstance(alternatives, bool) or not isinstance(alternatives, int) or not 0 <= alternatives <= 10:
            raise ProtocolError("invalid_config", "max_alternatives must be an integer in 0..10")
        self.words = bool(cfg.get("words", self.words))
        self.max_alternatives = alternatives
        if int(round(rate)) != self.sample_rate and self.stream is not None:
            self.free()  # a new rate starts a new recogniser stream, as vosk-server does
            self.stream = None
        self.sample_rate = int(round(rate))

    async def on_audio(self, data: bytes) -> bool:
        if len(data) > self.cfg.max_message_bytes:
            return await self.error("message_too_large", f"{len(data)} bytes is over the limit of {self.cfg.max_message_bytes}")
        try:
            frames = decode_pcm(data, "pcm_s16le", 1)
        except AudioFormatError as exc:
            return await self.error(exc.code, str(exc))
        if self.stream is None:
            spec = StreamSpec(sample_rate=self.sample_rate, hotwords=self.hotwords, partials=True,
                              format="raw", alternatives=self.max_alternatives)  # Vosk's clients expect the recogniser's lower-cased words
            try:
                self.stream = self.engine.open_stream(spec, self.conn.sink)
            except EngineError as exc:
                return await self.error(exc.code, str(exc), FATAL_CLOSE.get(exc.code))
        self.stream.accept(frames)
        self.seconds += len(frames) / self.sample_rate
        if not await self.send(await self.settle(cut=False)):
            return False
        if self.seconds >= self.cfg.max_session_seconds:
            await self.error("session_limit", f"the stream reached {self.cfg.max_session_seconds:g} s", CLOSE_POLICY)
            return False
        return True

    async def settle(self, cut: bool) -> dict[str, Any]:
        """Wait until the worker has decoded everything sent so far; the reply Vosk would give."""
        token = next(self.tokens)
        self.stream.sync(token, cut=cut)
        self.engine.notify()
        await self.collect(lambda ev: isinstance(ev, Synced) and ev.token == token)
        if self.done_words or cut:
            return self.result()
        return {"partial": self.partial.lower()}

    async def cut(self) -> dict[str, Any]:
        if self.stream is None:
            return {"text": ""}
        return await self.settle(cut=True)

    async def finish(self) -> dict[str, Any]:
        if self.stream is None:
            return {"text": ""}
        self.stream.finish("stop")
        self.engine.notify()
        await self.collect(lambda ev: isinstance(ev, End))
        self.stream = None
        return self.result()

    async def collect(self, until) -> None:
        while True:
            try:
                ev = await asyncio.wait_for(self.conn.outbox.get(), COLLECT_TIMEOUT)
            except asyncio.TimeoutError:
                raise StreamFailed(f"the decoder did not answer within {COLLECT_TIMEOUT:g} s") from None
            if isinstance(ev, Partial):
                self.partial = ev.text
            elif isinstance(ev, Final):
                self.done_words.extend(ev.segment.words)
                self.done_alternatives = ev.segment.alternatives
                self.partial = ""
            elif isinstance(ev, Failure):
                raise StreamFailed(ev.message)
            if until(ev):
                return

    @staticmethod
    def vosk_alternatives(words: list[Word], alternatives: tuple) -> list[dict[str, Any]]:
        """Vosk's `alternatives` list: the n best of the last segment closed since the previous
        reply, each after the best words of any earlier segment in the same reply (rare: two
        endpoints inside one audio message). `confidence` is the hypothesis's share of the n-best
        probability, in [0, 1] (Vosk's own is an unnormalised score)."""
        def entry(ws, conf: float) -> dict[str, Any]:
            return {"confidence": round(float(conf), 6), "text": " ".join(w.text.lower() for w in ws),
                    "result": [{"end": round(w.end, 3), "start": round(w.start, 3), "word": w.text.lower()} for w in ws]}
        if not alternatives:
            return [entry(words, 1.0)]
        last = len(alternatives[0].words)
        # the best alternative is the last segment's own words (before any display form): the
        # earlier segments are what precedes it in `words`
        earlier = [w for w in words[: max(0, len(words) - last)]]
        return [entry(earlier + list(a.words), a.confidence) for a in alternatives]

    def result(self) -> dict[str, Any]:
        words, self.done_words = self.done_words, []
        alternatives, self.done_alternatives = self.done_alternatives, ()
        text = " ".join(w.text.lower() for w in words)
        items = [{"conf": round(float(w.conf), 6), "end": round(w.end, 3), "start": round(w.start, 3),
                  "word": w.text.lower()} for w in words]
        if self.max_alternatives > 0:
            return {"alternatives": self.vosk_alternatives(words, alternatives)}
        out: dict[str, Any] = {}
        if self.words and items:
            out["result"] = items
        out["text"] = text
        return out
