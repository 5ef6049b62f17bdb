"""The `minutes` command: one entry point, one subcommand per job.

Each subcommand lives in its own module and exposes `register(subparsers)`, which adds its
parser and sets `func` to the handler `func(args) -> int`. Only subcommands that work are
listed in `COMMANDS`, so `minutes --help` shows what works and nothing else.

Why lazily: registering a subcommand can be heavy (`train` builds its flags from a config
dataclass that lives beside torch; 16 s on a busy machine). So `COMMANDS` also holds each
subcommand's one-line help, `minutes --help` shows those without importing any subcommand
module, and a run imports and registers only the subcommand it names.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from minutes import __version__
from minutes.config import ConfigError
from minutes.logs import LOG_FORMATS, setup_logging


@dataclass(frozen=True)
class Command:
    module: str  # defines `register(subparsers)`
    help: str  # the line `minutes --help` shows; the same as the module's `add_parser(help=...)`


# Add a line when a subcommand works.
COMMANDS: dict[str, Command] = {
    "serve": Command("server.cli", "run the streaming server"),
    "train": Command("training.cli", "train models (asr)"),
    "eval": Command("training.eval_cli", "WER/RTF of a model on a manifest (streamed)"),
    "corpus": Command("corpus.cli", "build corpora (real manifests, TTS + rooms, mixtures, meetings, a clean native test set)"),
    "stream": Command("clients.cli", "stream a file or the microphone to a server, print the transcript live"),
    "diarise": Command("diarisation.cli", "speaker turns and azimuths of a multi-channel recording"),
    "store": Command("compression.store.cli", "list, verify and choose models of the store"),
    "prune": Command("compression.cli", "pruning plans, latency table and pruned checkpoints"),
    "adapt": Command("training.adapt", "text-only domain adaptation (ILMA) into a new store version"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with `command` registered by its module and every other subcommand as a
    stub (its name and help, no arguments): `build_parser()` imports no subcommand module."""
    parser = argparse.ArgumentParser(
        prog="minutes",
        description="Streaming meeting transcription: words, times, speakers and where they sit.",
    )
    parser.add_argument("--version", action="version", version=f"minutes {__version__}")
    parser.add_argument("--log-level", default=None, help="debug|info|warning|error (env MINUTES_LOG_LEVEL)")
    parser.add_argument("--log-format", default=None, choices=LOG_FORMATS, help="text|json (env MINUTES_LOG_FORMAT)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        if name == command:
            importlib.import_module(cmd.module).register(sub)
        else:  # a stub: its own --help and arguments pass through to the real one, see `main`
            sub.add_parser(name, help=cmd.help, add_help=False)
    return parser


def chosen_command(argv: list[str] | None = None) -> str | None:
    """The subcommand `argv` names, found by the stub parser (so global options and their
    values are skipped as argparse would); `minutes --help` and `--version` exit here."""
    args, _ = build_parser().parse_known_args(argv)
    return args.command


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(chosen_command(argv))
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
