"""Async streaming client for the v1 WebSocket protocol (docs/protocol.md).

    client = StreamingClient(ClientConfig(url="ws://127.0.0.1:8000/v1/stream", speed=1.0))
    async for event in client.stream(FileSource(Path("meeting.flac")), StartOptions(array="circular-7")):
        ...  # Ready, Partial, Final, Speakers, Tracks, ServerError, End (clients.events)

Pacing: `speed` 1.0 sends audio in real time (what a microphone would do, so partial latency
means something), 2.0 twice as fast, 0 as fast as the socket takes it. A live source (the
microphone) paces itself.

Reconnects: when the connection fails (refused, dropped, 1011/1012/1013 closes, 5xx at the
handshake) the client waits with exponential backoff and jitter, opens a new stream and
re-sends the audio since the last `final` (kept in a bounded buffer), so the open segment is
decoded again rather than lost. The new stream counts time and segment ids from zero; the
client shifts them so its caller sees one continuous stream. Usage errors (401, invalid
`start`, unknown model) are not retried: they raise `ClientError` with the server's message.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from clients.audio import ENCODINGS, AudioSource, encode
from clients.events import End, Event, Final, Partial, Ready, ServerError, parse_event, shift_event

log = logging.getLogger(__name__)

# Close codes and error codes worth a new connection: the server restarted or was busy.
RETRY_CLOSE_CODES = {1001, 1006, 1011, 1012, 1013, 1014}
RETRY_ERROR_CODES = {"too_many_streams", "model_unavailable", "internal"}


class ClientError(RuntimeError):
    """A failure to report to the user as one line (no traceback): `code` says which kind."""

    def __init__(self, message: str, code: str = "client") -> None:
        super().__init__(message)
        self.code = code


class _Retry(Exception):
    """Internal: this connection failed in a way a new connection may fix."""


@dataclass(frozen=True)
class StartOptions:
    """The `start` message's choices; None leaves the server's default."""

    array: str | list[list[float]] | None = None  # preset name or mic [x, y, z] list (metres)
    encoding: str = "pcm_s16le"
    partials: bool = True
    hotwords: tuple[str, ...] = ()
    diarisation: bool | None = None
    model: str | None = None
    channel: str | int | None = None  # "mean" or a channel index

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}")

    def message(self, sample_rate: int, channels: int) -> dict[str, Any]:
        opts: dict[str, Any] = {"partials": self.partials}
        if self.hotwords:
            opts["hotwords"] = list(self.hotwords)
        for key in ("diarisation", "model", "channel"):
            if getattr(self, key) is not None:
                opts[key] = getattr(self, key)
        msg: dict[str, Any] = {
            "type": "start", "sample_rate": int(sample_rate), "encoding": self.encoding,
            "channels": int(channels), "options": opts,
        }
        if self.array is not None:
            msg["array"] = self.array
        return msg


@dataclass(frozen=True)
class ClientConfig:
    """Where to connect and how to send."""

    url: str = "ws://127.0.0.1:8000/v1/stream"  # http(s):// and a bare host:port are accepted too
    api_key: str | None = None
    speed: float = 1.0  # 1.0 real time, 0 as fast as possible
    block_seconds: float = 0.1  # audio per binary message (protocol: 20-200 ms is a good size)
    retries: int = 5  # reconnect attempts after a failure; 0 disables reconnecting
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    backoff_max: float = 8.0
    open_timeout: float = 10.0
    end_timeout: float = 300.0  # after `stop`, how long to wait for `end`
    replay_seconds: float = 60.0  # audio kept for re-sending after a reconnect

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ValueError("speed must be >= 0 (0: as fast as possible)")
        if not 0.005 <= self.block_seconds <= 1.0:
            raise ValueError("block_seconds must be in [0.005, 1]")


def stream_url(url: str) -> str:
    """Normalise what a user types into a ws(s) URL of the stream endpoint."""
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ClientError(f"not a WebSocket URL: {url}", "bad_url")
    path = parts.path if parts.path not in ("", "/") else "/v1/stream"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


@dataclass
class StreamStats:
    """What the client measured: reconnects, latency of partials/finals, the server's RTF."""

    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    reconnects: int = 0  # new streams opened after a failure
    retries: int = 0  # failed attempts (connect or stream) that were retried
    partial_latency: list[float] = field(default_factory=list)  # s from sending audio to its partial
    final_latency: list[float] = field(default_factory=list)  # s from sending a segment's end to its final
    server_rtf: float | None = None
    processing_seconds: float | None = None

    def summary(self) -> dict[str, Any]:
        def q(xs: list[float], p: float) -> float | None:
            return round(float(np.quantile(xs, p)), 3) if xs else None

        return {
            "audio_seconds": round(self.audio_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "reconnects": self.reconnects,
            "retries": self.retries,
            "partial_latency_median": round(statistics.median(self.partial_latency), 3) if self.partial_latency else None,
            "partial_latency_p90": q(self.partial_latency, 0.9),
            "final_latency_median": round(statistics.median(self.final_latency), 3) if self.final_latency else None,
            "server_rtf": self.server_rtf,
            "processing_seconds": self.processing_seconds,
        }


class _SendClock:
    """Wall time at which each stretch of audio was sent, to turn event times into latency."""

    def __init__(self) -> None:
        self.audio: list[float] = []  # absolute audio time at the end of each sent block
        self.wall: list[float] = []

    def sent(self, audio_end: float) -> None:
        self.audio.append(audio_end)
        self.wall.append(time.monotonic())

    def latency(self, audio_time: float) -> float | None:
        i = bisect.bisect_left(self.audio, audio_time - 1e-6)
        return None if i >= len(self.audio) else time.monotonic() - self.wall[i]


class StreamingClient:
    """One client; `stream` runs one stream (with reconnects) and yields its events."""

    def __init__(self, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        self.url = stream_url(self.config.url)
        self.stats = StreamStats()

    # -- the public generator -------------------------------------------------------------
    async def stream(self, source: AudioSource, options: StartOptions | None = None) -> AsyncIterator[Event]:
        """Send `source`, yield typed events until `End`. Raises `ClientError` on failures."""
        options = options or StartOptions()
        self.stats = StreamStats()
        start = options.message(source.sample_rate, source.channels)
        run = _Run(source, self.config, self.stats, options.encoding)
        attempt = 0
        connected = False
        t0 = time.monotonic()
        try:
            while True:
                try:
                    async for event in self._connection(run, start):
                        if isinstance(event, Ready):
                            attempt = 0
                            self.stats.reconnects += int(connected)
                            connected = True
                        yield event
                        if isinstance(event, End):
                            return
                    return
                except _Retry as exc:
                    attempt += 1
                    if attempt > self.config.retries:
                        raise ClientError(f"gave up after {attempt} attempts: {exc}", "unreachable") from None
                    wait = min(self.config.backoff_max, self.config.backoff * 2 ** (attempt - 1))
                    wait *= random.uniform(0.8, 1.2)
                    log.warning("connection to %s failed (%s); retrying in %.1f s", self.url, exc, wait)
                    self.stats.retries += 1
                    run.rebase()
                    await asyncio.sleep(wait)
        finally:
            self.stats.wall_seconds = time.monotonic() - t0
            await run.close()

    # -- one connection -----------------------------------------------------------------
    async def _connection(self, run: "_Run", start: dict[str, Any]) -> AsyncIterator[Event]:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else None
        try:
            ws = await connect(
                self.url, additional_headers=headers, open_timeout=self.config.open_timeout,
                max_size=16 * 2**20, ping_interval=20, ping_timeout=60,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status >= 500 or status == 429:
                raise _Retry(f"HTTP {status} at the handshake") from None
            raise ClientError(f"{self.url}: the server refused the WebSocket (HTTP {status}{_body(exc)})", "refused") from None
        except InvalidURI as exc:
            raise ClientError(str(exc), "bad_url") from None
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        sender: asyncio.Task | None = None
        try:
            await ws.send(json.dumps(start))
            ready = await self._await_ready(ws)
            yield ready
            sender = asyncio.create_task(run.send(ws))
            # A source that fails (no microphone, unreadable file) must end the receive loop too.
            sender.add_done_callback(lambda t: _source_failure(t) is None or asyncio.ensure_future(ws.close()))
            async for event in self._receive(ws, run, sender):
                yield event
                if isinstance(event, End):
                    return
            failure = _source_failure(sender)
            if failure is not None:
                raise failure  # the source failed: its own message
            raise _Retry("the server closed the stream before `end`")
        except ConnectionClosed as exc:
            failure = _source_failure(sender)
            if failure is not None:
                raise failure from None
            code = exc.rcvd.code if exc.rcvd else 1006
            if code in RETRY_CLOSE_CODES:
                raise _Retry(f"connection closed ({code} {exc.rcvd.reason if exc.rcvd else 'abnormal'})") from None
            raise ClientError(f"the server closed the stream ({code} {exc.rcvd.reason if exc.rcvd else ''})", "closed") from None
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            await ws.close()

    async def _await_ready(self, ws: ClientConnection) -> Ready:
        while True:
            raw = await asyncio.wait_for(ws.recv(), self.config.open_timeout)
            event = parse_event(json.loads(raw))
            if isinstance(event, Ready):
                return event
            if isinstance(event, ServerError):
                if event.code in RETRY_ERROR_CODES:
                    raise _Retry(f"{event.code}: {event.message}")
                raise ClientError(f"the server refused the stream: {event.code}: {event.message}", event.code)

    async def _receive(self, ws: ClientConnection, run: "_Run", sender: asyncio.Task) -> AsyncIterator[Event]:
        while True:
            timeout = self.config.end_timeout if run.stopped else None
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except asyncio.TimeoutError:
                raise ClientError(f"no `end` within {self.config.end_timeout:.0f} s of `stop`", "timeout") from None
            if isinstance(raw, bytes):
                continue  # the protocol sends none; ignore rather than die
            event = shift_event(parse_event(json.loads(raw)), run.offset, run.segment_offset)
            run.observe(event)
            if isinstance(event, ServerError) and event.fatal:
                if event.code in RETRY_ERROR_CODES:
                    raise _Retry(f"{event.code}: {event.message}")
                if event.code not in ("session_limit", "idle_timeout"):  # those still flush + end
                    raise ClientError(f"{event.code}: {event.message}", event.code)
            yield event


def _source_failure(sender: asyncio.Task | None) -> BaseException | None:
    """The sender's own failure (the audio source's), not a closed socket's echo."""
    if sender is None or not sender.done() or sender.cancelled():
        return None
    exc = sender.exception()
    return None if exc is None or isinstance(exc, (ConnectionClosed, OSError)) else exc


def _body(exc: InvalidStatus) -> str:
    try:
        return ": " + json.loads(exc.response.body)["message"]
    except Exception:
        return ""


class _Run:
    """The state of one logical stream across connections: where the audio is, what to replay."""

    def __init__(self, source: AudioSource, config: ClientConfig, stats: StreamStats, encoding: str) -> None:
        self.source = source
        self.encoding = encoding
        self.config = config
        self.stats = stats
        self.blocks = source.blocks(config.block_seconds).__aiter__()
        self.sent_until = 0.0  # absolute seconds of audio taken from the source
        self.offset = 0.0  # absolute time of this connection's t = 0
        self.segment_offset = 0
        self.next_segment = 0  # one past the highest segment id seen
        self.last_final_end = 0.0
        self.replay: deque[tuple[float, np.ndarray]] = deque()  # (absolute start, block)
        self.clock = _SendClock()
        self.stopped = False
        self.exhausted = False
        self.live = bool(getattr(source, "live", False))  # a microphone paces itself

    def rebase(self) -> None:
        """Before a new connection: resume from the first kept block after the last final."""
        rate = self.source.sample_rate
        while self.replay and self.replay[0][0] + len(self.replay[0][1]) / rate <= self.last_final_end:
            self.replay.popleft()
        if self.replay and self.replay[0][0] < self.last_final_end:
            # cut the first block at the last final's end: audio the server already turned into a
            # final is not heard twice (its tail word would come back as a duplicate, earlier in time)
            t0, block = self.replay[0]
            skip = min(len(block), int(round((self.last_final_end - t0) * rate)))
            self.replay[0] = (t0 + skip / rate, block[skip:])
        self.offset = self.replay[0][0] if self.replay else self.sent_until
        self.segment_offset = self.next_segment
        self.stopped = False
        self.clock = _SendClock()

    def observe(self, event: Event) -> None:
        if isinstance(event, Partial):
            self.next_segment = max(self.next_segment, event.segment + 1)
            lat = self.clock.latency(event.end)
            if lat is not None:
                self.stats.partial_latency.append(lat)
        elif isinstance(event, Final):
            seg = event.segment
            self.next_segment = max(self.next_segment, seg.id + 1)
            # replay after a reconnect from the endpoint's cut (servers before `closed_until`:
            # the last word's end)
            self.last_final_end = max(self.last_final_end, seg.closed_until if seg.closed_until is not None else seg.end)
            lat = self.clock.latency(seg.end)
            if lat is not None:
                self.stats.final_latency.append(lat)
        elif isinstance(event, End):
            self.stats.server_rtf = event.rtf
            self.stats.processing_seconds = event.processing_seconds

    async def send(self, ws: ClientConnection) -> None:
        """Replay what the last connection may have lost, then the source; then `stop`."""
        rate = self.source.sample_rate
        for t0, block in list(self.replay):
            await ws.send(encode(block, self.encoding))
            self.clock.sent(t0 + len(block) / rate)
        wall0 = time.monotonic() - (self.sent_until - self.offset) / self.config.speed if self.config.speed else 0.0
        while not self.exhausted:
            try:
                block = await self.blocks.__anext__()
            except StopAsyncIteration:
                self.exhausted = True
                break
            t0 = self.sent_until
            self.sent_until += len(block) / rate
            self.replay.append((t0, block))
            self._trim_replay()
            if self.config.speed and not self.live:
                delay = wall0 + (t0 - self.offset) / self.config.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(encode(block, self.encoding))
            self.clock.sent(self.sent_until)
            self.stats.audio_seconds = self.sent_until
        self.stopped = True
        await ws.send(json.dumps({"type": "stop"}))

    def _trim_replay(self) -> None:
        rate = self.source.sample_rate
        while self.replay and (
            self.replay[0][0] + len(self.replay[0][1]) / rate <= self.last_final_end
            or self.sent_until - self.replay[0][0] > self.config.replay_seconds
        ):
            self.replay.popleft()

    async def close(self) -> None:
        aclose = getattr(self.blocks, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing a finished generator
                pass
