"""Word-time error of final words: forced alignment on the CTC head against emission times
(issue 18). Writes bench/results/word_times.{json,md}.

    python -m bench.word_times --model default/10 [--calibrate 60] [--limit 120] [--tts 60]

References:
- real speech, speechocean762: pocketsphinx's forced alignment of the reference transcript
  (corpus/align.py; an HMM aligner trained on real speech, independent of minutes' model). Its
  own boundaries are on a 10 ms grid and off by a few frames where speech is unclear, so the
  error measured against it is an upper bound of minutes' own error plus the reference's.
- synthetic speech, festival voices (slt HTS, kal and ked diphones): the synthesiser's own word
  start/end times, exact for its audio. Test-only pool sentences (never trained on).

The constant shift (`word_time_shift` in a model's manifest, decoding/alignment.py) is the
median start and end error measured on the first `--calibrate` speechocean762 *train*
utterances; the dev and festival errors are measured after it, on other speech. Only words
the recogniser got right (matched to the reference by a word-level diff) are scored: a
misrecognised word has no reference time.
"""

from __future__ import annotations

import argparse
import difflib
import json
import statistics
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
REAL_DEV = "/work/data/corpus/speechocean762/dev.jsonl"
REAL_CAL = "/work/data/corpus/speechocean762/train.jsonl"
FESTIVAL_VOICES = ("cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone")
PAD_S = 0.5  # silence around festival's audio: words do not start at sample 0 in a stream


@dataclass
class Clip:
    audio: np.ndarray  # 16 kHz mono float32
    words: list[tuple[str, float, float]]  # reference (WORD, start, end), seconds


@dataclass
class SetResult:
    name: str
    reference: str
    clips: int = 0
    words_scored: int = 0
    errors_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> mean/median |start|, |end|


def real_clips(manifest: str, n: int, skip: int = 0) -> list[Clip]:
    """speechocean762 utterances with pocketsphinx's word times of their transcripts (clips it
    could only spread proportionally are left out: no reference there)."""
    from corpus.align import align_words as sphinx_align
    from corpus.manifest import read_manifest, resolve_audio
    from training.data import load_audio

    out = []
    for r in list(read_manifest(manifest))[skip:]:
        if len(out) >= n:
            break
        audio = load_audio(str(resolve_audio(r, manifest)), 16000).numpy()
        times, method = sphinx_align(r.text, audio)
        if method != "pocketsphinx":
            continue
        out.append(Clip(audio, [(t.word.upper(), t.start, t.end) for t in times]))
    return out


def festival_clips(n: int, seed: int = 0) -> list[Clip]:
    """`n` test-only pool sentences, spoken in turn by each festival voice, with festival's own
    word times."""
    import random

    from corpus.sentences import load_pool
    from corpus.tts import resample

    pool = sorted({s for texts in load_pool().test.values() for s in texts if len(s.split()) <= 14})
    random.Random(seed).shuffle(pool)
    texts = pool[:n]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        lines = []
        for i, text in enumerate(texts):
            voice = FESTIVAL_VOICES[i % len(FESTIVAL_VOICES)]
            s = text.lower().replace("\\", " ").replace('"', " ")
            lines += [f"(voice_{voice})", f"(set! u (utt.synth (eval (list 'Utterance 'Text \"{s}\"))))",
                      f"(utt.save.wave u \"{tmp}/f{i}.wav\" 'riff)",
                      f"(set! fd (fopen \"{tmp}/f{i}.txt\" \"w\"))",
                      "(mapcar (lambda (w) (format fd \"%s %f %f\\n\" (item.name w) (item.feat w \"word_start\") "
                      "(item.feat w \"word_end\"))) (utt.relation.items u 'Word))",
                      "(fclose fd)"]
        Path(tmp, "b.scm").write_text("\n".join(lines) + "\n")
        subprocess.run(["festival", "--batch", f"{tmp}/b.scm"], check=True, capture_output=True)
        import soundfile as sf

        for i in range(len(texts)):
            x, sr = sf.read(f"{tmp}/f{i}.wav", dtype="float32", always_2d=True)
            pad = np.zeros(int(PAD_S * 16000), np.float32)
            audio = np.concatenate([pad, resample(x[:, 0], sr), pad])
            words = []
            for line in Path(tmp, f"f{i}.txt").read_text().splitlines():
                w, a, b = line.split()
                words.append((w.upper(), float(a) + PAD_S, float(b) + PAD_S))
            out.append(Clip(audio, words))
    return out


def score(rec, options, clips: list[Clip]) -> dict[str, list[tuple[float, float]]]:
    """Per method ("aligned" before any shift, "emission"): (start error, end error) in seconds of
    every correctly recognised word."""
    from decoding.options import DecodingOptions

    errs: dict[str, list[tuple[float, float]]] = {"aligned": [], "emission": []}
    for clip in clips:
        ref = [w for w, _, _ in clip.words]
        for method in errs:
            words = rec.transcribe(clip.audio, DecodingOptions.from_dict({"word_times": method}, base=options),
                                   chunk_samples=1600)
            hyp = [w.text for w in words]
            for tag, i1, i2, j1, _ in difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_opcodes():
                if tag != "equal":
                    continue
                for k in range(i2 - i1):
                    _, s, e = clip.words[i1 + k]
                    h = words[j1 + k]
                    errs[method].append((h.start - s, h.end - e))
    return errs


def summary(errs: list[tuple[float, float]], shift: tuple[float, float] = (0.0, 0.0)) -> dict[str, float]:
    s = [abs(a + shift[0]) * 1000 for a, _ in errs]
    e = [abs(b + shift[1]) * 1000 for _, b in errs]
    if not s:
        return {}
    return {"mean_start_ms": round(statistics.fmean(s), 1), "mean_end_ms": round(statistics.fmean(e), 1),
            "median_start_ms": round(statistics.median(s), 1), "median_end_ms": round(statistics.median(e), 1),
            "within_50ms_start": round(sum(x <= 50 for x in s) / len(s), 3),
            "within_50ms_end": round(sum(x <= 50 for x in e) / len(e), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default/10")
    p.add_argument("--calibrate", type=int, default=60, help="speechocean762 train utterances the shift is measured on")
    p.add_argument("--limit", type=int, default=120, help="speechocean762 dev utterances scored")
    p.add_argument("--tts", type=int, default=60, help="festival sentences scored")
    p.add_argument("--name", default="word_times")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    import torch

    from compression.store import ModelStore, split_ref
    from decoding.recogniser import Recogniser

    torch.set_num_threads(1)
    folder, manifest = ModelStore(Path(__file__).resolve().parent.parent / "store").resolve(*split_ref(args.model))
    rec = Recogniser.load(folder, manifest)
    from decoding.alignment import WordTimeShift

    rec.word_time_shift = WordTimeShift()  # measure raw; the shift is fitted here
    options = rec.options
    cal = score(rec, options, real_clips(REAL_CAL, args.calibrate))["aligned"]
    shift = (-statistics.median(a for a, _ in cal), -statistics.median(b for _, b in cal))
    sets = {"speechocean762_dev": ("pocketsphinx forced alignment", real_clips(REAL_DEV, args.limit)),
            "festival": ("festival's own word times", festival_clips(args.tts))}
    results = []
    for name, (reference, clips) in sets.items():
        errs = score(rec, options, clips)
        r = SetResult(name, reference, len(clips), len(errs["aligned"]))
        r.errors_ms = {"emission": summary(errs["emission"]), "aligned_raw": summary(errs["aligned"]),
                       "aligned": summary(errs["aligned"], shift)}
        results.append(r)
        print(name, json.dumps(r.errors_ms))
    write(args, shift, len(cal), results)


def write(args, shift: tuple[float, float], cal_words: int, results: list[SetResult]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"model": args.model, "shift_s": {"start": round(shift[0], 3), "end": round(shift[1], 3)},
           "calibration_words": cal_words, "sets": [asdict(r) for r in results]}
    (args.out / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Word times of final words (`bench/word_times.py`, model `{args.model}`)", "",
             f"Shift fitted on {cal_words} correctly recognised words of speechocean762 train: start "
             f"{shift[0]:+.3f} s, end {shift[1]:+.3f} s. Errors are |hypothesis - reference| of correctly "
             "recognised words; the served decoding (beam + LM + lexicon), 0.1 s pieces with endpoints.", "",
             "| set | reference | words | method | mean start ms | mean end ms | median start | median end | start ≤ 50 ms | end ≤ 50 ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for method, m in r.errors_ms.items():
            if m:
                lines.append(f"| {r.name} | {r.reference} | {r.words_scored} | {method} | {m['mean_start_ms']} | "
                             f"{m['mean_end_ms']} | {m['median_start_ms']} | {m['median_end_ms']} | "
                             f"{m['within_50ms_start']:.0%} | {m['within_50ms_end']:.0%} |")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
