"""`options.search` (streams) and the `search` form field (REST) reach the decoder.

Through a real server on loopback with the store's default model:
- bad values get `invalid_search` naming the key, and the stream waits for a valid `start`;
- `ready` echoes the search applied (greedy, or the beam with its size and fusion weights), and
  says so when a fusion weight was asked of a model without an external LM;
- a greedy stream and a beam stream of the same clip, batched together, each get exactly the
  words the recogniser gives offline with the same options;
- REST `POST /v1/transcriptions` takes the same object as a JSON form field.
"""

from __future__ import annotations

import contextlib
import json

import httpx
import numpy as np
import pytest

from decoding.options import SearchRequest
from tests.test_server_hotwords import _start, rec, server  # noqa: F401  (the same fixtures: a real server, the loaded default)
from tests.test_server_stream import SO, clip, drain, model_store, send_audio, ws  # noqa: F401

pytestmark = pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")
CLIP = "SPEAKER0005/000050003"


def test_bad_search_refused_then_each_search_decodes_as_offline(server, rec):
    if rec.default_decoder == "ctc":
        pytest.skip("the CTC head has no search to choose")
    x = clip(CLIP).astype(np.float32)
    has_lm = rec.beam.search.lm is not None
    asks = {"greedy": "greedy", "beam": {"beam": 2, "lm_weight": 0.3, "ilm_weight": 0.1}}
    same = {"greedy": SearchRequest("greedy"), "beam": SearchRequest("beam", 2, 0.3, 0.1)}  # `asks`, parsed
    want = {k: [w.text for w in rec.transcribe(x, rec.plan(search=req)[0])] for k, req in same.items()}
    with contextlib.ExitStack() as stack:
        conns = {k: stack.enter_context(ws(server)) for k in asks}
        for value, says in [("viterbi", "search must be"), ({"beam": 99}, "search.beam"),
                            ({"lm_weight": -1}, "search.lm_weight"), ({"beam": 2, "alpha": 1}, "unknown key")]:
            err = _start(conns["greedy"], search=value)
            assert err["type"] == "error" and err["code"] == "invalid_search" and says in err["message"], err
        readies = {k: _start(conns[k], partials=False, search=v) for k, v in asks.items()}
        g, b = readies["greedy"]["decoding"], readies["beam"]["decoding"]
        assert (g["search"], g["beam_size"], g["lm_weight"], g["ilm_weight"]) == ("greedy", None, 0.0, 0.0)
        assert (b["search"], b["beam_size"], b["ilm_weight"]) == ("beam", 2, 0.1)
        assert b["lm_weight"] == (0.3 if has_lm else 0.0)
        assert any("no external LM" in w for w in readies["beam"]["warnings"]) == (not has_lm)
        got = final_tokens(conns, x)
    assert got == want and want["greedy"], (got, want)


def final_tokens(conns: dict, x: np.ndarray) -> dict[str, list[str]]:
    """Send the clip on every started connection at once (the server batches them), stop, and
    read each one's final words as the recogniser's tokens."""
    for conn in conns.values():
        send_audio(conn, x, len(x), "<f4")
        conn.send(json.dumps({"type": "stop"}))
    got = {}
    for k, conn in conns.items():
        events, _ = drain(conn)
        got[k] = [w["token"] for e in events if e["type"] == "final" for w in e["words"]]
    return got


def test_rest_takes_the_search_field(server, rec):
    base = f"http://{server}/v1/transcriptions"
    data = (SO / "audio" / f"{CLIP}.flac").read_bytes()
    r = httpx.post(base, files={"file": ("a.flac", data)}, data={"search": '{"beam": 3}'}, timeout=120)
    assert r.status_code == 200, r.text
    if rec.default_decoder != "ctc":
        assert (r.json()["decoding"]["search"], r.json()["decoding"]["beam_size"]) == ("beam", 3)
        batch = rec.plan(search=SearchRequest("beam", 3), chunk_seconds=rec.batch_chunk_seconds)[0]  # as files are cut
        want = [w.text for w in rec.transcribe(clip(CLIP), batch)]
        assert [w["token"] for s in r.json()["segments"] for w in s["words"]] == want
    for value, says in [('{"beam": "wide"}', "search.beam"), ("{oops", "JSON"), ("sideways", "search must be")]:
        r = httpx.post(base, files={"file": ("a.flac", data)}, data={"search": value}, timeout=60)
        assert r.status_code == 400 and r.json()["code"] == "invalid_search" and says in r.json()["message"], r.text
