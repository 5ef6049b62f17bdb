"""`minutes corpus build --recipe real|single|mixture|meeting|native --out DIR --hours H --seed S`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RECIPES = ("real", "single", "mixture", "meeting", "native")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="build corpora (real manifests, TTS + rooms, mixtures, meetings, a clean native test set)")
    csub = p.add_subparsers(dest="corpus_command", metavar="ACTION")
    b = csub.add_parser("build", help="build one recipe into a folder")
    b.add_argument("--recipe", choices=RECIPES, required=True)
    b.add_argument("--out", type=Path, required=True, help="output folder (created)")
    b.add_argument("--hours", type=float, default=1.0, help="hours of audio to make (train split)")
    b.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    b.add_argument("--workers", type=int, default=2, help="worker processes (default 2: both cores)")
    b.add_argument("--corpus-dir", type=Path, default=None, help="real corpus folder (real/single)")
    b.add_argument("--n-dev", type=int, default=10, help="real speakers held out for dev")
    b.add_argument("--test-utts", type=int, default=None,
                   help="single/mixture: held-out TTS test items, made first (default 300); native: utterances (default 200)")
    b.add_argument("--all-channels", action="store_true", help="single/mixture: store every mic, not only the reference (centre) mic")
    b.add_argument("--array", default="circular-7", help="array preset: circular-7 | linear-4")
    b.add_argument("--count", type=int, default=None, help="meeting: number of meetings (overrides --hours)")
    b.add_argument("--min-minutes", type=float, default=2.0, help="meeting: shortest meeting")
    b.add_argument("--max-minutes", type=float, default=10.0, help="meeting: longest meeting")
    b.add_argument("--p-moving", type=float, default=0.35, help="meeting: chance that a talker walks at some point")
    b.add_argument("--test-fraction", type=float, default=0.34,
                   help="meeting: share of meetings (the last ones) with held-out voices and texts; 1 = a test-only corpus")
    b.add_argument("--real-speakers", type=float, default=0.0,
                   help="meeting: chance a seat is a real speechocean762 speaker (<= 2 a meeting)")
    b.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    b.add_argument("--resume", action="store_true", help="carry on an interrupted build (same arguments)")
    b.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    if args.recipe == "real":
        from corpus.readers import default_speechocean_dir
        from corpus.recipes.real import RealConfig, build_real

        counts = build_real(RealConfig(args.corpus_dir or default_speechocean_dir(), args.out, n_dev=args.n_dev))
        print(json.dumps(counts))
        return 0
    # settings every simulated recipe shares
    common = dict(
        out=args.out, seed=args.seed, array=args.array, workers=args.workers, progress=not args.no_progress,
        resume=args.resume, corpus_dir=args.corpus_dir, n_dev=args.n_dev,
    )
    if args.recipe == "single":
        from corpus.recipes.single import SingleConfig, build_single

        stats = build_single(SingleConfig(
            hours=args.hours, test_utts=_or(args.test_utts, 300), all_channels=args.all_channels, **common,
        ))
        _finish(args.out, stats)
        return 0
    if args.recipe == "meeting":
        from corpus.recipes.meeting import MeetingConfig, build_meeting

        minutes = (args.min_minutes + args.max_minutes) / 2
        count = args.count or max(1, round(args.hours * 60 / minutes))
        stats = build_meeting(MeetingConfig(
            count=count, min_minutes=args.min_minutes, max_minutes=args.max_minutes,
            p_real_speaker=args.real_speakers, p_moving=args.p_moving, test_fraction=args.test_fraction, **common,
        ))
        _finish(args.out, stats)
        return 0
    if args.recipe == "mixture":
        from corpus.recipes.mixture import MixtureConfig, build_mixture

        stats = build_mixture(MixtureConfig(
            hours=args.hours, test_mixtures=_or(args.test_utts, 300), all_channels=args.all_channels, **common,
        ))
        _finish(args.out, stats)
        return 0
    if args.recipe == "native":
        from corpus.recipes.native import NativeConfig, build_native

        stats = build_native(NativeConfig(
            out=args.out, utts=_or(args.test_utts, NativeConfig.utts), seed=args.seed, workers=args.workers,
            progress=not args.no_progress, resume=args.resume,
        ))
        _finish(args.out, stats)
        return 0
    raise SystemExit(f"unknown recipe {args.recipe}")


def _or(value, default):
    return default if value is None else value


def _finish(out: Path, stats) -> None:
    """Print and keep the build's numbers beside its manifests (the benchmark reads them)."""
    d = stats.to_dict()
    (out / "build_stats.json").write_text(json.dumps(d, indent=2) + "\n")
    print(json.dumps(d))
