"""Per-stream chunk width (`options.chunk_seconds`, the REST `chunk_seconds` field, and the model's
batch chunk for files) reaches the encoder.

- the recogniser rounds a request to a multiple of its trained chunk (1..8 of them) and says so;
- a wide-chunk stream fed in 0.1 s pieces gives exactly what it gives fed in whole chunks (the
  chunk boundaries, not the client's message sizes, decide the numbers);
- through a real server on loopback: `ready` echoes the chunk applied, a stream with a wide
  chunk batched beside one with the trained chunk gets exactly its offline words, bad values
  get `invalid_start`; a REST file is decoded with the model's batch chunk unless asked.
"""

from __future__ import annotations

import contextlib

import httpx
import numpy as np
import pytest

from tests.test_server_hotwords import _start, rec, server  # noqa: F401  (a real server, the loaded default)
from tests.test_server_search import final_tokens
from tests.test_server_stream import SO, clip, model_store, ws  # noqa: F401

pytestmark = pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")
CLIP = "SPEAKER0005/000050003"


def test_chunk_requests_are_rounded_to_multiples_of_the_trained_chunk(rec):
    c = rec.chunk_seconds
    options, plan = rec.plan(chunk_seconds=4 * c)
    assert options.chunk_seconds == pytest.approx(4 * c) and plan.chunk_seconds == pytest.approx(4 * c)
    assert not plan.warnings
    assert rec.new_stream(options).chunk_frames == 4 * rec.chunk_frames
    _, plan = rec.plan(chunk_seconds=2.6 * c)
    assert plan.chunk_seconds == pytest.approx(3 * c) and "rounded" in plan.warnings[0]
    _, plan = rec.plan(chunk_seconds=100 * c)
    assert plan.chunk_seconds == pytest.approx(rec.MAX_CHUNK_MULTIPLE * c) and plan.warnings
    _, plan = rec.plan()
    assert plan.chunk_seconds == pytest.approx(c) and rec.new_stream().chunk_frames == rec.chunk_frames


def test_wide_chunks_do_not_depend_on_message_sizes(rec):
    x = clip(CLIP).astype(np.float32)
    options, _ = rec.plan(chunk_seconds=4 * rec.chunk_seconds)
    small = [w.text for w in rec.transcribe(x, options, chunk_samples=1600)]
    whole = [w.text for w in rec.transcribe(x, options)]
    assert small == whole and whole


def test_stream_and_rest_chunks(server, rec):
    x = clip(CLIP).astype(np.float32)
    wide = 4 * rec.chunk_seconds
    want = {k: [w.text for w in rec.transcribe(x, rec.plan(chunk_seconds=v)[0])]
            for k, v in {"trained": None, "wide": wide}.items()}
    with contextlib.ExitStack() as stack:
        conns = {k: stack.enter_context(ws(server)) for k in want}
        for bad in (0, -1, "wide", 11, True):
            err = _start(conns["wide"], chunk_seconds=bad)
            assert err["type"] == "error" and err["code"] == "invalid_start" and "chunk_seconds" in err["message"], err
        readies = {"trained": _start(conns["trained"], partials=False),
                   "wide": _start(conns["wide"], partials=False, chunk_seconds=wide)}
        assert readies["trained"]["chunk_seconds"] == pytest.approx(rec.chunk_seconds)
        assert readies["wide"]["chunk_seconds"] == pytest.approx(wide) == readies["wide"]["decoding"]["chunk_seconds"]
        got = final_tokens(conns, x)
    assert got == want and want["wide"], (got, want)

    base = f"http://{server}/v1/transcriptions"
    data = (SO / "audio" / f"{CLIP}.flac").read_bytes()
    r = httpx.post(base, files={"file": ("a.flac", data)}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["decoding"]["chunk_seconds"] == pytest.approx(rec.batch_chunk_seconds)
    batch = [w.text for w in rec.transcribe(x, rec.plan(chunk_seconds=rec.batch_chunk_seconds)[0])]
    assert [w["token"] for s in r.json()["segments"] for w in s["words"]] == batch
    r = httpx.post(base, files={"file": ("a.flac", data)}, data={"chunk_seconds": str(rec.chunk_seconds)}, timeout=120)
    assert r.status_code == 200 and r.json()["decoding"]["chunk_seconds"] == pytest.approx(rec.chunk_seconds)
    assert [w["token"] for s in r.json()["segments"] for w in s["words"]] == want["trained"]
    for bad in ("0", "soon", "-2", "11"):
        r = httpx.post(base, files={"file": ("a.flac", data)}, data={"chunk_seconds": bad}, timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "invalid_field" and "chunk_seconds" in r.json()["message"], r.text
