"""Test sets for the LM-fusion benchmark: one text domain read by held-out TTS voices.

    python -m bench.lm_fusion_data --domain bible --dev 60 --test 100

Why our own sets: the cross-domain test needs many utterances of *one* text domain (the
external LM's), in a dev part to tune λ's on and a test part to report; the corpus's mixed
test set has only a few dozen per domain. Sentences come from the pool's test-only side
(`corpus.sentences`, never trained on by the ASR or the LM), voices from the held-out TTS
identities (never heard in training). Audio is clean, 16 kHz mono FLAC, with a manifest per part.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import soundfile as sf

from corpus.manifest import Record, write_manifest
from corpus.sentences import load_pool
from corpus.tts import identity_grid, is_held_out, synthesize_many

OUT = Path("/work/data/lmfusion")


def build(domain: str, n_dev: int, n_test: int, out: Path = OUT, seed: int = 0, max_words: int = 20) -> dict[str, Path]:
    rng = random.Random(seed)
    pool = load_pool()
    sents = [s for s in pool.test[domain] if len(s.split()) <= max_words]
    rng.shuffle(sents)
    voices = [v for v in identity_grid() if is_held_out(v) and v.engine in ("flite", "espeak", "festival")]
    paths = {}
    for split, part in (("dev", sents[:n_dev]), ("test", sents[n_dev:n_dev + n_test])):
        folder = out / f"{domain}_{split}"
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        items = [(rng.choice(voices), text) for text in part]
        audio = synthesize_many(items)
        records = []
        for i, ((voice, text), x) in enumerate(zip(items, audio)):
            uid = f"{domain}-{split}-{i:04d}"
            sf.write(folder / "audio" / f"{uid}.flac", x, 16000)
            records.append(Record(uid, f"audio/{uid}.flac", 16000, 1, len(x) / 16000, text, voice.speaker,
                                  voice.source, split))
        write_manifest(folder / "manifest.jsonl", records)
        paths[split] = folder / "manifest.jsonl"
        print(f"{folder}: {len(records)} utterances, {sum(r.duration for r in records) / 60:.1f} min")
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", default="bible")
    p.add_argument("--dev", type=int, default=60)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    build(args.domain, args.dev, args.test, args.out)


if __name__ == "__main__":
    main()
