"""Corpus manifests: JSONL, one utterance (or recording) a line, as docs/TEAM.md fixes them.

A manifest is how every other package sees a corpus, so the record type is small, typed and
round-trips through `to_dict`/`from_dict` (the lhotse habit). Audio paths are stored relative
to the manifest's folder when the audio lives under it, absolute otherwise (shared real corpora
are referred to in place, never copied). Writers append and flush line by line so that a trainer
can read a corpus while it is still being built.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = ["Record", "read_manifest", "write_manifest", "ManifestWriter", "resolve_audio"]

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Record:
    """One manifest line. Required fields first (TEAM.md), simulation details optional."""

    id: str  # unique within the corpus
    audio: str  # path relative to the manifest's folder, or absolute
    sample_rate: int  # Hz
    channels: int  # channels stored in the file
    duration: float  # seconds
    text: str  # normalised by minutes.text.normalise_text
    speaker: str  # speaker (or TTS pseudo-speaker) identity
    source: str  # e.g. "speechocean762", "tts:flite:kal16"
    split: str  # train | dev | test
    room: dict[str, Any] | None = None  # dims (m), rt60 (s), snr_db, max_order, absorption
    array: str | None = None  # preset name, e.g. "circular-7"
    geometry: list[list[float]] | None = None  # mic [x, y, z] in metres, array centre at origin
    positions: list[list[float]] | None = None  # source position(s) relative to the array centre
    azimuth: float | None = None  # degrees CCW from the array's +x axis, [0, 360)
    extra: dict[str, Any] = field(default_factory=dict)  # recipe-specific (voice params, refs...)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # Optional keys that are unset are left out so the lines stay short and readable.
        return {k: v for k, v in d.items() if v is not None and not (k == "extra" and not v)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Record":
        known = {f.name for f in fields(cls)}
        extra = dict(d.get("extra") or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        kw = {k: v for k, v in d.items() if k in known and k != "extra"}
        return cls(**kw, extra=extra)


def resolve_audio(record: Record, manifest_path: str | os.PathLike[str]) -> Path:
    """Absolute path of a record's audio, given the manifest it was read from."""
    p = Path(record.audio)
    return p if p.is_absolute() else (Path(manifest_path).parent / p).resolve()


def read_manifest(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Yield the records of a JSONL manifest; a torn last line (a writer mid-append) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                yield Record.from_dict(json.loads(line))
            except json.JSONDecodeError:
                continue


def _line(record: Record) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"


def write_manifest(path: str | os.PathLike[str], records: Iterable[Record]) -> int:
    """Write a whole manifest atomically (temp file + rename); returns the record count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(_line(r))
            n += 1
    os.replace(tmp, path)
    return n


class ManifestWriter:
    """Append-only writer, one whole line per write and flushed, for corpora built in shards."""

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a" if append else "w", encoding="utf-8")

    def write(self, record: Record) -> None:
        self._fh.write(_line(record))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
