"""A real server with a model: the v1 stream, the Vosk endpoint driven by a client written to
Vosk's documentation, REST files and formats, diarisation wiring, batching, limits, abrupt
disconnects, and a restart with a job in flight.

The model: the trained `store/default` when the repo has one (then the content checks on real
speech run too); otherwise a tiny randomly initialised transducer built here through the ASR
package's public functions, which exercises every protocol path but says nothing sensible.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from compression.store import ModelStore
from minutes.text import normalise_text
from tests.conftest import REPO, SHARED_DATA, free_port, start_server

SO = SHARED_DATA / "speechocean762-train"
CLIPS = ["SPEAKER0001/000010011", "SPEAKER0001/000010035", "SPEAKER0005/000050003"]
pytestmark = pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")


def clip(name: str) -> np.ndarray:
    x, sr = sf.read(SO / "audio" / f"{name}.flac", dtype="float32")
    assert sr == 16000
    return x


def reference(name: str) -> str:
    key = name.split("/")[1]
    for line in (SO / "text").read_text().splitlines():
        if line.startswith(key + "\t"):
            return line.split("\t", 1)[1]
    raise KeyError(name)


def speech_with_pauses(names=CLIPS, pause: float = 1.6) -> np.ndarray:
    parts = []
    for n in names:
        parts += [clip(n), np.zeros(int(pause * 16000), np.float32)]
    return np.concatenate(parts)


def build_tiny_model(folder: Path) -> None:
    """A random-init streaming transducer + BPE tokenizer, saved as the recogniser loads it."""
    import torch

    from decoding.tokenizer import Tokenizer
    from models.encoder import EncoderConfig
    from models.transducer import Transducer, TransducerConfig, save_checkpoint

    torch.manual_seed(0)
    texts = [line.split("\t", 1)[1] for line in (SO / "text").read_text().splitlines()]
    tok = Tokenizer.train(texts, 64, folder / "tok")
    cfg = TransducerConfig(vocab_size=tok.vocab_size, embed_dim=64, pred_dim=64, joint_dim=64,
                           encoder=EncoderConfig(d_model=64, n_layers=2, n_heads=2, subsample_channels=16))
    save_checkpoint(folder / "src" / "model.pt", Transducer(cfg), {"tokenizer": tok.proto})


@pytest.fixture(scope="module")
def model_store(tmp_path_factory) -> tuple[Path, bool]:
    """(store root, whether it is the trained default model)."""
    real = Path(os.environ.get("MINUTES_MODEL_STORE", REPO / "store"))  # as the clients' tests read it
    if ModelStore(real).versions("default"):
        return real, True
    tmp = tmp_path_factory.mktemp("tinymodel")
    build_tiny_model(tmp)
    store = ModelStore(tmp / "store")
    store.publish(tmp / "src", "default", "conformer-transducer", description="random init (tests)")
    store.publish(tmp / "src", "default", "conformer-transducer", description="random init (tests), again: a second version")
    store.publish(tmp / "src", "tiny-b", "conformer-transducer", sparsity=0.0, base="default/1")
    shutil.copytree(REPO / "store" / "punctuator", tmp / "store" / "punctuator")  # finals' display text
    return tmp / "store", False


def serve(store: Path, tmp: Path, *extra: str):
    port = free_port()
    proc = start_server(["--model-store", str(store), "--jobs-db", str(tmp / "jobs.sqlite"), "--jobs-dir", str(tmp / "jobs"),
                         *extra], port)
    deadline = time.monotonic() + 120
    while httpx.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "model did not load"
        time.sleep(0.2)
    return proc, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(model_store, tmp_path_factory):
    proc, addr = serve(model_store[0], tmp_path_factory.mktemp("srv"), "--idle-timeout-seconds", "8",
                       "--max-session-seconds", "25", "--max-message-bytes", "400000", "--max-streams", "16")
    yield addr
    proc.terminate()
    proc.wait(timeout=20)


def ws(addr: str, path: str = "/v1/stream"):
    return connect(f"ws://{addr}{path}", open_timeout=30, close_timeout=5, max_size=2**24)


def drain(conn, timeout: float = 120) -> tuple[list[dict], int]:
    """Every message until the server closes, and its close code."""
    out = []
    try:
        while True:
            out.append(json.loads(conn.recv(timeout=timeout)))
    except ConnectionClosed as exc:
        return out, exc.rcvd.code if exc.rcvd else -1


def send_audio(conn, x: np.ndarray, frame: int, dtype: str = "<i2") -> None:
    data = (np.clip(x, -1, 1) * 32767).astype(dtype) if dtype == "<i2" else x.astype(dtype)
    for i in range(0, len(data), frame):
        conn.send(data[i : i + frame].tobytes())


def metric(addr: str, name: str) -> float:
    for line in httpx.get(f"http://{addr}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


def check_stream_events(events: list[dict], duration: float) -> dict:
    """Invariants of docs/protocol.md for one stream's events; returns the `end`."""
    partials = [e for e in events if e["type"] == "partial"]
    finals = [e for e in events if e["type"] == "final"]
    assert events[-1]["type"] == "end"
    end = events[-1]
    last: dict[int, dict] = {}
    for p in partials:
        assert isinstance(p["segment"], int) and isinstance(p["text"], str) and p["text"]
        assert 0 <= p["stable_chars"] <= len(p["text"]) and p["start"] <= p["end"] <= duration + 0.01
        prev = last.get(p["segment"])
        if prev is not None:  # the stable prefix never changes
            assert p["text"].startswith(prev["text"][: prev["stable_chars"]]), (prev, p)
            assert p["text"] != prev["text"]
        last[p["segment"]] = p
    ids = [f["segment"] for f in finals]
    assert ids == sorted(set(ids))
    for f in finals:
        assert f["text"] == " ".join(w["text"] for w in f["words"]) and f["words"]
        assert f["start"] == f["words"][0]["start"] and f["end"] == f["words"][-1]["end"]
        for w in f["words"]:
            assert 0 <= w["start"] <= w["end"] <= duration + 0.2 and 0 <= w["conf"] <= 1
            # display text (cased, punctuated) beside the recogniser's token; the same word
            assert set(w) == {"text", "token", "start", "end", "conf", "speaker", "azimuth"}
            assert normalise_text(w["text"]) == w["token"] and w["token"] == w["token"].upper()
    assert abs(end["duration"] - duration) < 0.01
    assert end["segments"] == len(finals) and end["words"] == sum(len(f["words"]) for f in finals)
    assert end["text"] == " ".join(f["text"] for f in finals)
    assert end["processing_seconds"] > 0 and end["rtf"] > 0
    return end


def test_stream_ready_events_and_bad_input_mid_stream(server):
    x = speech_with_pauses()
    stereo = np.stack([resample_poly(x, 3, 1), resample_poly(x, 3, 1)], axis=1).astype("<f4")  # 48 kHz
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 48000, "encoding": "pcm_f32le", "channels": 2,
                              "options": {"hotwords": ["bear"], "model": "default"}}))
        ready = json.loads(conn.recv(timeout=30))
        assert ready["type"] == "ready" and ready["resampled"] is True and ready["model_sample_rate"] == 16000
        assert ready["channels"] == 2 and ready["encoding"] == "pcm_f32le" and ready["chunk_seconds"] > 0
        assert ready["model"]["name"] == "default" and ready["options"]["diarisation"] is False
        if not ready["options"]["hotwords"]:
            assert any("hotword" in w for w in ready["warnings"])  # said, not silently dropped
        half = len(stereo) // 2
        send_audio(conn, stereo[:half], 4800, "<f4")
        conn.send(b"\x00" * 7)  # not a whole frame
        conn.send(np.full(8, np.nan, "<f4").tobytes())  # not finite
        conn.send(b"\x00" * 400_008)  # over max_message_bytes
        conn.send(json.dumps({"type": "start", "sample_rate": 16000}))
        conn.send("garbage")
        send_audio(conn, stereo[half:], 4800, "<f4")
        conn.send(json.dumps({"type": "stop"}))
        conn.send(b"\x00" * 16)  # after stop
        events, code = drain(conn)
    assert code == 1000
    errors = [(e["code"], e["fatal"]) for e in events if e["type"] == "error"]
    assert errors == [("bad_frame", False), ("bad_audio", False), ("message_too_large", False),
                      ("already_started", False), ("bad_json", False), ("stopped", False)]
    check_stream_events([e for e in events if e["type"] != "error"], len(x) / 16000)


def test_streamed_finals_are_the_recognisers_own_words(server, model_store):
    """Framing, the batching worker and endpointing in the server change nothing: a stream's
    finals are exactly the words the recogniser gives offline for the same audio (any model,
    so this holds for the tiny one too); the trained model must also say something."""
    import torch

    from decoding.recogniser import Recogniser

    torch.set_num_threads(1)
    rec = Recogniser.load(ModelStore(model_store[0]).resolve("default")[0])
    x = speech_with_pauses().astype(np.float32)
    want = [(w.text, w.start, w.end) for w in rec.transcribe(x)]
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_f32le"}))
        assert json.loads(conn.recv(timeout=30))["type"] == "ready"
        send_audio(conn, x, 1600, "<f4")
        conn.send(json.dumps({"type": "stop"}))
        events, code = drain(conn)
    assert code == 1000
    check_stream_events(events, len(x) / 16000)
    got = [(w["token"], w["start"], w["end"]) for e in events if e["type"] == "final" for w in e["words"]]
    assert got == want
    if model_store[1]:  # the trained model: real speech gives words and partials before them
        assert got and any(e["type"] == "partial" for e in events)


def test_raw_and_display_text_forms(server):
    """The same audio as `options.format` raw and display (the default): the display words are
    the raw tokens, cased and punctuated; partials keep their stable-prefix promise; a format
    the server does not know is refused; REST's `text` field does the same."""
    x = speech_with_pauses().astype(np.float32)
    runs = {}
    for fmt in ("raw", "display"):
        with ws(server) as conn:
            conn.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_f32le",
                                  "options": {"format": fmt}}))
            ready = json.loads(conn.recv(timeout=30))
            assert ready["type"] == "ready" and ready["options"]["format"] == fmt, ready
            send_audio(conn, x, 1600, "<f4")
            conn.send(json.dumps({"type": "stop"}))
            runs[fmt], _ = drain(conn)
    raw = [w for e in runs["raw"] if e["type"] == "final" for w in e["words"]]
    shown = [w for e in runs["display"] if e["type"] == "final" for w in e["words"]]
    assert raw and all("token" not in w and w["text"] == w["text"].upper() for w in raw)
    assert [w["token"] for w in shown] == [w["text"] for w in raw]
    assert [(w["start"], w["end"], w["conf"]) for w in shown] == [(w["start"], w["end"], w["conf"]) for w in raw]
    finals = [e for e in runs["display"] if e["type"] == "final"]
    assert finals[0]["text"][0].isupper(), finals[0]["text"]  # the stream's first word starts a sentence
    assert any(c.islower() for f in finals for c in f["text"]), "display text is cased"
    partials = [e for e in runs["display"] if e["type"] == "partial"]
    for a, b in zip(partials, partials[1:]):
        if a["segment"] == b["segment"]:
            assert b["text"].startswith(a["text"][: a["stable_chars"]]), (a, b)
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"format": "bold"}}))
        err = json.loads(conn.recv(timeout=30))
        assert err["type"] == "error" and err["code"] == "invalid_start" and "format" in err["message"], err
    data = (SO / "audio" / f"{CLIPS[0]}.flac").read_bytes()
    r = httpx.post(f"http://{server}/v1/transcriptions", files={"file": ("a.flac", data)}, data={"text": "raw"}, timeout=120)
    assert r.status_code == 200 and r.json()["text_format"] == "raw", r.text
    assert all("token" not in w for s in r.json()["segments"] for w in s["words"])
    r = httpx.post(f"http://{server}/v1/transcriptions", files={"file": ("a.flac", data)}, data={"text": "fancy"}, timeout=120)
    assert r.status_code == 400 and r.json()["code"] == "invalid_field", r.text


def test_vosk_client_from_the_vosk_documentation(server, model_store, tmp_path):
    """vosk-server's `test_simple.py`: config, 0.2 s chunks each answered once, then eof."""
    import wave

    import websockets

    path = tmp_path / "t.wav"
    sf.write(path, speech_with_pauses(CLIPS[:2]), 16000, subtype="PCM_16")
    replies: list[str] = []

    async def run_test(uri):
        async with websockets.connect(uri) as websocket:
            wf = wave.open(str(path), "rb")
            await websocket.send('{ "config" : { "sample_rate" : %d } }' % (wf.getframerate()))
            buffer_size = int(wf.getframerate() * 0.2)  # 0.2 seconds of audio
            while True:
                data = wf.readframes(buffer_size)
                if len(data) == 0:
                    break
                await websocket.send(data)
                replies.append(await websocket.recv())
            await websocket.send('{"eof" : 1}')
            replies.append(await websocket.recv())
            await asyncio.wait_for(websocket.wait_closed(), 10)
            return websocket.close_code

    assert asyncio.run(run_test(f"ws://{server}")) == 1000
    n_chunks = int(np.ceil(len(sf.read(path)[0]) / 3200))
    assert len(replies) == n_chunks + 1
    msgs = [json.loads(r) for r in replies]
    for m in msgs[:-1]:
        assert set(m) in ({"partial"}, {"result", "text"}, {"text"}), m
    assert set(msgs[-1]) <= {"result", "text"} and "text" in msgs[-1]
    words = [w for m in msgs if "result" in m for w in m["result"]]
    for w in words:
        assert set(w) == {"conf", "start", "end", "word"} and w["word"] == w["word"].lower()
        assert 0 <= w["start"] <= w["end"] and 0 <= w["conf"] <= 1
    import torch

    from decoding.recogniser import Recogniser

    torch.set_num_threads(1)
    rec = Recogniser.load(ModelStore(model_store[0]).resolve("default")[0])
    want = [(w.text.lower(), w.start, w.end) for w in rec.transcribe(sf.read(path, dtype="float32")[0])]
    assert [(w["word"], w["start"], w["end"]) for w in words] == want  # Vosk's words are the recogniser's


def test_vosk_endpoint_errors_reset_and_path(server):
    with ws(server, "/v1/vosk") as conn:
        conn.send(json.dumps({"config": {"sample_rate": 8000, "words": False}}))
        conn.send(b"\x01\x02\x03")
        assert json.loads(conn.recv(timeout=30))["code"] == "bad_frame"
        conn.send("{oops")
        assert json.loads(conn.recv(timeout=10))["code"] == "bad_json"
        for bad in ({"sample_rate": "fast"}, {"max_alternatives": "x"}, [1]):
            conn.send(json.dumps({"config": bad}))
            assert json.loads(conn.recv(timeout=10))["code"] == "invalid_config"
        conn.send((resample_poly(clip(CLIPS[0]), 1, 2) * 32767).astype("<i2").tobytes())
        assert set(json.loads(conn.recv(timeout=60))) in ({"partial"}, {"text"})
        conn.send('{"reset" : 1}')
        reset = json.loads(conn.recv(timeout=60))
        assert set(reset) == {"text"}  # words: false leaves out the word list
        conn.send('{"eof" : 1}')
        assert json.loads(conn.recv(timeout=60)) == {"text": ""}  # nothing since the reset
        _, code = drain(conn)
        assert code == 1000
    with ws(server, "/v1/vosk") as conn:  # alternatives, as vosk-server shapes them
        conn.send(json.dumps({"config": {"sample_rate": 16000, "max_alternatives": 1}}))
        conn.send((clip(CLIPS[0]) * 32767).astype("<i2").tobytes())
        conn.recv(timeout=60)
        conn.send('{"eof" : 1}')
        (alt,) = json.loads(conn.recv(timeout=60))["alternatives"]
        assert set(alt) == {"confidence", "result", "text"}
        assert all(set(w) == {"start", "end", "word"} for w in alt["result"])


def test_unknown_model_then_valid_start(server):
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"model": "no-such-model"}}))
        err = json.loads(conn.recv(timeout=30))
        assert err["code"] == "unknown_model" and err["fatal"] is False
        for model, code, says in [("default/999999", "unknown_model", "no version '999999'"),
                                  ("no-such-model/1", "unknown_model", "no-such-model"),
                                  ("default/1/2", "invalid_start", "options.model"),
                                  ("default/", "invalid_start", "name/version"), ("/1", "invalid_start", "name/version")]:
            conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"model": model}}))
            err = json.loads(conn.recv(timeout=30))
            assert (err["type"], err["code"], err["fatal"]) == ("error", code, False), (model, err)
            assert says in err["message"], (model, err)
        conn.send(json.dumps({"type": "start", "sample_rate": 16000}))
        assert json.loads(conn.recv(timeout=30))["type"] == "ready"
        conn.send(json.dumps({"type": "stop"}))
        events, code = drain(conn)
        assert code == 1000 and events[-1]["type"] == "end" and events[-1]["duration"] == 0


def test_abrupt_disconnects_free_the_stream_at_once(server):
    x = (clip(CLIPS[0]) * 32767).astype("<i2").tobytes()
    conns, stack = [], contextlib.ExitStack()
    for _ in range(3):
        conn = stack.enter_context(ws(server))
        conn.send(json.dumps({"type": "start", "sample_rate": 16000}))
        assert json.loads(conn.recv(timeout=30))["type"] == "ready"
        conn.send(x)
        conns.append(conn)
    assert metric(server, 'minutes_active_streams{endpoint="stream"}') >= 3
    for conn in conns:  # vanish: no close frame, no stop
        conn.socket.shutdown(socket.SHUT_RDWR)
        conn.socket.close()
    with contextlib.suppress(Exception):
        stack.close()
    deadline = time.monotonic() + 10
    while metric(server, 'minutes_active_streams{endpoint="stream"}') or metric(server, "minutes_engine_streams"):
        assert time.monotonic() < deadline, "state of vanished clients was not freed"
        time.sleep(0.1)
    assert httpx.get(f"http://{server}/healthz").status_code == 200


def test_session_limit_ends_stream_with_policy_close(server):
    x = (np.random.default_rng(0).standard_normal(16000 * 26) * 0.01).astype(np.float32)  # 26 s > 25 s limit
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"partials": False}}))
        assert json.loads(conn.recv(timeout=30))["type"] == "ready"
        send_audio(conn, x, 16000)
        events, code = drain(conn)
    assert code == 1008
    codes = [e["code"] for e in events if e["type"] == "error"]
    assert codes[0] == "session_limit" and set(codes[1:]) <= {"stopped"}  # audio past the limit is refused
    assert events[-1]["type"] == "end" and events[-1]["reason"] == "session_limit"
    assert not any(e["type"] == "partial" for e in events)  # partials: false honoured


def test_batching_many_streams_in_one_decode(server):
    before_sum = metric(server, "minutes_decode_batch_size_sum")
    before_n = metric(server, "minutes_decode_batch_size_count")
    x = clip(CLIPS[1])
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(ws(server)) for _ in range(6)]
        for conn in conns:
            conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"partials": False}}))
            assert json.loads(conn.recv(timeout=30))["type"] == "ready"
        for conn in conns:  # everyone's audio at once: their chunks are ready together
            send_audio(conn, x, len(x))
            conn.send(json.dumps({"type": "stop"}))
        ends = [drain(conn)[0][-1] for conn in conns]
    assert all(e["type"] == "end" for e in ends)
    assert len({e["text"] for e in ends}) == 1  # batching does not mix streams up: same audio, same text
    mean = (metric(server, "minutes_decode_batch_size_sum") - before_sum) / (metric(server, "minutes_decode_batch_size_count") - before_n)
    assert mean > 2.0, mean


def _scene():
    from diarisation.synth import Utterance, load_speaker_audio, render
    from minutes.arrays import geometry

    a, b = load_speaker_audio("0001", 2), load_speaker_audio("0005", 1)
    utts = [Utterance("A", a[0], 0.5, 40.0), Utterance("B", b[0], 4.0, 220.0), Utterance("A", a[1], 8.0, 40.0)]
    return render(utts, geometry("circular-7"))


def _near(az: float, want: float, tol: float = 20.0) -> bool:
    return abs((az - want + 180) % 360 - 180) <= tol


def test_diarisation_on_a_stream_from_a_circular_array(server):
    scene = _scene()
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "channels": 7, "array": "circular-7"}))
        ready = json.loads(conn.recv(timeout=30))
        if not ready["options"]["diarisation"]:
            pytest.skip(f"diarisation unavailable: {ready['warnings']}")
        assert ready["array"]["preset"] == "circular-7" and len(ready["array"]["geometry"]) == 7
        send_audio(conn, scene.audio, 1600)
        conn.send(json.dumps({"type": "stop"}))
        events, code = drain(conn)
    assert code == 1000
    speakers = [e for e in events if e["type"] == "speakers"]
    assert speakers and any(e["type"] == "tracks" for e in events)
    azimuths = [s["azimuth"] for s in speakers[-1]["speakers"]]
    assert any(_near(a, 40) for a in azimuths) and any(_near(a, 220) for a in azimuths), azimuths
    words = [w for e in events if e["type"] == "final" for w in e["words"]]
    labelled = [w for w in words if w["speaker"] is not None]
    assert all(0 <= w["azimuth"] < 360 for w in labelled)
    assert not words or labelled  # once words exist, they carry speakers
    for f in (e for e in events if e["type"] == "final"):  # a final never spans two speakers
        assert len({w["speaker"] for w in f["words"]} - {None}) <= 1, f
        assert f["speaker"] in {w["speaker"] for w in f["words"]}, f


def test_rest_transcription_formats_and_diarised_upload(server, model_store):
    base = f"http://{server}"
    name = CLIPS[0]
    data = (SO / "audio" / f"{name}.flac").read_bytes()
    r = httpx.post(f"{base}/v1/transcriptions", files={"file": ("a.flac", data)}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(body["duration"] - len(clip(name)) / 16000) < 0.01 and body["model"]["name"] == "default"
    assert body["text"] == " ".join(s["text"] for s in body["segments"] if s["words"])
    import torch

    from decoding.recogniser import Recogniser

    torch.set_num_threads(1)
    rec = Recogniser.load(ModelStore(model_store[0]).resolve("default")[0])
    batch = rec.plan(chunk_seconds=rec.batch_chunk_seconds)[0]  # a file is cut into the model's batch chunks
    want = [(w.text, w.start, w.end) for w in rec.transcribe(clip(name), batch)]
    assert [(w["token"], w["start"], w["end"]) for s in body["segments"] for w in s["words"]] == want
    said = bool(body["text"])  # a model may hear nothing: then srt/txt are empty, vtt just its header
    for fmt, head in [("srt", "1\n00:00:" if said else ""), ("vtt", "WEBVTT\n"), ("txt", ""), ("rttm", "")]:
        r = httpx.post(f"{base}/v1/transcriptions", files={"file": ("a.flac", data)}, data={"format": fmt}, timeout=120)
        assert r.status_code == 200 and r.text.startswith(head), (fmt, r.text[:80])
        if fmt == "txt":
            assert r.text.strip() == body["text"]
    scene = _scene()
    buf = io.BytesIO()
    sf.write(buf, scene.audio, 16000, format="WAV", subtype="PCM_16")
    r = httpx.post(f"{base}/v1/transcriptions", files={"file": ("meeting.wav", buf.getvalue())},
                   data={"array": "circular-7", "format": "rttm"}, timeout=120)
    assert r.status_code == 200
    lines = [line.split() for line in r.text.splitlines()]
    if lines and lines[0][7] != "UNKNOWN":  # the diariser is there: turns from two speakers
        assert all(line[0] == "SPEAKER" and line[1] == "meeting" for line in lines)
        assert len({line[7] for line in lines}) >= 2


@pytest.mark.slow  # 11 s: two server start-ups
def test_jobs_survive_a_restart(model_store, tmp_path):
    audio = np.concatenate([speech_with_pauses()] * 3)  # ~40 s: long enough to catch it running
    path = tmp_path / "long.flac"
    sf.write(path, audio, 16000)
    names = recogniser_models(model_store[0])
    model = [n for n in names if n != "default"][:1] or ["default"]  # `--model NAME`: any model of the store
    proc, addr = serve(model_store[0], tmp_path, "--model", model[0], "--decoders", "2")
    try:
        assert httpx.get(f"http://{addr}/readyz").json()["model"]["name"] == model[0]
        r = httpx.post(f"http://{addr}/v1/jobs", files={"file": ("long.flac", path.read_bytes())}, data={"format": "srt"})
        assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
        job = r.json()["id"]
        r2 = httpx.post(f"http://{addr}/v1/jobs", files={"file": ("b.flac", (SO / "audio" / f"{CLIPS[2]}.flac").read_bytes())})
        second = r2.json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"http://{addr}/v1/jobs/{job}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # a crash, not a clean shutdown
        proc.wait(timeout=20)
    proc, addr = serve(model_store[0], tmp_path, "--model", model[0], "--decoders", "2")
    try:
        deadline = time.monotonic() + 150
        while True:
            states = {j: httpx.get(f"http://{addr}/v1/jobs/{j}").json() for j in (job, second)}
            if all(s["status"] in ("done", "failed") for s in states.values()):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
        assert states[job]["status"] == "done" and states[second]["status"] == "done", states
        result = states[job]["result"]
        assert abs(result["duration"] - len(audio) / 16000) < 0.01
        srt = httpx.get(f"http://{addr}/v1/jobs/{job}?format=srt")
        assert srt.status_code == 200 and srt.headers["content-type"].startswith("application/x-subrip")
        listed = httpx.get(f"http://{addr}/v1/jobs").json()["jobs"]
        assert {j["id"] for j in listed} == {job, second} and "result" not in listed[0]
        assert 'minutes_jobs{status="done"} 2.0' in httpx.get(f"http://{addr}/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_models_endpoint_lists_the_store(server):
    models = httpx.get(f"http://{server}/v1/models").json()
    assert models["default"] == "default"
    (m,) = [m for m in models["models"] if m["name"] == "default"]
    assert m["loaded"] is True and len(m["sha256"]) == 64 and m["size_bytes"] > 0 and "files" not in m
    ready = httpx.get(f"http://{server}/readyz").json()
    assert ready["status"] == "ready" and ready["model"]["version"] == m["version"]


def recogniser_models(root: Path) -> list[str]:
    """Names in the store whose manifest declares a transducer (the store also holds other
    artefacts, e.g. the diariser's speaker-embedding model, which no stream can pick)."""
    store, names = ModelStore(root), []
    for name in store.names():
        try:
            if "transducer" in store.manifest(name).architecture:
                names.append(name)
        except Exception:  # a manifest of another kind of artefact
            continue
    return names


def test_a_stream_may_pick_another_model_of_the_store(server, model_store):
    """`options.model` as `name/version`: a stream on the oldest version of `default` beside
    the server's own (newest when it started); `ready` names the version it really uses, and
    its words are that version's own, not the newest's."""
    import torch

    from decoding.recogniser import Recogniser

    store = ModelStore(model_store[0])
    versions = store.versions("default")
    own = httpx.get(f"http://{server}/readyz").json()["model"]["version"]  # what plain `default` means
    old = versions[0]  # the lowest: older than the newest, whatever gets published later
    assert len(versions) >= 2 and old != own, versions
    torch.set_num_threads(1)
    x = clip(CLIPS[0])
    want = [(w.text, w.start, w.end) for w in Recogniser.load(store.resolve("default", old)[0]).transcribe(x)]
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_f32le",
                              "options": {"model": f"default/{old}"}}))
        ready = json.loads(conn.recv(timeout=60))  # loaded on first use
        assert ready["type"] == "ready", ready
        assert ready["model"] == {"name": "default", "version": old} and ready["options"]["model"] == f"default/{old}"
        send_audio(conn, x, 1600, "<f4")
        conn.send(json.dumps({"type": "stop"}))
        events, code = drain(conn)
    assert code == 1000 and events[-1]["type"] == "end"
    got = [(w["token"], w["start"], w["end"]) for e in events if e["type"] == "final" for w in e["words"]]
    assert got == want
    with ws(server) as conn:  # a bare name still means the server's version; ready says which
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"model": "default"}}))
        ready = json.loads(conn.recv(timeout=30))
        assert ready["model"]["version"] == own and ready["options"]["model"] == f"default/{own}"
        conn.send(json.dumps({"type": "stop"}))
        drain(conn)
    listed = {m["name"]: m for m in httpx.get(f"http://{server}/v1/models").json()["models"]}
    assert {old, own} <= set(listed["default"]["loaded_versions"]) and listed["default"]["versions"] == versions
    r = httpx.post(f"http://{server}/v1/transcriptions", files={"file": ("a.flac", (SO / "audio" / f"{CLIPS[0]}.flac").read_bytes())},
                   data={"model": f"default/{old}"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == {"name": "default", "version": old}
    assert [(w["token"], w["start"], w["end"]) for seg in r.json()["segments"] for w in seg["words"]] == want


def test_unknown_model_versions_over_rest(server):
    data = (SO / "audio" / f"{CLIPS[0]}.flac").read_bytes()
    for model, status, code in [("default/999999", 404, "unknown_model"), ("no-such-model/1", 404, "unknown_model"),
                                ("default/1/2", 400, "invalid_field"), ("default/", 400, "invalid_field")]:
        r = httpx.post(f"http://{server}/v1/transcriptions", files={"file": ("a.flac", data)}, data={"model": model}, timeout=60)
        assert (r.status_code, r.json()["code"]) == (status, code), (model, r.text)
        r = httpx.post(f"http://{server}/v1/jobs", files={"file": ("a.flac", data)}, data={"model": model}, timeout=60)
        assert (r.status_code, r.json()["code"]) == (status, code), (model, r.text)
    assert "999999" in httpx.post(f"http://{server}/v1/transcriptions", files={"file": ("a.flac", data)},
                                  data={"model": "default/999999"}, timeout=60).json()["message"]


def test_a_frame_far_over_the_limit_is_cut_by_the_websocket_layer(server):
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000}))
        assert json.loads(conn.recv(timeout=30))["type"] == "ready"
        conn.send(b"\x00" * (8 * 400_000 + 2))
        _, code = drain(conn, timeout=30)
    assert code == 1009
    assert httpx.get(f"http://{server}/healthz").status_code == 200


@pytest.mark.slow  # 8 s: waits out the idle timeout
def test_idle_stream_is_flushed_and_closed(server):
    x = clip(CLIPS[0])
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"partials": False}}))
        assert json.loads(conn.recv(timeout=30))["type"] == "ready"
        send_audio(conn, x, 1600)
        t0 = time.monotonic()
        events, code = drain(conn, timeout=60)  # then silence: no audio, no stop
    assert code == 1008 and time.monotonic() - t0 >= 7
    assert [e["code"] for e in events if e["type"] == "error"] == ["idle_timeout"]
    end = events[-1]
    assert end["type"] == "end" and end["reason"] == "idle_timeout" and abs(end["duration"] - len(x) / 16000) < 0.01



WHISPER_MODEL = "whisper-stream/1"  # the streaming transducer on Whisper tiny.en's encoder (not yet the default)
WHISPER_MODEL_WER_BOUND = 0.8  # whisper-stream/1 made 0.68 on these clips (17 errors in 25 words) when published


def test_server_transcribes_unseen_real_speech_with_the_whisper_model(server, model_store):
    """The Whisper-initialised model, picked by `options.model` beside the default, over the v1
    stream on real speech of held-out speakers (the dev split's, never trained on): the first
    utterance of 4 of them, in 100 ms frames with pauses between them (under the test server's
    25 s session limit). Its words must stay at least as
    right as when it was published (its WER on the whole dev split is in bench/results/asr.md)."""
    import jiwer

    from corpus.readers import read_speechocean762, split_speakers

    if not model_store[1]:
        pytest.skip("the trained store is not in use")
    name, version = WHISPER_MODEL.split("/")
    assert version in ModelStore(model_store[0]).versions(name)
    utts = read_speechocean762(SO)
    _, dev = split_speakers(utts)
    chosen = []
    for spk in sorted(dev)[:4]:
        chosen += [u for u in utts if u.speaker == spk][:1]
    audio = np.concatenate([np.concatenate([clip(Path(u.audio).parent.name + "/" + Path(u.audio).stem),
                                            np.zeros(int(1.6 * 16000), np.float32)]) for u in chosen])
    with ws(server) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"model": WHISPER_MODEL}}))
        ready = json.loads(conn.recv(timeout=60))
        assert ready["type"] == "ready" and ready["options"]["model"] == WHISPER_MODEL, ready
        send_audio(conn, audio, 1600)
        conn.send(json.dumps({"type": "stop"}))
        events, code = drain(conn)
    assert code == 1000
    hyp = " ".join(w["text"] for e in events if e["type"] == "final" for w in e["words"])
    ref = " ".join(u.text for u in chosen)
    wer = jiwer.wer(normalise_text(ref), normalise_text(hyp))  # the display text, scored normalised
    assert wer < WHISPER_MODEL_WER_BOUND, (wer, ref, hyp)
