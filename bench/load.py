"""Load benchmark: how many concurrent real-time streams the server holds on this machine.

The server runs in its own process (`minutes serve`); this process is the client: it streams
N real-speech recordings (speechocean762 utterances joined with pauses) over `/v1/stream` at
real-time pace, 100 ms a frame, and times every event against the moment the audio it
covers was sent:

- partial latency: arrival of a `partial` − send time of the audio up to its `end`;
- first-partial latency: arrival of a segment's first `partial` − send time of its `start`;
- final latency: arrival of a `final` − send time of its `end` (this includes the
  endpointer's trailing-silence wait: the segment cannot close earlier).

Levels of N rise until p95 partial latency passes the budget (500 ms); the capacity is the
largest N within it. A soak then holds streams open for `--soak-seconds`, sampling the
server's resident memory, to show it stays flat on long streams.

    python -m bench.load --levels 4,8,16,24,32,48 --level-seconds 40 --soak-seconds 600
    python -m bench.load --levels 16 --level-seconds 30 --soak-seconds 600 --soak-streams 16 --merge

Every section records the model (name, version, sha256) and the git commit it ran with, so a
level measured with one model is never read as another's. `--merge` keeps the earlier file's
levels at stream counts not measured now (each keeps its own model stamp), and a readable
`load.md` is written beside the JSON (`--report-only` rewrites it from the JSON alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "speechocean762-train"
FRAME_S = 0.1
RATE = 16000


# -- audio ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clip:
    audio: np.ndarray  # int16 mono at RATE
    text: str  # its normalised reference transcript


def load_clips(limit: int, seed: int = 0) -> list[Clip]:
    files = sorted((DATA / "audio").glob("*/*.flac"))
    if not files:
        raise SystemExit(f"no speechocean762 FLACs under {DATA}")
    texts = dict(line.split("\t", 1) for line in (DATA / "text").read_text().splitlines() if "\t" in line)
    random.Random(seed).shuffle(files)
    clips = []
    for f in files[:limit]:
        x, sr = sf.read(f, dtype="int16")
        if sr != RATE:
            raise SystemExit(f"{f}: {sr} Hz, expected {RATE}")
        clips.append(Clip(x if x.ndim == 1 else x[:, 0], texts.get(f.stem, "")))
    return clips


def stream_audio(clips: list[Clip], seconds: float, seed: int) -> tuple[np.ndarray, str]:
    """Utterances in random order with 0.6–1.5 s pauses between, `seconds` long (whole
    utterances only, the rest silence, so the reference text is exactly what was spoken), and
    that reference."""
    rng = random.Random(seed)
    parts, texts, n, total = [], [], 0, int(seconds * RATE)
    while True:
        clip = clips[rng.randrange(len(clips))]
        gap = np.zeros(int(rng.uniform(0.6, 1.5) * RATE), dtype=np.int16)
        if n + len(clip.audio) > total and parts:
            break
        parts += [clip.audio, gap]
        texts.append(clip.text)
        n += len(clip.audio) + len(gap)
    audio = np.concatenate(parts)[:total]
    return np.concatenate([audio, np.zeros(total - len(audio), np.int16)]), " ".join(texts)


# -- one client stream ---------------------------------------------------------------------
@dataclass
class StreamStats:
    partial: list[float] = field(default_factory=list)
    first_partial: list[float] = field(default_factory=list)
    final: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    finals: int = 0
    ended: bool = False
    behind: float = 0.0  # how late the last frame went out (client pacing check)
    reference: str = ""  # what was spoken
    words: list[str] = field(default_factory=list)  # the finals' normalised tokens


async def run_stream(url: str, audio: np.ndarray, delay: float, stats: StreamStats) -> None:
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    frame = int(FRAME_S * RATE)
    n_frames = math.ceil(len(audio) / frame)
    sent_at = [math.inf] * n_frames
    seen_segments: set[int] = set()

    def sent(t: float) -> float:
        i = min(max(math.ceil(round(t / FRAME_S, 6)) - 1, 0), n_frames - 1)
        return sent_at[i]

    async with connect(url, max_size=2**22, open_timeout=60, close_timeout=10) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le", "channels": 1,
                                  "options": {"partials": True}}))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            stats.errors.append(ready.get("code", "no_ready"))
            return

        async def receive() -> None:
            async for raw in ws:
                now = time.monotonic()
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind == "partial":
                    stats.partial.append(now - sent(msg["end"]))
                    if msg["segment"] not in seen_segments:
                        seen_segments.add(msg["segment"])
                        stats.first_partial.append(now - sent(msg["start"]))
                elif kind == "final":
                    stats.finals += 1
                    stats.final.append(now - sent(msg["end"]))
                    stats.words += [w.get("token") or w["text"] for w in msg.get("words", [])]
                elif kind == "error":
                    stats.errors.append(msg["code"])
                elif kind == "end":
                    stats.ended = True
                    return

        rx = asyncio.create_task(receive())
        t0 = time.monotonic()
        for i in range(n_frames):
            due = t0 + (i + 1) * FRAME_S  # a frame exists only once its last sample was "spoken"
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            sent_at[i] = time.monotonic()
            await ws.send(audio[i * frame : (i + 1) * frame].tobytes())
        stats.behind = time.monotonic() - (t0 + n_frames * FRAME_S)
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(rx, timeout=120)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def summarise(all_stats: list[StreamStats]) -> dict:
    part = [v for s in all_stats for v in s.partial]
    first = [v for s in all_stats for v in s.first_partial]
    fin = [v for s in all_stats for v in s.final]
    return {
        "partials": len(part), "finals": sum(s.finals for s in all_stats),
        "partial_ms": {"p50": pct(part, 50), "p95": pct(part, 95), "max": pct(part, 100)},
        "first_partial_ms": {"p50": pct(first, 50), "p95": pct(first, 95)},
        "final_ms": {"p50": pct(fin, 50), "p95": pct(fin, 95)},
        "errors": sorted({e for s in all_stats for e in s.errors}),
        "streams_ended": sum(s.ended for s in all_stats),
        "client_behind_s_max": round(max((s.behind for s in all_stats), default=0.0), 3),
        **finals_wer(all_stats),
    }


def finals_wer(all_stats: list[StreamStats]) -> dict:
    """WER of the streams' finals against what was spoken (normalised text, as the asr bench
    scores): a faster endpointer must not buy its latency with cut-off words."""
    import jiwer

    from minutes.text import normalise_text

    done = [s for s in all_stats if s.ended and s.reference]
    if not done:
        return {}
    m = jiwer.process_words([normalise_text(s.reference) for s in done],
                            [normalise_text(" ".join(s.words)) or "<empty>" for s in done])
    return {"wer": round(100 * m.wer, 2), "wer_streams": len(done), "deletions": m.deletions,
            "substitutions": m.substitutions, "insertions": m.insertions}


# -- server --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(base: str, name: str) -> float | None:
    import httpx

    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def start_server(args: argparse.Namespace, port: int, tmp: Path) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "minutes", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--model", args.model, "--model-store", str(args.model_store), "--max-streams", "512", "--max-batch", str(args.max_batch),
           "--threads", str(args.threads), "--decoders", str(args.decoders), "--jobs-db", str(tmp / "jobs.sqlite"), "--jobs-dir", str(tmp / "jobs"),
           "--idle-timeout-seconds", "120"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"server did not become ready; see {tmp / 'server.log'}")


async def run_level(url: str, clips: list[Clip], n: int, seconds: float, seed: int) -> list[StreamStats]:
    stats = [StreamStats() for _ in range(n)]
    audio = [stream_audio(clips, seconds, seed * 1000 + i) for i in range(n)]
    for st, (_, ref) in zip(stats, audio):
        st.reference = ref
    tasks = [run_stream(url, a, random.Random(i).uniform(0, 1.0), stats[i]) for i, (a, _) in enumerate(audio)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for s, r in zip(stats, results):
        if isinstance(r, Exception):
            s.errors.append(f"client:{type(r).__name__}")
    return stats


def measure(proc: subprocess.Popen, base: str, url: str, clips, n: int, seconds: float, seed: int) -> dict:
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    dec0 = metric(base, "minutes_decode_seconds_sum") or 0.0
    stats = asyncio.run(run_level(url, clips, n, seconds, seed))
    wall = time.monotonic() - t0
    out = {"streams": n, "seconds": seconds, **summarise(stats),
           "server_cpu_cores": round((cpu_seconds(proc.pid) - cpu0) / wall, 2),
           # time inside batched decode calls (wall clock of the decoder thread, per second)
           "decoder_busy": round(((metric(base, "minutes_decode_seconds_sum") or 0.0) - dec0) / wall, 2),
           "server_rss_mb": round(rss_mb(proc.pid), 1)}
    bsum, bcount = metric(base, "minutes_decode_batch_size_sum"), metric(base, "minutes_decode_batch_size_count")
    out["mean_batch_so_far"] = round(bsum / bcount, 2) if bcount else None
    return out


async def soak(url: str, clips, n: int, seconds: float, proc: subprocess.Popen, every: float) -> tuple[list, list]:
    stats = [StreamStats() for _ in range(n)]
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()

    async def sampler() -> None:
        while True:
            samples.append((round(time.monotonic() - t0, 1), round(rss_mb(proc.pid), 1)))
            await asyncio.sleep(every)

    task = asyncio.create_task(sampler())
    tasks = [run_stream(url, stream_audio(clips, seconds, 777 + i)[0], random.Random(i).uniform(0, 1.0), stats[i])
             for i in range(n)]
    await asyncio.gather(*tasks, return_exceptions=True)
    task.cancel()
    samples.append((round(time.monotonic() - t0, 1), round(rss_mb(proc.pid), 1)))
    return stats, samples


def rss_summary(samples: list[tuple[float, float]], settle_s: float = 60.0) -> dict:
    """Start/end/min/max of the RSS samples and the least-squares growth after the first
    `settle_s` (allocator warm-up), in MB per hour: ~0 when memory is flat."""
    rss = [m for _, m in samples]
    late = [(t, m) for t, m in samples if t >= settle_s] or samples
    slope = 0.0
    if len(late) >= 3:
        t = np.array([x for x, _ in late]) / 3600.0
        slope = float(np.polyfit(t, np.array([m for _, m in late]), 1)[0])
    return {"rss_mb_start": rss[0], "rss_mb_end": rss[-1], "rss_mb_min": min(rss), "rss_mb_max": max(rss),
            "rss_mb_growth_per_hour_after_warmup": round(slope, 1)}


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "server", "engine", "decoding", "bench/load.py"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_stamp(base: str, name: str) -> dict:
    """Name, version and checksum of the model the server runs (from /readyz and /v1/models)."""
    import httpx

    info = dict(httpx.get(f"{base}/readyz", timeout=10).json().get("model") or {})
    try:
        body = httpx.get(f"{base}/v1/models", timeout=10).json()
        models = body.get("models", body) if isinstance(body, dict) else body
        for m in models:
            if m.get("name") == info.get("name", name) and str(m.get("version")) == str(info.get("version")):
                info.update({k: m[k] for k in ("sha256", "architecture", "parameters") if k in m})
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return info


def merge_levels(old: dict, new_levels: list[dict]) -> list[dict]:
    """Earlier levels at stream counts not measured now (stamped with their run's model)."""
    measured = {lv["streams"] for lv in new_levels}
    kept = []
    for lv in old.get("levels", []):
        if lv["streams"] in measured:
            continue
        lv = dict(lv)
        lv.setdefault("model", old.get("model_info"))
        lv.setdefault("git", old.get("git"))
        kept.append(lv)
    return sorted(kept + new_levels, key=lambda lv: lv["streams"])


def capacity_of(levels: list[dict], model: dict | None) -> int:
    """Largest N within budget with every smaller level (of the same model version) within it too."""
    same = [lv for lv in levels if model is None or not lv.get("model")
            or (lv["model"].get("name"), str(lv["model"].get("version"))) == (model.get("name"), str(model.get("version")))]
    cap = 0
    for lv in sorted(same, key=lambda lv: lv["streams"]):
        if not lv.get("within_budget"):
            break
        cap = lv["streams"]
    return cap


def _ms(d: dict | None, k: str) -> str:
    v = (d or {}).get(k)
    return "–" if v is None else f"{v:.0f}"


def write_report(result: dict, path: Path) -> None:
    """A readable summary of load.json."""
    m = result.get("model_info") or {}
    lines = [
        "# Load benchmark (`bench/load.py`)", "",
        f"Server: `minutes serve` on {result['machine']['cpus']} CPU cores ({result['machine']['platform']}), "
        f"max_batch {result['server']['max_batch']}, {result['server']['decoders']} decoder thread(s) × "
        f"{result['server']['threads']} torch thread(s). Clients: real speech (speechocean762 utterances with "
        "0.6–1.5 s pauses) sent in real time, 100 ms frames, over `/v1/stream`.", "",
        f"Model of the latest run: **{m.get('name')} v{m.get('version')}** (sha256 {str(m.get('sha256', '?'))[:12]}…), "
        f"git {result.get('git', '?')}, {result.get('measured', '?')}.", "",
        f"Capacity (largest N with p95 partial latency ≤ {result['budget_ms']:.0f} ms, every stream ended, no errors): "
        f"**{result.get('capacity_streams')} streams**.", "",
        "## Levels", "",
        "| streams | model | measured | partial p50 / p95 / max ms | first partial p50 / p95 ms | final p50 / p95 ms | server CPU cores | RSS MB | within budget |",
        "|---:|---|---|---|---|---|---:|---:|---|",
    ]
    for lv in result.get("levels", []):
        lm = lv.get("model") or result.get("model_info") or {}
        lines.append(
            f"| {lv['streams']} | {lm.get('name', '?')} v{lm.get('version', '?')} | {lv.get('measured', 'earlier run')} | "
            f"{_ms(lv['partial_ms'], 'p50')} / {_ms(lv['partial_ms'], 'p95')} / {_ms(lv['partial_ms'], 'max')} | "
            f"{_ms(lv['first_partial_ms'], 'p50')} / {_ms(lv['first_partial_ms'], 'p95')} | "
            f"{_ms(lv['final_ms'], 'p50')} / {_ms(lv['final_ms'], 'p95')} | {lv.get('server_cpu_cores')} | "
            f"{lv.get('server_rss_mb')} | {'yes' if lv.get('within_budget') else 'no'} |")
    soak_ = result.get("soak")
    if soak_:
        sm = soak_.get("model") or result.get("model_info") or {}
        lines += [
            "", "## Soak", "",
            f"{soak_['streams']} streams of {soak_['seconds']:.0f} s each (one continuous stream per client, "
            f"{sm.get('name', '?')} v{sm.get('version', '?')}, git {soak_.get('git', '?')}, measured {soak_.get('measured', result.get('measured', '?'))}):", "",
            f"- server RSS: before {soak_.get('rss_mb_before')} MB; during the soak start {soak_.get('rss_mb_start')}, "
            f"end {soak_.get('rss_mb_end')}, min {soak_.get('rss_mb_min')}, max {soak_.get('rss_mb_max')} MB; "
            f"first-half max {soak_.get('rss_mb_first_half_max')}, second-half max {soak_.get('rss_mb_second_half_max')} MB; "
            f"growth after the first minute {soak_.get('rss_mb_growth_per_hour_after_warmup')} MB/h (least squares)",
            f"- partial latency p50 / p95 / max: {_ms(soak_['partial_ms'], 'p50')} / {_ms(soak_['partial_ms'], 'p95')} / "
            f"{_ms(soak_['partial_ms'], 'max')} ms ({soak_['partials']} partials)",
            f"- first-partial latency p50 / p95: {_ms(soak_['first_partial_ms'], 'p50')} / {_ms(soak_['first_partial_ms'], 'p95')} ms",
            f"- final latency p50 / p95: {_ms(soak_['final_ms'], 'p50')} / {_ms(soak_['final_ms'], 'p95')} ms "
            f"({soak_['finals']} finals; includes the endpointer's 1 s trailing-silence wait)",
            f"- streams ended: {soak_['streams_ended']} / {soak_['streams']}; errors: {soak_['errors'] or 'none'}",
            "", "RSS over the soak, every minute (s → MB):", "",
            " · ".join(f"{t:.0f} → {m_:.1f}" for i, (t, m_) in enumerate(soak_.get("rss_mb_samples", []))
                       if i % 6 == 0 or i == len(soak_["rss_mb_samples"]) - 1),
        ]
    ls = result.get("long_stream")
    if ls:
        g = rss_summary([tuple(x) for x in ls["rss_mb_samples"]], settle_s=30.0)
        warm = next((m_ for t, m_ in ls["rss_mb_samples"] if t >= 30.0), ls["rss_mb_start"])
        lines += ["", "## One long stream (sent flat out)", "",
                  f"One stream of {ls['audio_minutes']} min of audio sent as fast as the server takes it "
                  f"(`--long-minutes`), decoded in {ls['wall_seconds']} s ({ls['segments']} finals, {ls['words']} words): "
                  f"server RSS {ls['rss_mb_start']} MB before, {warm} MB after the first 30 s (model warm-up), "
                  f"{ls['rss_mb_end']} MB at the end (max {ls['rss_mb_max']}); growth after warm-up "
                  f"{g['rss_mb_growth_per_hour_after_warmup']} MB per wall-clock hour, i.e. "
                  f"{(ls['rss_mb_end'] - warm) / max(ls['audio_minutes'] / 60, 1e-9):.1f} MB per hour of audio.",
                  "", "RSS every minute (s → MB): " + " · ".join(
                      f"{t:.0f} → {m_:.1f}" for i, (t, m_) in enumerate(ls["rss_mb_samples"]) if i % 12 == 0)]
    lines += ["", "Reproduce: `nice -n 0 .venv/bin/python -m bench.load --levels 16 --level-seconds 30 "
              "--soak-seconds 600 --soak-streams 16 --merge` (levels at other N: `--levels 4,8,...,96`; the long "
              "stream: `--levels '' --soak-seconds 0 --long-minutes 120 --merge`).", ""]
    path.write_text("\n".join(lines))


class _Running:
    """A server this benchmark did not start (nothing to stop)."""

    def __init__(self, pid: int | None):
        self.pid = pid

    def terminate(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> None:
        pass


async def long_stream(url: str, clips, minutes: float, proc, every: float = 5.0) -> dict:
    """One stream of `minutes` of audio sent as fast as the server takes it (it stops reading
    while its backlog is large): the server's memory over hours of one stream, in minutes."""
    from websockets.asyncio.client import connect

    audio, _ = stream_audio(clips, min(minutes * 60, 600), seed=4242)  # looped: 10 min of distinct audio at most
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    end: dict = {}

    async def sampler() -> None:
        while True:
            samples.append((round(time.monotonic() - t0, 1), round(rss_mb(proc.pid), 1)))
            await asyncio.sleep(every)

    task = asyncio.create_task(sampler())
    # no client keepalive: its ping would wait behind the audio the server reads at decode pace
    async with connect(url, max_size=2**22, open_timeout=60, ping_interval=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "options": {"partials": True}}))
        await ws.recv()

        async def receive() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "end":
                    end.update(msg)
                    return

        rx = asyncio.create_task(receive())
        sent, frame = 0.0, int(FRAME_S * RATE)
        while sent < minutes * 60:
            for i in range(0, len(audio), frame):
                await ws.send(audio[i : i + frame].tobytes())
            sent += len(audio) / RATE
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(rx, timeout=600)
    task.cancel()
    samples.append((round(time.monotonic() - t0, 1), round(rss_mb(proc.pid), 1)))
    rss = [m for _, m in samples]
    return {"audio_minutes": round(sent / 60, 1), "wall_seconds": round(time.monotonic() - t0, 1),
            "segments": end.get("segments"), "words": end.get("words"), "rtf": end.get("rtf"),
            **rss_summary(samples, settle_s=30.0), "rss_mb_samples": samples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--model-store", type=Path, default=REPO / "store")
    p.add_argument("--levels", default="4,8,16,24,32,48")
    p.add_argument("--level-seconds", type=float, default=40.0)
    p.add_argument("--soak-seconds", type=float, default=600.0)
    p.add_argument("--soak-streams", type=int, default=0, help="0: the measured capacity")
    p.add_argument("--budget-ms", type=float, default=500.0)
    p.add_argument("--long-minutes", type=float, default=0.0, help="also one stream this long, sent flat out")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--decoders", type=int, default=1)
    p.add_argument("--clips", type=int, default=300)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "load.json")
    p.add_argument("--url", default=None, help="use a running server (http://host:port) instead of starting one")
    p.add_argument("--server-pid", type=int, default=None, help="its pid, for memory and CPU readings")
    p.add_argument("--merge", action="store_true", help="keep the earlier file's levels at other stream counts")
    p.add_argument("--report-only", action="store_true", help="only rewrite load.md from the JSON")
    args = p.parse_args(argv)
    report = args.out.with_suffix(".md")
    if args.report_only:
        write_report(json.loads(args.out.read_text()), report)
        print(f"wrote {report}")
        return 0
    old = json.loads(args.out.read_text()) if args.merge and args.out.exists() else {}

    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="minutes-load-"))
    clips = load_clips(args.clips)
    if args.url:
        base = args.url.rstrip("/")
        proc = _Running(args.server_pid)
    else:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(args, port, tmp)
    url = base.replace("http", "ws", 1) + "/v1/stream"
    result: dict = {"model": args.model, "budget_ms": args.budget_ms, "machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "server": {"max_batch": args.max_batch, "threads": args.threads, "decoders": args.decoders}, "levels": [],
        "git": git_commit(), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        stamp = model_stamp(base, args.model)
        result["model_info"] = stamp
        result["idle_rss_mb"] = round(rss_mb(proc.pid), 1)
        capacity = 0
        for n in [int(v) for v in args.levels.split(",") if v.strip()]:
            level = measure(proc, base, url, clips, n, args.level_seconds, seed=n)
            level["model"], level["git"], level["measured"] = stamp, result["git"], result["measured"]
            p95 = level["partial_ms"]["p95"]
            level["within_budget"] = bool(p95 is not None and p95 <= args.budget_ms and not level["errors"]
                                          and level["streams_ended"] == n)
            result["levels"].append(level)
            print(json.dumps(level), flush=True)
            if not level["within_budget"]:
                break
            capacity = n
        result["capacity_streams"] = capacity
        if old:
            result["levels"] = merge_levels(old, result["levels"])
            result["capacity_streams"] = capacity_of(result["levels"], stamp)
            result["capacity_this_run"] = capacity
        n_soak = args.soak_streams or capacity
        if args.soak_seconds > 0 and n_soak > 0:
            rss_before = rss_mb(proc.pid)
            stats, samples = asyncio.run(soak(url, clips, n_soak, args.soak_seconds, proc, every=10.0))
            rss = [m for _, m in samples]
            half = len(rss) // 2
            result["soak"] = {
                "streams": n_soak, "seconds": args.soak_seconds, "model": stamp, "git": result["git"],
                "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **summarise(stats), "rss_mb_before": round(rss_before, 1), **rss_summary(samples), "rss_mb_first_half_max": max(rss[: half or 1]),
                "rss_mb_second_half_max": max(rss[half:]), "rss_mb_samples": samples,
            }
            print(json.dumps({k: v for k, v in result["soak"].items() if k != "rss_mb_samples"}), flush=True)
        elif old.get("soak"):
            result["soak"] = old["soak"]
        if args.long_minutes > 0:
            result["long_stream"] = asyncio.run(long_stream(url, clips, args.long_minutes, proc))
            print(json.dumps({k: v for k, v in result["long_stream"].items() if k != "rss_mb_samples"}), flush=True)
        result["final_rtf_gauge"] = metric(base, "minutes_rtf")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    write_report(result, report)
    print(f"wrote {args.out} and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
