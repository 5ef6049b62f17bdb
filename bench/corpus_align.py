"""How precise are the corpus's word times? Forced alignment against the synthesizer's truth.

Festival knows where it put every word (its `Word` relation's `word_start`/`word_end`), so its
voices give ground truth for the aligner that meetings use (`corpus.align.align_words`:
pocketsphinx forced alignment, proportional fallback). Reports median and 90th-percentile
boundary errors for the aligner and for the proportional fallback, per voice, into the
`alignment` key of bench/results/corpus.json.

    .venv/bin/python -m bench.corpus_align [--sentences 40]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from corpus.align import align_words, proportional_words
from corpus.tts import resample

VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")


def festival_words(voice: str, texts: list[str], tmp: str) -> list[tuple[np.ndarray, list[tuple[str, float, float]]]]:
    """Synthesize with festival and read back its own word times (one process for all)."""
    lines = [f"(voice_{voice})"]
    for i, t in enumerate(texts):
        lines += [
            f"(set! u (utt.synth (eval (list 'Utterance 'Text \"{t.lower()}\"))))",
            f"(utt.save.wave u \"{tmp}/w{i}.wav\" 'riff)",
            f"(format t \"UTT {i}\\n\")",
            "(mapcar (lambda (w) (format t \"W %s %f %f\\n\" (item.name w) (item.feat w \"word_start\") "
            "(item.feat w \"word_end\"))) (utt.relation.items u 'Word))",
        ]
    Path(tmp, "b.scm").write_text("\n".join(lines) + "\n")
    out = subprocess.run(["festival", "--batch", f"{tmp}/b.scm"], capture_output=True, text=True, check=True).stdout
    words: dict[int, list] = {}
    cur = -1
    for line in out.splitlines():
        if line.startswith("UTT "):
            cur = int(line.split()[1])
            words[cur] = []
        elif line.startswith("W "):
            _, w, s, e = line.split()
            words[cur].append((w.upper(), float(s), float(e)))
    result = []
    for i in range(len(texts)):
        x, sr = sf.read(f"{tmp}/w{i}.wav", dtype="float32")
        result.append((resample(x, sr), words[i]))
    return result


def _errors(ref: list[tuple[str, float, float]], hyp) -> list[float]:
    return [abs(a - b.start) for (_, a, _), b in zip(ref, hyp)] + [abs(e - b.end) for (_, _, e), b in zip(ref, hyp)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "corpus.json")
    args = ap.parse_args(argv)
    from corpus.sentences import load_pool

    pool, rng = load_pool(), random.Random(0)
    texts: list[str] = []
    while len(texts) < args.sentences:  # festival splits "LET'S" into two words: skip those
        t = pool.sample(rng)[1]
        if "'" not in t and not re.search(r"\b[A-Z]\b", t):
            texts.append(t)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for voice in VOICES:
            al, prop, aligned = [], [], 0
            for x, ref in festival_words(voice, texts, tmp):
                if not ref:
                    continue
                text = " ".join(w for w, _, _ in ref)
                hyp, method = align_words(text, x)
                if method == "pocketsphinx":
                    aligned += 1
                    al += _errors(ref, hyp)
                prop += _errors(ref, proportional_words(text, len(x) / 16000))
            report[voice] = {
                "aligned_fraction": round(aligned / len(texts), 3),
                "aligner_median_ms": round(1000 * float(np.median(al)), 1) if al else None,
                "aligner_p90_ms": round(1000 * float(np.percentile(al, 90)), 1) if al else None,
                "proportional_median_ms": round(1000 * float(np.median(prop)), 1),
                "proportional_p90_ms": round(1000 * float(np.percentile(prop, 90)), 1),
            }
            print(voice, report[voice], flush=True)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data["alignment"] = {"sentences": len(texts), "boundary_errors_vs_festival_word_times": report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
