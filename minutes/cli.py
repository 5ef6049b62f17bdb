"""The `minutes` command: one entry point, one subcommand per job.

Each subcommand lives in its own module and exposes `register(subparsers)`, which adds its
parser and sets `func` to the handler `func(args) -> int`. Only subcommands that work are
listed in `COMMANDS`, so `minutes --help` shows what works and nothing else.
Modules are imported lazily at registration so `minutes --help` stays quick; heavy imports
(torch) belong inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from minutes import __version__
from minutes.config import ConfigError
from minutes.logs import LOG_FORMATS, setup_logging

# name -> module that defines `register(subparsers)`. Add a line when a subcommand works.
COMMANDS: dict[str, str] = {
    "serve": "server.cli",
    "train": "training.cli",
    "eval": "training.eval_cli",
    "corpus": "corpus.cli",
    "stream": "clients.cli",
    "diarise": "diarisation.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minutes",
        description="Streaming meeting transcription: words, times, speakers and where they sit.",
    )
    parser.add_argument("--version", action="version", version=f"minutes {__version__}")
    parser.add_argument("--log-level", default=None, help="debug|info|warning|error (env MINUTES_LOG_LEVEL)")
    parser.add_argument("--log-format", default=None, choices=LOG_FORMATS, help="text|json (env MINUTES_LOG_FORMAT)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        setup_logging(args.log_level, args.log_format)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"minutes: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
