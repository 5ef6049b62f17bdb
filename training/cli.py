"""`minutes train asr`: train the streaming transducer from a TOML recipe (its [asr] table).

Resume a run (same exp_dir) with `--resume`: weights, optimiser, step, tokenizer, RNG and the
best dev WER come back from `<exp_dir>/last.pt`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from minutes.config import add_dataclass_arguments, load_config, overrides_from_args, to_toml_dict

DEFAULT_RECIPE = Path(__file__).parent / "recipes" / "asr_default.toml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train models (asr)", description="Train a model from a recipe.")
    tsub = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    a = tsub.add_parser("asr", help="streaming transducer", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--config", type=Path, default=DEFAULT_RECIPE, help="TOML recipe ([asr] table)")
    a.add_argument("--resume", action="store_true", help="continue from <exp_dir>/last.pt")
    a.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    from training.asr import TrainConfig

    add_dataclass_arguments(a, TrainConfig)
    a.set_defaults(func=run_asr)
    from training import package

    package.register(tsub)
    from training import average, lm, mwer, teacher  # `minutes train lm|mwer` (decoding with LMs, issue 6)

    lm.register(tsub), mwer.register(tsub), teacher.register(tsub), average.register(tsub)
    from training import punctuation  # `minutes train punctuation` (readable transcripts, issue 16)

    punctuation.register(tsub)
    from training import confidence  # `minutes train confidence` (issue 18)

    confidence.register(tsub)


def run_asr(args: argparse.Namespace) -> int:
    from training.asr import TrainConfig, Trainer

    cfg = load_config(TrainConfig, toml_path=args.config, section="asr", env_prefix="MINUTES_TRAIN_",
                      overrides=overrides_from_args(args, TrainConfig))
    if args.print_config:
        print(json.dumps(to_toml_dict(cfg), indent=2))
        return 0
    logging.getLogger().setLevel(logging.INFO)
    Trainer(cfg, resume=args.resume).run()
    return 0


def run_recipe(recipe: Any, print_config: bool, train: Callable[[], dict[str, Any]], indent: int | None = None) -> int:
    """A recipe command's body (`minutes train lm|mwer`): print the resolved recipe and stop, or
    train and print the result without its per-step history."""
    if print_config:
        print(json.dumps(asdict(recipe), indent=2))
        return 0
    logging.getLogger().setLevel(logging.INFO)
    res = train()
    print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=indent))
    return 0


def recipe_main(doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                run_cli: Callable[[argparse.Namespace], int], argv: list[str] | None = None) -> int:
    """`python -m training.lm|mwer ...`: a recipe command on its own, with INFO logging."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return run_cli(args)


def main(argv: list[str] | None = None) -> int:
    """`python -m training.cli asr ...`: the same command without the `minutes` entry point, for
    machines that hold only the training dependencies (a lent accelerator machine)."""
    import sys

    parser = argparse.ArgumentParser(prog="python -m training.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
