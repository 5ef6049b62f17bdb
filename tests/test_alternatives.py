"""N-best alternatives (`options.alternatives` on /v1/stream, `max_alternatives` on the Vosk
endpoint): distinct texts, best first, the first one the final's own words, their probability
shares summing to 1; through the recogniser and a real server on loopback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decoding.options import SearchRequest
from tests.test_server_hotwords import _start, rec, server  # noqa: F401  (a real server, the loaded default)
from tests.test_server_stream import SO, clip, drain, model_store, send_audio, ws  # noqa: F401

pytestmark = pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")
CLIP = "SPEAKER0005/000050003"


def _check(alts, final_tokens, n):
    texts = [a["text"] for a in alts]
    assert 1 <= len(alts) <= n and len(set(texts)) == len(texts), texts
    assert texts[0] == " ".join(final_tokens)
    assert sum(a["confidence"] for a in alts) == pytest.approx(1.0, abs=0.01) or len(alts) == n  # cut at n
    assert all(0 <= a["confidence"] <= 1 for a in alts) and alts[0]["confidence"] > 0
    assert [a["score"] for a in alts] == sorted((a["score"] for a in alts), reverse=True)
    for a in alts:
        assert " ".join(w["text"] for w in a["words"]) == a["text"]
        assert all(0 <= w["start"] <= w["end"] for w in a["words"])


def _one_segment(rec, options, x):
    """The whole clip decoded as one segment (no endpoints): the stream and its words."""
    s = rec.new_stream(options)
    s.accept_waveform(x)
    s.input_finished()
    while rec.is_ready(s):
        rec.decode_streams([s])
    return s, s.reset_segment()


def test_plan_widens_the_beam_and_segments_carry_distinct_texts(rec):
    if rec.default_decoder == "ctc":
        pytest.skip("the CTC head has one hypothesis")
    options, plan = rec.plan(alternatives=6, search=SearchRequest(search="greedy"))
    assert (options.search, options.nbest, plan.alternatives) == ("beam", 6, 6)
    assert options.beam_size >= 6 and any("alternatives need the beam" in w for w in plan.warnings)
    x = clip(CLIP).astype(np.float32)
    s, words = _one_segment(rec, options, x)
    alts = [a.to_dict() for a in s.alternatives]
    _check(alts, [w.text for w in words], 6)
    assert len(alts) >= 2, "a 6-wide beam over a whole utterance holds more than one text"
    options, plan = rec.plan(alternatives=1, search=SearchRequest(search="greedy"))
    assert options.search == "greedy" and plan.alternatives == 1  # one alternative needs no beam
    g, words = _one_segment(rec, options, x)
    assert [a.text for a in g.alternatives] == [" ".join(w.text for w in words)] and g.alternatives[0].confidence == 1.0


def test_stream_and_vosk_alternatives(server, rec):
    if rec.default_decoder == "ctc":
        pytest.skip("the CTC head has one hypothesis")
    x = clip(CLIP).astype(np.float32)
    with ws(server) as conn:
        for bad in (11, -1, "3", 2.5):
            err = _start(conn, alternatives=bad)
            assert err["type"] == "error" and err["code"] == "invalid_start" and "alternatives" in err["message"], err
        ready = _start(conn, partials=False, alternatives=4, format="raw")
        assert ready["decoding"]["alternatives"] == 4 and ready["decoding"]["search"] == "beam"
        send_audio(conn, x, len(x), "<f4")
        conn.send(json.dumps({"type": "stop"}))
        events, _ = drain(conn)
    finals = [e for e in events if e["type"] == "final"]
    assert finals and all("alternatives" in f for f in finals)
    for f in finals:
        _check(f["alternatives"], [w["text"] for w in f["words"]], 4)
    with ws(server) as conn:  # not asked: not sent
        _start(conn, partials=False)
        send_audio(conn, x, len(x), "<f4")
        conn.send(json.dumps({"type": "stop"}))
        events, _ = drain(conn)
    assert not any("alternatives" in e for e in events if e["type"] == "final")
    with ws(server, "/v1/vosk") as conn:
        conn.send(json.dumps({"config": {"sample_rate": 16000, "max_alternatives": 3}}))
        conn.send((x * 32767).astype("<i2").tobytes())
        replies = [json.loads(conn.recv(timeout=60))]
        conn.send('{"eof" : 1}')
        replies.append(json.loads(conn.recv(timeout=60)))
    alts = [r["alternatives"] for r in replies if "alternatives" in r and r["alternatives"][0]["text"]]
    assert alts, replies
    for a in alts:
        texts = [x["text"] for x in a]
        assert 1 <= len(a) <= 3 and len(set(texts)) == len(texts) and texts[0] == texts[0].lower()
        assert all(set(x) == {"confidence", "result", "text"} for x in a)
        assert all(" ".join(w["word"] for w in x["result"]) == x["text"] for x in a)
