"""`minutes diarise AUDIO --array circular-7 [--method kalman_ahc|...|particle_online] [--rttm OUT]`:
who spoke when, and from where, for a multi-channel recording (offline pipeline or the online
particle filter run over the file). Prints turns as JSON lines, or writes RTTM."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METHODS = ("kalman_ahc", "stationary_ahc", "emb_ahc", "particle_online")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diarise", help="speaker turns and azimuths of a multi-channel recording")
    p.add_argument("audio", type=Path, help="multi-channel audio file (one channel per mic)")
    p.add_argument("--array", default="circular-7", help="array preset name, or a JSON list of mic [x, y, z] (m)")
    p.add_argument("--method", choices=METHODS, default="kalman_ahc")
    p.add_argument("--config", type=Path, default=None, help="pipeline TOML (offline methods)")
    p.add_argument("--rttm", type=Path, default=None, help="write RTTM here instead of JSON lines")
    p.add_argument("--progress", action="store_true", help="report the pipeline's named steps on stderr")
    p.set_defaults(func=run)


def _geometry(spec: str):
    import numpy as np

    if spec.lstrip().startswith("["):
        return np.array(json.loads(spec), dtype=float)
    from minutes.arrays import geometry

    return geometry(spec)


def run(args: argparse.Namespace) -> int:
    import soundfile as sf
    import torch

    from diarisation.rttm import write_rttm

    torch.set_num_threads(1)
    audio, sr = sf.read(args.audio, dtype="float32", always_2d=True)
    geom = _geometry(args.array)
    if audio.shape[1] != len(geom):
        print(f"error: {audio.shape[1]} channels but the array has {len(geom)} mics", file=sys.stderr)
        return 2
    if args.method == "particle_online":
        from diarisation.online import OnlineDiariser

        ds = OnlineDiariser().new_stream(geom, sr)
        for i in range(0, len(audio), sr // 10):
            ds.accept(audio[i : i + sr // 10])
        ds.input_finished()
        turns = ds.turns()
    else:
        from diarisation.pipeline import OfflineDiariser, PipelineConfig, load_config

        cfg = load_config(args.config) if args.config else PipelineConfig()
        hook = (lambda step, done, total: print(f"{step} {done}/{total}", file=sys.stderr)) if args.progress else None
        turns = OfflineDiariser(args.method, config=cfg).apply(audio, geom, sr, hook=hook).turns
    if args.rttm:
        write_rttm(args.rttm, turns, args.audio.stem)
    else:
        for t in turns:
            print(json.dumps(t.to_dict()))
    return 0
