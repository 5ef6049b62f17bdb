"""Files through the engine: the form fields of /v1/transcriptions and /v1/jobs, and running
one file as a stream on the batching worker (read lazily, so long files keep memory flat)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, Callable

import soundfile as sf

from engine import End, EngineError, Final, SpeakerEvent
from engine.events import Failure
from decoding.options import SearchRequest
from engine.spec import StreamSpec
from minutes.arrays import GeometryError, resolve_array
from minutes.transcript import Transcript, turns_from_words
from minutes.types import Segment
from server.context import ServerContext
from server.errors import ApiError
from server.formats import FORMATS
from server.protocol import (HOTWORD_ERROR, SEARCH_ERROR, ProtocolError, parse_boost, parse_channel, parse_hotwords, parse_model,
                             parse_text_format, parse_search, parse_chunk_seconds)

BLOCK_SECONDS = 1.0


@dataclass(frozen=True)
class FileParams:
    """The optional form fields, validated (stored as JSON with a job)."""

    array: Any = None  # preset name or list of [x, y, z]
    format: str = "json"
    diarisation: bool | None = None
    hotwords: tuple[str, ...] = ()
    model: str | None = None  # `name` or `name/version`; None: the server's model
    channel: str | int = "mean"
    hotword_boost: float | None = None  # None: the model's default
    text: str = "display"  # the words as people read them | "raw": the recogniser's tokens
    search: dict | None = None  # SearchRequest's fields (None: the model's default search)
    chunk_seconds: float | None = None  # audio per encoder step (None: the model's batch chunk)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "FileParams":
        d = json.loads(text)
        d["hotwords"] = tuple(d.get("hotwords", ()))
        return cls(**d)


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_field", message)


def _form_field(raw: str, json_opener: str, plain: Callable[[str], Any], parse: Callable[[Any], Any],
                code: str, not_json: str) -> Any:
    """A form field that is JSON when it starts with `json_opener` and plain text otherwise
    (`plain` turns it into the value), checked by the stream protocol's own `parse`, so a REST
    call and a `start` message refuse the same values with the same codes."""
    text = raw.strip()
    try:
        value = json.loads(text) if text.startswith(json_opener) else plain(text)
    except ValueError:
        raise ApiError(400, code, not_json) from None
    try:
        return parse(value)
    except ProtocolError as exc:
        raise ApiError(400, exc.code, str(exc)) from None


def parse_form(array: str | None, format: str | None, diarisation: str | None, hotwords: str | None,
               model: str | None, channel: str | None, hotword_boost: str | None = None,
               text: str | None = None, search: str | None = None, chunk_seconds: str | None = None) -> FileParams:
    """The form fields, checked. `format` is the answer's file format (json, srt, ...); `text` is
    the words' form, as a stream's `options.format`: "display" (cased, punctuated) or "raw"."""
    try:  # first: `text` is reused below for the other fields' strings
        text_format = parse_text_format((text or "display").strip().lower(), "invalid_field", "text")
    except ProtocolError as exc:
        raise _invalid(str(exc)) from None
    fmt = (format or "json").strip().lower()
    if fmt not in FORMATS:
        raise _invalid(f"format must be one of {sorted(FORMATS)}")
    arr: Any = None
    if array:
        text = array.strip()
        if text.startswith("["):
            try:
                arr = json.loads(text)
            except ValueError:
                raise _invalid("array: not a JSON list of [x, y, z]") from None
        else:
            arr = text
        try:
            resolve_array(arr, None)
        except GeometryError as exc:
            raise _invalid(f"array: {exc}") from None
    diar = None
    if diarisation not in (None, ""):
        d = diarisation.strip().lower()
        if d not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise _invalid("diarisation must be true or false")
        diar = d in ("true", "1", "yes", "on")
    words: tuple[str, ...] = ()
    if hotwords:
        words = _form_field(hotwords, "[", lambda t: [w for w in t.split(",") if w.strip()], parse_hotwords,
                            HOTWORD_ERROR, "hotwords: not a JSON list of strings")
    boost = None
    if hotword_boost not in (None, ""):
        try:
            boost = parse_boost(float(hotword_boost))
        except (ValueError, ProtocolError):
            raise ApiError(400, HOTWORD_ERROR, "hotword_boost must be a number in (0, 10]") from None
    chan: str | int = "mean"
    if channel not in (None, "", "mean"):
        if not channel.strip().isdigit():
            raise _invalid('channel must be "mean" or a channel index')
        chan = int(channel)
    ref = None
    if model not in (None, ""):
        try:
            ref = parse_model(model.strip(), "invalid_field", "model")
        except ProtocolError as exc:
            raise _invalid(str(exc)) from None
    req = None
    if search not in (None, ""):
        req = _form_field(search, "{", str.lower, parse_search, SEARCH_ERROR, "search: not a JSON object")
    chunk = None
    if chunk_seconds not in (None, ""):
        try:
            chunk = parse_chunk_seconds(float(chunk_seconds), "invalid_field", "chunk_seconds")
        except ValueError as exc:  # ProtocolError is one
            raise _invalid(str(exc) if isinstance(exc, ProtocolError) else "chunk_seconds must be a number") from None
    return FileParams(arr, fmt, diar, words, ref, chan, boost, text_format, None if req is None else asdict(req), chunk)


def file_spec(info: sf._SoundFileInfo, params: FileParams) -> StreamSpec:
    try:
        preset, geometry = resolve_array(params.array, info.channels)
    except GeometryError as exc:
        raise _invalid(f"array: {exc}") from None
    try:
        channel = parse_channel(params.channel, info.channels, "invalid_field")
    except ProtocolError as exc:
        raise _invalid(str(exc)) from None
    multi = geometry is not None and len(geometry) >= 2
    return StreamSpec(
        sample_rate=int(info.samplerate), encoding="pcm_f32le", channels=int(info.channels), preset=preset,
        geometry=None if geometry is None else tuple(tuple(float(v) for v in g) for g in geometry),
        partials=False, hotwords=params.hotwords, hotword_boost=params.hotword_boost,
        diarisation=multi if params.diarisation is None else params.diarisation,
        model=params.model, channel=channel, format=params.text,
        search=None if params.search is None else SearchRequest(**params.search),
        chunk_seconds=params.chunk_seconds, file=True,
    )


def audio_info(fh: BinaryIO) -> sf._SoundFileInfo:
    try:
        fh.seek(0)
        info = sf.info(fh)
        fh.seek(0)
    except Exception as exc:  # libsndfile says why in its own words
        raise ApiError(400, "invalid_audio", f"cannot read the audio: {exc}") from None
    if info.frames <= 0 or info.samplerate < 1000:
        raise ApiError(400, "invalid_audio", "the file holds no audio")
    return info


def _blocks(fh: BinaryIO, info: sf._SoundFileInfo):
    fh.seek(0)
    size = max(1, int(info.samplerate * BLOCK_SECONDS))
    yield from sf.blocks(fh, blocksize=size, dtype="float32", always_2d=True)


async def transcribe(ctx: ServerContext, fh: BinaryIO, params: FileParams) -> dict[str, Any]:
    """Run one file through the engine; the JSON result of docs/protocol.md."""
    info = audio_info(fh)
    spec = file_spec(info, params)
    engine = ctx.engine
    queue: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def sink(ev: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ev)

    t0 = time.perf_counter()
    try:
        stream = await asyncio.to_thread(engine.transcribe_source, spec, _blocks(fh, info), sink)
    except EngineError as exc:
        raise ApiError(404 if exc.code == "unknown_model" else 503, exc.code, str(exc)) from None
    segments: list[Segment] = []
    try:
        while True:
            ev = await queue.get()
            if isinstance(ev, Final):
                segments.append(ev.segment)
            elif isinstance(ev, Failure):
                raise ApiError(500, "internal", ev.message)
            elif isinstance(ev, End):
                end = ev
                break
            elif isinstance(ev, SpeakerEvent):
                continue
    finally:
        stream.close()
    # The diariser's turns when it kept them; otherwise the words' labels (minutes.transcript's rule).
    turns = tuple(end.turns or ()) or tuple(turns_from_words(w for s in segments for w in s.words))
    transcript = Transcript(tuple(segments), turns, round(end.duration, 3))
    out = transcript.to_dict()
    out["model"] = {"name": stream.model.name, "version": stream.model.manifest.version}
    out["decoding"] = stream.decoding.to_dict()
    text_format, why = engine.text_format(spec)
    out["text_format"] = text_format
    warnings = list(stream.decoding.warnings) + ([why] if why else [])
    if warnings:
        out["warnings"] = warnings
    out["processing_seconds"] = round(end.processing_seconds, 4)
    out["rtf"] = round(end.processing_seconds / end.duration, 4) if end.duration else 0.0
    out["wall_seconds"] = round(time.perf_counter() - t0, 3)
    return out

