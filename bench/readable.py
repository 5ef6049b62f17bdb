"""Readable transcripts, measured (issue 16): the same meetings through the engine twice,
as minutes served them before (raw tokens, one final per endpointed segment) and now (cased and
punctuated, one final per speaker turn), in one run.

For each meeting (audio, array, reference RTTM, reference text):
- mixed finals: the fraction of finals whose words belong to more than one *reference* speaker
  (a word's speaker is the reference turn that overlaps it most) — the issue's goal is 0;
  and the fraction with more than one *diarised* label (what the split itself guarantees);
- WER of both runs on normalised text (display text goes through `normalise_text`, as the
  references were built), so casing and punctuation cannot move it;
- the punctuator's cost per final (ms on this CPU) and excerpts of both transcripts.

    python -m bench.readable                                   # the demo's two sample meetings
    python -m bench.readable --corpus /work/data/corpus/meeting --limit 8   # + corpus meetings

Writes bench/results/readable.json and the excerpts in bench/results/readable_excerpts.md.
"""

from __future__ import annotations

import argparse
import json
import queue
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "clients" / "web" / "samples"
RESULTS = REPO / "bench" / "results"


@dataclass
class Meeting:
    name: str
    audio: Path
    array: str | list
    reference_text: str
    turns: list  # minutes.types.Turn of the reference


@dataclass
class RunResult:
    finals: int = 0
    mixed_reference: int = 0  # finals with words of 2+ reference speakers
    mixed_labels: int = 0  # finals with 2+ diarised labels
    wer: float = 0.0
    punctuate_ms: list[float] = field(default_factory=list)
    transcript: list[dict] = field(default_factory=list)  # (start, speaker, text) of each final


def sample_meetings() -> list[Meeting]:
    from minutes.transcript import read_rttm

    out = []
    for s in json.loads((SAMPLES / "samples.json").read_text()):
        ref = json.loads((SAMPLES / s["reference"]).read_text())
        turns = next(iter(read_rttm(SAMPLES / s["rttm"]).values()))
        out.append(Meeting(s["id"], SAMPLES / s["audio"], s["array"], ref["text"], turns))
    return out


def corpus_meetings(corpus: Path, limit: int) -> list[Meeting]:
    from minutes.transcript import read_rttm

    out = []
    for split in ("test.jsonl", "dev.jsonl", "train.jsonl"):
        p = corpus / split
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            if line.strip() and len(out) < limit:
                r = json.loads(line)
                turns = next(iter(read_rttm(corpus / r["extra"]["rttm"]).values()))
                out.append(Meeting(f"{corpus.name}/{r['id']}", corpus / r["audio"], r["geometry"], r["text"], turns))
    return out


def reference_speaker(turns: list, start: float, end: float) -> str | None:
    best, who = 0.0, None
    for t in turns:
        ov = min(end, t.end) - max(start, t.start)
        if ov > best:
            best, who = ov, t.speaker
    return who


class TimedPunctuator:
    """The engine's punctuator with a stopwatch (what one final costs the worker)."""

    def __init__(self, inner) -> None:
        self.inner, self.context_words, self.mixed, self.ms = inner, inner.context_words, inner.mixed, []

    def punctuate(self, words, context=()):
        t0 = time.perf_counter()
        out = self.inner.punctuate(words, context)
        self.ms.append((time.perf_counter() - t0) * 1000)
        return out


def run(engine, meeting: Meeting, display: bool) -> RunResult:
    import jiwer

    from engine import End, Final
    from engine.spec import StreamSpec
    from minutes.arrays import resolve_array
    from minutes.text import normalise_text

    x, sr = sf.read(meeting.audio, dtype="float32", always_2d=True)
    preset, geometry = resolve_array(meeting.array, x.shape[1])
    spec = StreamSpec(sample_rate=sr, encoding="pcm_f32le", channels=x.shape[1], preset=preset,
                      geometry=tuple(tuple(float(v) for v in g) for g in geometry), partials=False,
                      diarisation=True, format="display" if display else "raw")
    events: queue.Queue = queue.Queue()
    blocks = (x[i:i + sr] for i in range(0, len(x), sr))
    engine.config = _with(engine.config, split_at_speaker_changes=display)
    timed = TimedPunctuator(engine.punctuator)
    inner, engine.punctuator = engine.punctuator, timed
    try:
        engine.transcribe_source(spec, blocks, events.put)
        result = RunResult()
        while True:
            ev = events.get(timeout=600)
            if isinstance(ev, End):
                break
            if not isinstance(ev, Final):
                continue
            seg = ev.segment
            truth = {reference_speaker(meeting.turns, w.start, w.end) for w in seg.words} - {None}
            labels = {w.speaker for w in seg.words} - {None}
            result.finals += 1
            result.mixed_reference += len(truth) > 1
            result.mixed_labels += len(labels) > 1
            result.transcript.append({"start": seg.start, "speaker": seg.speaker, "text": seg.text,
                                      "reference_speakers": sorted(truth)})
    finally:
        engine.punctuator = inner
    hyp = normalise_text(" ".join(f["text"] for f in result.transcript))
    result.wer = round(jiwer.wer(normalise_text(meeting.reference_text), hyp or "<empty>"), 4)
    result.punctuate_ms = timed.ms
    return result


def _with(config, **changes):
    from dataclasses import replace

    return replace(config, **changes)


def excerpt(result: RunResult, lines: int = 8) -> str:
    return "\n".join(f"[{f['start']:6.2f}] {f['speaker'] or '--'}: {f['text']}" for f in result.transcript[:lines])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, action="append", default=[], help="a meeting corpus folder (repeatable)")
    ap.add_argument("--limit", type=int, default=8, help="meetings per corpus")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", type=Path, default=RESULTS / "readable.json")
    args = ap.parse_args(argv)

    from engine.config import EngineConfig
    from engine.engine import Engine

    engine = Engine(EngineConfig(store=REPO / "store", model=args.model))
    engine.start()
    deadline = time.monotonic() + 300
    while (engine.status != "ready" or (engine.config.diarisation and not engine.diarisation_available)) \
            and time.monotonic() < deadline:
        if engine.status == "no_model":
            raise SystemExit(engine.reason)
        time.sleep(0.2)
    if engine.punctuator is None or not engine.diarisation_available:
        raise SystemExit(f"needs the punctuator and the diariser: {engine.punctuation_reason} {engine.diarisation_reason}")
    meetings = sample_meetings() + [m for c in args.corpus for m in corpus_meetings(c, args.limit)]
    rows, md = [], ["# Readable transcripts: before/after excerpts (bench/readable.py)", ""]
    for m in meetings:
        before, after = run(engine, m, display=False), run(engine, m, display=True)
        rows.append({"meeting": m.name, "before": {k: v for k, v in asdict(before).items() if k != "punctuate_ms"},
                     "after": {k: v for k, v in asdict(after).items() if k != "punctuate_ms"},
                     "punctuate_ms": after.punctuate_ms})
        print(f"{m.name}: finals {before.finals} -> {after.finals}, mixed (reference) {before.mixed_reference} -> "
              f"{after.mixed_reference}, mixed (labels) {before.mixed_labels} -> {after.mixed_labels}, "
              f"WER {before.wer:.3f} -> {after.wer:.3f}", flush=True)
        md += [f"## {m.name}", "", "Before (raw tokens, one final per endpointed segment):", "", "```",
               excerpt(before), "```", "", "After (punctuated and cased, one final per speaker turn):", "",
               "```", excerpt(after), "```", ""]
    ms = [v for r in rows for v in r["punctuate_ms"]]
    total = {side: {k: sum(r[side][k] for r in rows) for k in ("finals", "mixed_reference", "mixed_labels")}
             for side in ("before", "after")}
    summary = {
        "model": args.model, "meetings": len(rows), "totals": total,
        "mixed_reference_fraction": {s: round(t["mixed_reference"] / max(1, t["finals"]), 4) for s, t in total.items()},
        "mixed_labels_fraction": {s: round(t["mixed_labels"] / max(1, t["finals"]), 4) for s, t in total.items()},
        "wer_mean": {s: round(float(np.mean([r[s]["wer"] for r in rows])), 4) for s in ("before", "after")},
        "punctuate_ms": {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
                         "n": len(ms)} if ms else {},
        "rows": [{k: v for k, v in r.items() if k != "punctuate_ms"} for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    (args.out.parent / "readable_excerpts.md").write_text("\n".join(md) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    engine.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
