"""Readers for real speech corpora: speechocean762, any Kaldi-style folder, LibriSpeech.

All three yield the same `Utterance` so one recipe runs over whichever corpus a user points it
at. Audio is referred to in place (absolute paths), never copied. Dev splits hold out whole
speakers, chosen by a hash of the speaker id, so the choice is stable across runs, machines
and corpus growth.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import soundfile as sf

from corpus.manifest import Record
from corpus.text import normalise_text

__all__ = [
    "Utterance", "read_kaldi_dir", "read_speechocean762", "read_librispeech", "read_corpus",
    "split_speakers", "to_records", "default_speechocean_dir",
]


@dataclass(frozen=True)
class Utterance:
    """One real utterance: where its audio is and what was said, by whom."""

    id: str
    audio: str  # absolute path
    text: str  # normalised
    speaker: str
    duration: float  # seconds
    sample_rate: int
    channels: int = 1
    meta: dict[str, str] = field(default_factory=dict)  # gender, age... where the corpus says


def default_speechocean_dir() -> Path:
    """Where TEAM.md says the shared real speech lives: <repo>/../shared/data/."""
    repo = Path(__file__).resolve().parent.parent
    return repo.parent / "shared" / "data" / "speechocean762-train"


def _read_table(path: Path) -> dict[str, str]:
    """Kaldi `key value...` table (tab or space separated); missing file -> empty."""
    table: dict[str, str] = {}
    if not path.exists():
        return table
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.strip().split(maxsplit=1)
            if parts:
                table[parts[0]] = parts[1] if len(parts) > 1 else ""
    return table


def _info(path: str) -> tuple[float, int, int]:
    info = sf.info(path)
    return info.frames / info.samplerate, info.samplerate, info.channels


def _make(uid: str, audio: Path, text: str, speaker: str, meta: dict[str, str]) -> Utterance:
    duration, sr, ch = _info(str(audio))
    return Utterance(uid, str(audio.resolve()), normalise_text(text), speaker, round(duration, 4), sr, ch, meta)


def _speaker_meta(folder: Path) -> dict[str, dict[str, str]]:
    meta: dict[str, dict[str, str]] = {}
    for name in ("gender", "age"):
        for spk, val in _read_table(folder / f"spk2{name}").items():
            meta.setdefault(spk, {})[name] = val
    return meta


def read_kaldi_dir(folder: str | os.PathLike[str]) -> list[Utterance]:
    """A Kaldi data folder: `wav.scp` (plain paths only: piped commands are refused, since
    running arbitrary shell from a corpus list is not something a reader should do), `text`,
    `utt2spk`, optional `spk2gender`/`spk2age`. Relative paths are taken from the folder."""
    folder = Path(folder)
    wav = _read_table(folder / "wav.scp")
    text = _read_table(folder / "text")
    spk = _read_table(folder / "utt2spk")
    meta = _speaker_meta(folder)
    out = []
    for uid in sorted(wav):
        path = wav[uid]
        if path.rstrip().endswith("|"):
            raise ValueError(f"{folder}/wav.scp: piped entries are not supported ({uid})")
        audio = Path(path) if Path(path).is_absolute() else folder / path
        if uid in text:
            speaker = spk.get(uid, uid)
            out.append(_make(uid, audio, text[uid], speaker, meta.get(speaker, {})))
    return out


def read_speechocean762(folder: str | os.PathLike[str] | None = None) -> list[Utterance]:
    """speechocean762 as shared here: Kaldi lists without `wav.scp`, audio at
    `audio/SPEAKER<spk>/<utt>.flac`. Falls back to `read_kaldi_dir` when `wav.scp` exists."""
    folder = Path(folder) if folder else default_speechocean_dir()
    if (folder / "wav.scp").exists():
        return read_kaldi_dir(folder)
    text = _read_table(folder / "text")
    spk = _read_table(folder / "utt2spk")
    meta = _speaker_meta(folder)
    out = []
    for uid in sorted(text):
        speaker = spk[uid]
        audio = folder / "audio" / f"SPEAKER{speaker}" / f"{uid}.flac"
        out.append(_make(uid, audio, text[uid], speaker, meta.get(speaker, {})))
    return out


def read_librispeech(folder: str | os.PathLike[str]) -> list[Utterance]:
    """LibriSpeech layout: `<spk>/<chapter>/<spk>-<chapter>.trans.txt` beside `<utt>.flac`."""
    out = []
    for trans in sorted(Path(folder).rglob("*.trans.txt")):
        for line in trans.read_text(encoding="utf-8").splitlines():
            parts = line.strip().split(maxsplit=1)
            if len(parts) != 2:
                continue
            uid, words = parts
            audio = trans.parent / f"{uid}.flac"
            if audio.exists():
                out.append(_make(uid, audio, words, uid.split("-")[0], {}))
    return out


def read_corpus(folder: str | os.PathLike[str]) -> list[Utterance]:
    """Guess the layout: Kaldi (`wav.scp`), speechocean762 (`text` + `audio/`), LibriSpeech."""
    folder = Path(folder)
    if (folder / "wav.scp").exists():
        return read_kaldi_dir(folder)
    if (folder / "text").exists() and (folder / "audio").is_dir():
        return read_speechocean762(folder)
    if next(folder.rglob("*.trans.txt"), None) is not None:
        return read_librispeech(folder)
    raise ValueError(f"{folder}: not a Kaldi, speechocean762 or LibriSpeech folder")


def _rank(speaker: str, salt: str) -> str:
    return hashlib.sha1(f"{salt}:{speaker}".encode()).hexdigest()


def split_speakers(
    utterances: Iterable[Utterance], n_dev: int = 10, salt: str = "minutes-dev"
) -> tuple[set[str], set[str]]:
    """Hold out `n_dev` whole speakers. Speakers are grouped by what the corpus says about them
    (gender, child <= 12 years / adult) and taken round-robin across groups in hash order, so a
    10-speaker dev set mirrors the corpus rather than landing on, say, only children."""
    groups: dict[tuple[str, str], list[str]] = {}
    seen: set[str] = set()
    for u in utterances:
        if u.speaker in seen:
            continue
        seen.add(u.speaker)
        age = u.meta.get("age", "")
        band = "" if not age.isdigit() else ("child" if int(age) <= 12 else "adult")
        groups.setdefault((u.meta.get("gender", ""), band), []).append(u.speaker)
    queues = [sorted(v, key=lambda s: _rank(s, salt)) for _, v in sorted(groups.items())]
    dev: set[str] = set()
    while len(dev) < min(n_dev, len(seen)):
        for q in queues:
            if q and len(dev) < n_dev:
                dev.add(q.pop(0))
    return seen - dev, dev


def to_records(utterances: Iterable[Utterance], split: str, source: str) -> list[Record]:
    """Manifest records pointing at the audio in place (absolute paths)."""
    return [
        Record(
            id=u.id, audio=u.audio, sample_rate=u.sample_rate, channels=u.channels,
            duration=u.duration, text=u.text, speaker=f"{source}:{u.speaker}", source=source,
            split=split, extra=dict(u.meta),
        )
        for u in utterances
    ]
