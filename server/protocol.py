"""Parsing and validating the client's messages on `/v1/stream` (docs/protocol.md)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from compression.store import StoreError, split_ref
from decoding.options import Decoding, SearchRequest
from minutes.arrays import PRESETS, GeometryError, resolve_array
from engine.audio import ENCODINGS
from engine.spec import StreamSpec

MAX_TEXT_BYTES = 64 * 1024
START_FIELDS = {"type", "sample_rate", "encoding", "channels", "array", "options"}
OPTION_FIELDS = {"partials", "hotwords", "hotword_boost", "diarisation", "model", "channel", "format", "search",
                 "chunk_seconds", "alternatives", "word_times"}
MAX_ALTERNATIVES = 10  # each is a beam hypothesis: the beam widens to hold them
MAX_CHUNK_SECONDS = 10.0  # the recogniser rounds to a multiple of its chunk (at most 8 of them)
TEXT_FORMATS = ("display", "raw")  # cased and punctuated words | the recogniser's normalised tokens
WORD_TIMES = ("aligned", "emission")  # finals' word times: forced alignment | the search's emission frames
# Hotword limits (docs/protocol.md): the trie and the per-frame bonus rows grow with them, so a
# client cannot make one stream's search arbitrarily slow for everyone on its batch.
MAX_HOTWORDS, MAX_HOTWORD_CHARS, MAX_HOTWORD_BOOST = 100, 100, 10.0
HOTWORD_ERROR = "invalid_hotwords"
# `options.search` limits: the beam multiplies the joiner calls per frame for the whole batch.
MAX_BEAM, MAX_FUSION_WEIGHT, MAX_OOV_PENALTY = 16, 2.0, 20.0
SEARCH_ERROR = "invalid_search"
SEARCH_FIELDS = {"beam", "lm_weight", "ilm_weight", "oov_penalty"}


class ProtocolError(ValueError):
    """A client message the server refuses; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def parse_text(text: str | bytes) -> dict[str, Any]:
    """A text frame → its JSON object (`bad_json`, `message_too_large` otherwise)."""
    if len(text) > MAX_TEXT_BYTES:
        raise ProtocolError("message_too_large", f"text messages are limited to {MAX_TEXT_BYTES} bytes")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "a message must be a JSON object")
    return obj


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ProtocolError("invalid_start", f"{name} must be an integer")
    if not lo <= int(value) <= hi:
        raise ProtocolError("invalid_start", f"{name} must be in {lo}..{hi}")
    return int(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError("invalid_start", f"{name} must be true or false")
    return value


def parse_hotwords(value: Any, code: str = HOTWORD_ERROR) -> tuple[str, ...]:
    """A list of words/phrases → the distinct normalised phrases, in order; `ProtocolError(code)`
    naming the offending entry when the list or one of its entries is not acceptable."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ProtocolError(code, f"hotwords must be a list of strings, got {type(value).__name__}")
    if len(value) > MAX_HOTWORDS:
        raise ProtocolError(code, f"hotwords: {len(value)} given, at most {MAX_HOTWORDS} are allowed")
    out: list[str] = []
    for i, w in enumerate(value):
        if not isinstance(w, str):
            raise ProtocolError(code, f"hotwords[{i}] must be a string, got {type(w).__name__}")
        if not w.strip():
            raise ProtocolError(code, f"hotwords[{i}] is empty")
        if len(w) > MAX_HOTWORD_CHARS:
            raise ProtocolError(code, f"hotwords[{i}] is {len(w)} characters long, at most {MAX_HOTWORD_CHARS} are allowed")
        norm = _normalise(w)
        if not norm:
            raise ProtocolError(code, f"hotwords[{i}] ({w[:40]!r}) has no letters or digits")
        if norm not in out:
            out.append(norm)
    return tuple(out)


def parse_boost(value: Any, code: str = HOTWORD_ERROR) -> float | None:
    """`hotword_boost`: the log-score bonus per matched token, in (0, MAX_HOTWORD_BOOST]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= MAX_HOTWORD_BOOST:
        raise ProtocolError(code, f"hotword_boost must be a number in (0, {MAX_HOTWORD_BOOST:g}]")
    return float(value)


def parse_search(value: Any, code: str = SEARCH_ERROR) -> SearchRequest | None:
    """`options.search`: "greedy", "beam", or {"beam": k, "lm_weight": λ_T, "ilm_weight": λ_I,
    "oov_penalty": p} (every key optional; an object means the beam search). None when absent."""
    if value is None:
        return None
    if value in ("greedy", "beam"):
        return SearchRequest(search=value)
    if not isinstance(value, dict):
        raise ProtocolError(code, 'search must be "greedy", "beam" or an object {"beam": k, "lm_weight": x, "ilm_weight": y}')
    unknown = set(value) - SEARCH_FIELDS
    if unknown:
        raise ProtocolError(code, f"search: unknown key(s) {sorted(unknown)}; allowed: {sorted(SEARCH_FIELDS)}")
    beam = value.get("beam")
    if beam is not None and (isinstance(beam, bool) or not isinstance(beam, int) or not 1 <= beam <= MAX_BEAM):
        raise ProtocolError(code, f"search.beam must be an integer in 1..{MAX_BEAM}")
    weights = {}
    for name, hi in (("lm_weight", MAX_FUSION_WEIGHT), ("ilm_weight", MAX_FUSION_WEIGHT), ("oov_penalty", MAX_OOV_PENALTY)):
        w = value.get(name)
        if w is None:
            continue
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 <= w <= hi:
            raise ProtocolError(code, f"search.{name} must be a number in [0, {hi:g}]")
        weights[name] = float(w)
    return SearchRequest(search="beam", beam_size=beam, **weights)


def parse_chunk_seconds(value: Any, code: str = "invalid_start", field: str = "options.chunk_seconds") -> float | None:
    """Audio per encoder step, in (0, MAX_CHUNK_SECONDS]; the model rounds it to a multiple of
    its own chunk and says so in `ready`'s warnings. None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= MAX_CHUNK_SECONDS:
        raise ProtocolError(code, f"{field} must be a number of seconds in (0, {MAX_CHUNK_SECONDS:g}]")
    return float(value)


def _normalise(text: str) -> str:
    """Hotwords in the model's normalised text (upper case, numbers as words)."""
    try:
        from minutes.text import normalise_text

        return normalise_text(text)
    except ImportError:
        return " ".join(text.upper().split())


def parse_channel(value: Any, channels: int, code: str = "invalid_start") -> str | int:
    if value == "mean":
        return "mean"
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < channels:
        raise ProtocolError(code, f'channel must be "mean" or an index in 0..{channels - 1}')
    return value


def parse_text_format(value: Any, code: str = "invalid_start", field: str = "options.format") -> str:
    if value not in TEXT_FORMATS:
        raise ProtocolError(code, f"{field} must be one of {list(TEXT_FORMATS)}")
    return value


def parse_word_times(value: Any, code: str = "invalid_start", field: str = "options.word_times") -> str:
    if value not in WORD_TIMES:
        raise ProtocolError(code, f"{field} must be one of {list(WORD_TIMES)}")
    return value


def parse_model(value: Any, code: str, field: str) -> str:
    """A model reference, `name` or `name/version` (e.g. `default/5`), checked for its shape
    only; whether the store has it is the engine's `unknown_model`."""
    try:
        split_ref(value)
    except StoreError as exc:
        raise ProtocolError(code, f"{field}: {exc}") from None
    return value


def parse_start(msg: dict[str, Any]) -> StreamSpec:
    """A `start` message → `StreamSpec`, or `ProtocolError("invalid_start", ...)` naming the field
    (`invalid_hotwords` for the hotword options)."""
    unknown = set(msg) - START_FIELDS
    if unknown:
        raise ProtocolError("invalid_start", f"unknown field(s) {sorted(unknown)}")
    if "sample_rate" not in msg:
        raise ProtocolError("invalid_start", "sample_rate is required")
    rate = _int(msg["sample_rate"], "sample_rate", 1000, 384000)
    encoding = msg.get("encoding", "pcm_s16le")
    if encoding not in ENCODINGS:
        raise ProtocolError("invalid_start", f"encoding must be one of {sorted(ENCODINGS)}")
    array = msg.get("array")
    channels = msg.get("channels")
    if channels is None:
        channels = len(PRESETS[array]) if isinstance(array, str) and array in PRESETS else 1
    channels = _int(channels, "channels", 1, 64)
    try:
        preset, geometry = resolve_array(array, channels)
    except GeometryError as exc:
        raise ProtocolError("invalid_start", f"array: {exc}") from None
    options = msg.get("options", {})
    if not isinstance(options, dict):
        raise ProtocolError("invalid_start", "options must be an object")
    unknown = set(options) - OPTION_FIELDS
    if unknown:
        raise ProtocolError("invalid_start", f"unknown option(s) {sorted(unknown)}")
    model = options.get("model")
    if model is not None:
        model = parse_model(model, "invalid_start", "options.model")
    multi_mic = geometry is not None and len(geometry) >= 2
    return StreamSpec(
        sample_rate=rate,
        encoding=encoding,
        channels=channels,
        preset=preset,
        geometry=None if geometry is None else tuple(tuple(float(v) for v in row) for row in geometry),
        partials=_bool(options.get("partials", True), "options.partials"),
        hotwords=parse_hotwords(options.get("hotwords", [])),
        hotword_boost=parse_boost(options.get("hotword_boost")),
        diarisation=_bool(options.get("diarisation", multi_mic), "options.diarisation"),
        model=model,
        channel=parse_channel(options.get("channel", "mean"), channels),
        format=parse_text_format(options.get("format", "display")),
        search=parse_search(options.get("search")),
        chunk_seconds=parse_chunk_seconds(options.get("chunk_seconds")),
        alternatives=_int(options.get("alternatives", 0), "options.alternatives", 0, MAX_ALTERNATIVES),
        word_times=None if options.get("word_times") is None else parse_word_times(options["word_times"]),
    )


# -- the server's answer to `start` (docs/protocol.md), typed until it is sent -------------------
@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str


@dataclass(frozen=True)
class ArrayInfo:
    preset: str | None
    geometry: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class AppliedOptions:
    """The start message's options as the server will apply them (a model may not use them all)."""

    partials: bool
    hotwords: tuple[str, ...]
    hotword_boost: float | None
    diarisation: bool
    model: str  # `name/version`: exactly the artefact that decodes this stream
    channel: str | int
    format: str


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int
    max_session_seconds: float
    idle_timeout_seconds: float


@dataclass(frozen=True)
class Ready:
    """`ready`: what the server will actually do with this stream, and why anything asked for
    is not done (`warnings`)."""

    stream_id: str
    model: ModelRef
    sample_rate: int  # of the audio the client sends
    model_sample_rate: int  # what the recogniser hears (resampled when different)
    encoding: str
    channels: int
    array: ArrayInfo | None
    chunk_seconds: float
    options: AppliedOptions
    decoding: Decoding
    limits: Limits
    warnings: tuple[str, ...] = ()
    protocol: str = "v1"

    @property
    def resampled(self) -> bool:
        return self.sample_rate != self.model_sample_rate

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "type": "ready", "protocol": self.protocol, "stream_id": self.stream_id,
            "model": {"name": self.model.name, "version": self.model.version},
            "sample_rate": self.sample_rate, "model_sample_rate": self.model_sample_rate,
            "resampled": self.resampled, "encoding": self.encoding, "channels": self.channels,
            "array": None if self.array is None else {"preset": self.array.preset,
                                                      "geometry": [list(g) for g in self.array.geometry]},
            "chunk_seconds": self.chunk_seconds,
            "options": {"partials": o.partials, "hotwords": list(o.hotwords), "hotword_boost": o.hotword_boost,
                        "diarisation": o.diarisation, "model": o.model, "channel": o.channel, "format": o.format},
            "decoding": self.decoding.to_dict(),
            "limits": {"max_message_bytes": self.limits.max_message_bytes,
                       "max_session_seconds": self.limits.max_session_seconds,
                       "idle_timeout_seconds": self.limits.idle_timeout_seconds},
            "warnings": list(self.warnings),
        }
