"""normalise_text and the real-corpus readers/split: the alphabet and the speaker hold-out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from corpus.manifest import Record, read_manifest, write_manifest
from corpus.readers import read_corpus, read_speechocean762, split_speakers
from corpus.text import ALPHABET, normalise_text


@pytest.mark.parametrize(
    "raw, want",
    [
        ("Hello, world! It's 1984.", "HELLO WORLD IT'S NINETEEN EIGHTY FOUR"),
        ("I paid $3.50 on the 21st", "I PAID THREE DOLLARS FIFTY ON THE TWENTY FIRST"),
        ("50% of 2,000", "FIFTY PERCENT OF TWO THOUSAND"),
        ("'quoted' well-known 1960s", "QUOTED WELL KNOWN NINETEEN SIXTIES"),
        ("naïve café & co.", "NAIVE CAFE AND CO"),
        ("3.14 and 101", "THREE POINT ONE FOUR AND ONE HUNDRED ONE"),
        ("  \t\n", ""),
    ],
)
def test_normalise_text(raw: str, want: str) -> None:
    got = normalise_text(raw)
    assert got == want
    assert set(got) <= ALPHABET
    assert normalise_text(got) == got  # idempotent


def _fake_kaldi(tmp: Path, n_spk: int = 6) -> Path:
    (tmp / "wavs").mkdir(parents=True)
    wav, text, u2s = [], [], []
    for s in range(n_spk):
        for u in range(3):
            uid = f"s{s}_u{u}"
            sf.write(tmp / "wavs" / f"{uid}.wav", np.zeros(1600 * (u + 1), np.float32), 16000)
            wav.append(f"{uid} wavs/{uid}.wav")
            text.append(f"{uid} hello number {u + 1}")
            u2s.append(f"{uid} spk{s}")
    for name, lines in (("wav.scp", wav), ("text", text), ("utt2spk", u2s)):
        (tmp / name).write_text("\n".join(lines) + "\n")
    return tmp


def test_kaldi_reader_and_split(tmp_path: Path) -> None:
    utts = read_corpus(_fake_kaldi(tmp_path / "k"))
    assert len(utts) == 18 and utts[0].text == "HELLO NUMBER ONE"
    assert abs(utts[1].duration - 0.2) < 1e-6
    train, dev = split_speakers(utts, n_dev=2)
    assert len(dev) == 2 and not (train & dev) and len(train | dev) == 6
    assert split_speakers(utts, n_dev=2) == (train, dev)  # deterministic


def test_librispeech_reader(tmp_path: Path) -> None:
    d = tmp_path / "ls" / "19" / "198"
    d.mkdir(parents=True)
    sf.write(d / "19-198-0001.flac", np.zeros(8000, np.float32), 16000)
    (d / "19-198.trans.txt").write_text("19-198-0001 NORTHANGER ABBEY\n")
    (u,) = read_corpus(tmp_path / "ls")
    assert (u.speaker, u.text, u.duration) == ("19", "NORTHANGER ABBEY", 0.5)


def test_manifest_roundtrip(tmp_path: Path) -> None:
    r = Record("a", "a.flac", 16000, 1, 1.0, "HI", "s", "tts:x", "train", array="circular-7", extra={"k": 1})
    write_manifest(tmp_path / "m.jsonl", [r])
    assert list(read_manifest(tmp_path / "m.jsonl")) == [r]


def test_speechocean_dev_speakers_never_in_train() -> None:
    folder = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speechocean762-train"
    if not folder.exists():
        pytest.skip("shared speechocean762 not present")
    utts = read_speechocean762(folder)
    train, dev = split_speakers(utts, 10)
    assert len(dev) == 10 and not (train & dev) and len(train) + len(dev) == 125
    assert all(set(u.text) <= ALPHABET for u in utts)
