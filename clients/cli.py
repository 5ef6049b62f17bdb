"""`minutes stream FILE | --mic`: stream audio to a minutes server and print the transcript live.

Partials are redrawn in place on a terminal (and not printed when output is piped); each final
prints one line with its times, speaker and direction. `--json/--srt/--rttm` write the whole
transcript when the stream ends. A summary (latency, the server's RTF, reconnects) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from minutes.arrays import PRESETS

# Channel counts that imply a preset geometry when --array is left at "auto" (7 -> circular-7,
# 4 -> linear-4; one channel names no array).
AUTO_ARRAYS = {len(g): name for name, g in PRESETS.items() if len(g) > 1}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="stream a file or the microphone to a server, print the transcript live",
                       description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("file", nargs="?", type=Path, help="audio file (WAV, FLAC, OGG: anything libsndfile reads)")
    src.add_argument("--mic", action="store_true", help="stream the default microphone (needs PortAudio)")
    p.add_argument("--url", default=os.environ.get("MINUTES_URL", "ws://127.0.0.1:8000/v1/stream"),
                   help="server stream URL (env MINUTES_URL; default %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("MINUTES_API_KEY"), help="API key (env MINUTES_API_KEY)")
    p.add_argument("--array", default="auto",
                   help="array preset (circular-7, linear-4, mono), a JSON list of mic [x,y,z] in metres, "
                        "'none', or 'auto' (preset by channel count: 7 -> circular-7, 4 -> linear-4)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="1 = real time (default), 2 = twice as fast, 0 = max")
    pace.add_argument("--fast", action="store_const", dest="speed", const=0.0, help="as fast as possible (--speed 0)")
    p.add_argument("--encoding", choices=("pcm_s16le", "pcm_f32le"), default="pcm_s16le")
    p.add_argument("--no-partials", action="store_true", help="ask the server for finals only")
    p.add_argument("--hotword", action="append", default=[], help="phrase to bias towards (repeatable)")
    diar = p.add_mutually_exclusive_group()
    diar.add_argument("--diarisation", dest="diarisation", action="store_const", const=True, default=None)
    diar.add_argument("--no-diarisation", dest="diarisation", action="store_const", const=False)
    p.add_argument("--model", default=None, help="model name (server default if omitted)")
    p.add_argument("--channel", default=None, help="what the recogniser hears: 'mean' or a channel index")
    p.add_argument("--start", type=float, default=0.0, help="file: seconds to skip")
    p.add_argument("--duration", type=float, default=None, help="seconds to send at most (file or mic)")
    p.add_argument("--mic-rate", type=int, default=16000)
    p.add_argument("--mic-channels", type=int, default=1)
    p.add_argument("--mic-device", default=None, help="PortAudio device name or index")
    p.add_argument("--retries", type=int, default=5, help="reconnect attempts after a failure (0: none)")
    p.add_argument("--json", type=Path, default=None, help="write the transcript as JSON")
    p.add_argument("--srt", type=Path, default=None, help="write subtitles (SRT)")
    p.add_argument("--rttm", type=Path, default=None, help="write speaker turns (RTTM)")
    p.add_argument("--quiet", action="store_true", help="print nothing live (only the files and errors)")
    p.set_defaults(func=run)


def resolve_array(value: str, channels: int) -> str | list | None:
    if value == "auto":
        return AUTO_ARRAYS.get(channels)
    if value == "none":
        return None
    if value.lstrip().startswith("["):
        try:
            geometry = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"minutes stream: --array is not valid JSON: {exc}") from None
        return geometry
    return value


def _clock(t: float) -> str:
    m, s = divmod(max(t, 0.0), 60.0)
    return f"{int(m):02d}:{s:04.1f}"


class Printer:
    """Live output: one line redrawn for the partial, one line per final."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()
        self.partial_shown = False

    def _clear(self) -> None:
        if self.partial_shown:
            self.out.write("\r\x1b[2K")
            self.partial_shown = False

    def partial(self, ev) -> None:
        if self.quiet or not self.tty:
            return
        width = os.get_terminal_size(self.out.fileno()).columns if self.tty else 100
        prefix = f"[{_clock(ev.start)}] … "
        room = max(10, width - 1 - len(prefix))
        text = ev.text if len(ev.text) <= room else "…" + ev.text[-(room - 1):]  # the newest words
        self.out.write("\r\x1b[2K" + prefix + text)
        self.out.flush()
        self.partial_shown = True

    def final(self, seg) -> None:
        if self.quiet:
            return
        self._clear()
        who = seg.speaker or "--"
        az = [w.azimuth for w in seg.words if w.azimuth is not None]
        where = f" {az[len(az) // 2]:5.1f}°" if az else ""
        self.out.write(f"[{_clock(seg.start)} – {_clock(seg.end)}] {who}{where}: {seg.text}\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self._clear()
        print(text, file=sys.stderr, flush=True)


async def _stream(args: argparse.Namespace) -> int:
    from clients.audio import AudioSourceError, FileSource, MicSource
    from clients.client import ClientConfig, StartOptions, StreamingClient
    from clients.events import End, Final, Partial, Ready, ServerError, Speakers
    from clients.formats import apply_revisions, write_outputs
    from minutes.transcript import build_transcript

    if args.mic:
        source = MicSource(args.mic_rate, args.mic_channels, args.mic_device, args.duration)
    else:
        source = FileSource(args.file, start=args.start, duration=args.duration)
    channel = None if args.channel is None else (int(args.channel) if args.channel.isdigit() else args.channel)
    options = StartOptions(
        array=resolve_array(args.array, source.channels), encoding=args.encoding, partials=not args.no_partials,
        hotwords=tuple(args.hotword), diarisation=args.diarisation, model=args.model, channel=channel,
    )
    client = StreamingClient(ClientConfig(url=args.url, api_key=args.api_key, speed=args.speed, retries=args.retries))
    printer = Printer(sys.stdout, args.quiet)
    segments = []
    end = None
    ready_seen = False
    async for ev in client.stream(source, options):
        if isinstance(ev, Ready):
            if ready_seen:
                printer.note("minutes stream: reconnected; resending audio since the last final")
            ready_seen = True
            for w in ev.warnings:
                printer.note(f"minutes stream: server: {w}")
        elif isinstance(ev, Partial):
            printer.partial(ev)
        elif isinstance(ev, Final):
            segments.append(ev.segment)
            printer.final(ev.segment)
        elif isinstance(ev, Speakers) and ev.revised:
            segments = apply_revisions(segments, ev.revised)  # the files get the revised labels
        elif isinstance(ev, ServerError):
            printer.note(f"minutes stream: server error {ev.code}: {ev.message}")
        elif isinstance(ev, End):
            end = ev
    stats = client.stats.summary()
    tr = build_transcript(segments, duration=end.duration if end else client.stats.audio_seconds)
    file_id = args.file.stem if args.file else "mic"
    write_outputs(tr, json_path=args.json, srt_path=args.srt, rttm_path=args.rttm, file_id=file_id,
                  meta={"stats": stats, "end_reason": end.reason if end else None})
    if not args.quiet:
        printer.note("minutes stream: " + json.dumps(stats))
    return 0


def run(args: argparse.Namespace) -> int:
    from clients.audio import AudioSourceError
    from clients.client import ClientError

    try:
        return asyncio.run(_stream(args))
    except (ClientError, AudioSourceError) as exc:
        print(f"\nminutes stream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nminutes stream: interrupted", file=sys.stderr)
        return 130
