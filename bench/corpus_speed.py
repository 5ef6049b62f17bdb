"""Corpus generation speed: hours of audio per wall-clock minute on this machine, per recipe.

Runs a scaled build of each recipe (2 worker processes, the default) into a temporary folder,
and, where the full builds' `build_stats.json` exist under /work/data/corpus/, reports those
too. The load average is recorded beside each number: these machines are shared, and a build
that runs beside model training gets a fraction of the 2 cores; CPU seconds are measured too,
so the rate on 2 free cores can be stated apart from the contention of the moment.

    .venv/bin/python -m bench.corpus_speed [--single-hours 0.3] [--out bench/results/corpus.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

DATA = Path("/work/data/corpus")


def _cpu_s() -> float:
    """CPU seconds of this process and every reaped descendant (pool workers and the TTS
    processes they ran): what a build costs regardless of who else shares the cores."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _timed(fn) -> tuple[dict, float]:
    load0 = os.getloadavg()[0]
    t0, c0 = time.time(), _cpu_s()
    stats = fn()
    wall, cpu = time.time() - t0, _cpu_s() - c0
    d = stats.to_dict()
    d["wall_with_planning_s"] = round(wall, 1)
    d["hours_per_minute_with_planning"] = round(stats.hours / (wall / 60), 4)
    d["cpu_s"] = round(cpu, 1)
    d["hours_per_cpu_minute"] = round(stats.hours / (cpu / 60), 4)
    # What 2 uncontended cores would give if the 2 workers scale linearly (they share nothing).
    d["hours_per_minute_2_free_cores"] = round(2 * stats.hours / (cpu / 60), 4)
    d["load_avg_1min_before"] = round(load0, 2)
    d["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    return d, stats.hours


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single-hours", type=float, default=0.3)
    ap.add_argument("--mixture-hours", type=float, default=0.1)
    ap.add_argument("--meetings", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "corpus.json")
    args = ap.parse_args(argv)

    from corpus.recipes.meeting import MeetingConfig, build_meeting
    from corpus.recipes.mixture import MixtureConfig, build_mixture
    from corpus.recipes.single import SingleConfig, build_single
    from corpus.sentences import load_pool

    load_pool()  # read once; planning a build re-uses it (~10 s the first time)
    result: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "workers": args.workers, "scaled": {}}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "single": lambda: build_single(SingleConfig(out=Path(tmp) / "single", hours=args.single_hours, test_utts=0,
                                                        workers=args.workers, progress=False, seed=11)),
            "mixture": lambda: build_mixture(MixtureConfig(out=Path(tmp) / "mixture", hours=args.mixture_hours,
                                                           test_mixtures=0, workers=args.workers, progress=False, seed=11)),
            "meeting": lambda: build_meeting(MeetingConfig(out=Path(tmp) / "meeting", count=args.meetings, min_minutes=2,
                                                           max_minutes=2, workers=args.workers, progress=False, seed=11)),
        }
        for name, fn in runs.items():
            d, _ = _timed(fn)
            result["scaled"][name] = d
            print(name, json.dumps(d), flush=True)
    single = result["scaled"]["single"]
    result["single_minutes_for_10h_measured_rate"] = round(10 / single["hours_per_minute"], 1)
    result["single_minutes_for_10h_2_free_cores"] = round(10 / single["hours_per_minute_2_free_cores"], 1)
    full = {}
    for name in ("single", "single-long", "meeting", "mixture"):
        f = DATA / name / "build_stats.json"
        if f.exists():
            full[name] = json.loads(f.read_text())
    result["full_builds"] = full
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():  # keep what other corpus benches wrote (e.g. `alignment`)
        result = {**json.loads(args.out.read_text()), **result}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
