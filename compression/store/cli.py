"""`minutes store`: what the model store holds, and whether its files are what the manifests say.

    minutes store list [--all]            # newest version of each name (--all: every version)
    minutes store verify [REF ...]        # re-hash files; exit 1 naming every mismatch
    minutes store choose --latency-budget 0.05   # what `minutes serve --latency-budget` would serve
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="list, verify and choose models of the store", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, default=REPO / "store")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="models with their size, sparsity, runtime, RTF and WER")
    ls.add_argument("--all", action="store_true", help="every version, not only the newest")
    ls.set_defaults(func=run_list)
    v = verbs.add_parser("verify", help="re-hash every file against its manifest")
    v.add_argument("refs", nargs="*", help="name or name/version (default: every version of every name)")
    v.set_defaults(func=run_verify)
    c = verbs.add_parser("choose", help="the model a latency budget selects")
    c.add_argument("--latency-budget", type=float, required=True, help="largest CPU RTF per stream")
    c.set_defaults(func=run_choose)


def _row(m) -> str:
    runtime = m.compression.get("runtime", "int8-torch" if m.compression.get("int8_dynamic") else "torch")
    rtf, wer = m.metrics.get("rtf_cpu_streaming_alone"), m.metrics.get("wer_speechocean762_dev")
    params = f"{m.parameters / 1e6:.2f}M" if m.parameters else "-"
    return (f"{m.name + '/' + m.version:<20} {m.architecture:<30} {params:>7} {m.sparsity:>8.3f} {runtime:<17} "
            f"{'-' if rtf is None else f'{rtf:.4f}':>7} {'-' if wer is None else f'{wer:.2f}':>6} "
            f"{'sealed' if m.sealed else 'UNSEALED'}")


def run_list(args: argparse.Namespace) -> int:
    from compression.store import ModelStore

    store = ModelStore(args.store)
    print(f"{'model':<20} {'architecture':<30} {'params':>7} {'sparsity':>8} {'runtime':<17} {'RTF':>7} {'WER':>6}")
    for name in store.names():
        for version in (store.versions(name) if args.all else store.versions(name)[-1:]):
            print(_row(store.manifest(name, version)))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from compression.store import ModelStore, StoreError, split_ref

    store = ModelStore(args.store)
    refs = args.refs or [f"{n}/{v}" for n in store.names() for v in store.versions(n)]
    bad = 0
    for ref in refs:
        try:
            m = store.verify(*split_ref(ref))
            print(f"ok      {m.name}/{m.version}")
        except StoreError as exc:
            bad += 1
            print(f"FAILED  {ref}: {exc}")
    return 1 if bad else 0


def run_choose(args: argparse.Namespace) -> int:
    from compression.store import ModelStore, StoreError
    from compression.store.select import choose_by_budget

    try:
        c = choose_by_budget(ModelStore(args.store), args.latency_budget)
    except StoreError as exc:
        print(exc)
        return 1
    print(f"{c.ref} (RTF {c.rtf:g}, WER {c.wer:.2f} %)")
    return 0
