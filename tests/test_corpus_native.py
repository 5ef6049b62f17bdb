"""The native recipe: clean piper joe / festival slt HTS speech reading held-out texts, test only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from corpus.build import tree_digest
from corpus.manifest import read_manifest, resolve_audio
from corpus.recipes.native import NativeConfig, plan
from corpus.sentences import load_pool
from corpus.text import ALPHABET

REPO = Path(__file__).resolve().parents[1]


def _segments(text: str, sentences: set[str]) -> bool:
    """Whether `text` is one or more of `sentences` run together."""
    words = text.split()
    ok = [True] + [False] * len(words)
    for j in range(1, len(words) + 1):
        ok[j] = any(ok[i] and " ".join(words[i:j]) in sentences for i in range(j))
    return ok[-1]


def _build(out: Path) -> None:
    cmd = [sys.executable, "-m", "minutes", "corpus", "build", "--recipe", "native", "--out", str(out),
           "--test-utts", "3", "--workers", "0", "--no-progress", "--seed", "3"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)


@pytest.mark.slow  # 27 s: two TTS engines through the CLI
def test_native_build(tmp_path: Path) -> None:
    out = tmp_path / "native"
    _build(out)
    assert sorted(p.name for p in out.glob("[!.]*.jsonl")) == ["test.jsonl"]  # test split only
    recs = list(read_manifest(out / "test.jsonl"))
    assert [r.source for r in recs] == ["tts:piper:joe", "tts:festival:cmu_us_slt_arctic_hts", "tts:piper:joe"]
    pool = load_pool()
    test_texts = {s for v in pool.test.values() for s in v}
    for r in recs:
        assert r.split == "test" and r.sample_rate == 16000 and r.channels == 1
        assert r.speaker == f"{r.source}:r1.00:p+0"
        assert r.room is None and r.array is None and r.geometry is None
        assert r.extra["rate"] == 1.0 and r.extra["pitch_cents"] == 0
        info = sf.info(str(resolve_audio(r, out / "test.jsonl")))
        assert info.samplerate == 16000 and info.channels == 1
        assert abs(info.frames / 16000 - r.duration) < 1e-3
        assert 1.0 < r.duration < 16.0
        assert set(r.text) <= ALPHABET and _segments(r.text, test_texts), r.text
    # words per second of real speech, not silence or a truncated file
    assert all(1.5 < len(r.text.split()) / r.duration < 5.0 for r in recs)
    # seed-deterministic plan, a different seed differs
    digest = tree_digest(out)
    _build(tmp_path / "again")
    assert tree_digest(tmp_path / "again") == digest
    texts = lambda seed: [it.text for s in plan(NativeConfig(out=tmp_path, utts=3, seed=seed)) for it in s.items]
    assert texts(3) == [r.text for r in recs] and texts(4) != texts(3)


def test_asr_peers_merges_one_cell(tmp_path: Path) -> None:
    import json

    from bench.asr_peers import TEST_SETS, merge_result

    native = "native (piper joe + slt hts, clean)"
    assert TEST_SETS[native].endswith("/native/test.jsonl")
    cell = lambda wer: {"wer": wer, "rtf": 0.1, "utterances": 2}
    (tmp_path / "asr.json").write_text(json.dumps({"speechocean762-dev": {"minutes": cell(50.0), "pocketsphinx": cell(80.0)}}))
    merge_result(native, "pocketsphinx", cell(20.0), tmp_path)
    merge_result("speechocean762-dev", "pocketsphinx", cell(79.0), tmp_path)
    got = json.loads((tmp_path / "asr.json").read_text())
    assert got == {"speechocean762-dev": {"minutes": cell(50.0), "pocketsphinx": cell(79.0)},
                   native: {"pocketsphinx": cell(20.0)}}
    md = (tmp_path / "asr.md").read_text()
    assert f"| {native} | — | 20.0 %" in md and "| speechocean762-dev | 50.0 %" in md
