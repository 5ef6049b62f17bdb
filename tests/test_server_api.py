"""A real server with no model loaded: health, auth, limits, metrics and every bad input that
needs no model, over real HTTP and real WebSocket connections."""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import REPO, start_server

KEY, KEY2 = "k-one", "k-two"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.conftest import free_port

    tmp = tmp_path_factory.mktemp("nomodel")
    port = free_port()
    proc = start_server([
        "--model-store", str(tmp / "store"), "--jobs-db", str(tmp / "jobs.sqlite"), "--jobs-dir", str(tmp / "jobs"),
        "--api-keys", f"{KEY},{KEY2}", "--max-streams", "2", "--max-streams-per-key", "1",
        "--idle-timeout-seconds", "4", "--max-upload-bytes", "300000",
    ], port)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


def ws(server: str, key: str | None = KEY, path: str = "/v1/stream"):
    query = f"?api_key={key}" if key else ""
    return connect(f"ws://{server}{path}{query}", open_timeout=20, close_timeout=5)


def recv_json(conn, timeout: float = 10.0) -> dict:
    return json.loads(conn.recv(timeout=timeout))


def close_code(conn, timeout: float = 10.0) -> int:
    """Read until the server closes; its close code."""
    try:
        while True:
            conn.recv(timeout=timeout)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else -1


def wav_bytes(seconds: float = 1.0, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_health_ready_docs_metrics(server):
    base = f"http://{server}"
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{base}/readyz")
    assert r.status_code == 503 and "no model" in r.json()["reason"]
    assert httpx.get(f"{base}/docs").status_code == 200
    paths = httpx.get(f"{base}/openapi.json").json()["paths"]
    assert {"/v1/transcriptions", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/models"} <= set(paths)
    if (REPO / "clients" / "web" / "index.html").is_file():  # the demo page, served beside the API
        r = httpx.get(f"{base}/")
        assert r.status_code == 307 and r.headers["location"] == "/demo/"
        assert httpx.get(f"{base}/demo/").status_code == 200
    m = httpx.get(f"{base}/metrics")
    assert m.status_code == 200 and "minutes_active_streams" in m.text and "minutes_queue_depth" in m.text


def test_api_keys_by_header_query_or_refused(server):
    base = f"http://{server}"
    r = httpx.get(f"{base}/v1/models")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized" and r.json()["type"] == "error"
    assert httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["models"] == []
    assert httpx.get(f"{base}/v1/models", headers={"X-API-Key": KEY2}).status_code == 200
    assert httpx.get(f"{base}/v1/arrays?api_key={KEY}").json()["presets"]["circular-7"][6] == [0, 0, 0]
    assert httpx.get(f"{base}/v1/models", headers={"X-API-Key": "wrong"}).status_code == 401
    with ws(server, key=None) as conn:
        msg = recv_json(conn)
        assert msg["code"] == "unauthorized" and msg["fatal"] is True
        assert close_code(conn) == 1008
    with connect(f"ws://{server}/v1/stream", additional_headers={"Authorization": f"Bearer {KEY}"}) as conn:
        conn.send("{")
        assert recv_json(conn)["code"] == "bad_json"  # admitted: the header key worked


def test_bad_messages_before_start_are_errors_not_crashes(server):
    with ws(server) as conn:
        cases = [
            ("{not json", "bad_json"),
            ("[1,2,3]", "bad_json"),
            ('"start"', "bad_json"),
            ('{"type": "dance"}', "unknown_type"),
            ('{"no_type": 1}', "unknown_type"),
            (b"\x00\x01" * 100, "not_started"),
            ('{"type": "stop"}', "not_started"),
            ('{"type": "start", "sample_rate": 16000, "encoding": "mp3"}', "invalid_start"),
            ('{"type": "start", "sample_rate": 16000, "channels": 3, "array": "circular-7"}', "invalid_start"),
            (json.dumps({"type": "start", "sample_rate": 16000, "pad": "x" * 70000}), "message_too_large"),
            (b"\xff" * 3, "not_started"),
        ]
        for message, code in cases:
            conn.send(message)
            msg = recv_json(conn)
            assert msg["type"] == "error" and msg["code"] == code and msg["fatal"] is False, (message[:40], msg)
        # a valid start on a server without a model: a fatal, clean refusal
        conn.send(json.dumps({"type": "start", "sample_rate": 16000}))
        msg = recv_json(conn)
        assert msg["code"] == "model_unavailable" and msg["fatal"] is True
        assert close_code(conn) == 1013
    text = httpx.get(f"http://{server}/metrics").text
    assert 'minutes_errors_total{code="bad_json"}' in text and 'minutes_errors_total{code="model_unavailable"}' in text


def test_vosk_endpoint_without_model_refuses_cleanly(server):
    with ws(server, path="/v1/vosk") as conn:
        conn.send('{"config": {"sample_rate": 16000}}')
        conn.send(b"\x00\x00" * 1600)
        msg = recv_json(conn)
        assert msg["code"] == "model_unavailable"
        assert close_code(conn) == 1013


def test_stream_limits_total_and_per_key_and_freed_on_disconnect(server):
    with ws(server, KEY) as a, ws(server, KEY2) as c:
        for conn in (a, c):
            conn.send("{")
            assert recv_json(conn)["code"] == "bad_json"  # admitted
        with ws(server, KEY) as b:  # same key: over its limit of 1 (and the server is at 2 of 2)
            msg = recv_json(b)
            assert msg["code"] == "too_many_streams" and msg["fatal"] is True
            assert close_code(b) == 1013
        a.close()  # a goodbye frees the slot at once
        for _ in range(50):
            with ws(server, KEY) as d:
                if recv_json_or_none(d) is None:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the slot of a closed connection was not freed")
    text = httpx.get(f"http://{server}/metrics").text
    assert 'minutes_refused_streams_total{reason="too_many_streams"}' in text


def recv_json_or_none(conn) -> dict | None:
    """Admitted connections say nothing until spoken to; refused ones get an error at once."""
    try:
        return json.loads(conn.recv(timeout=0.5))
    except TimeoutError:
        return None


def test_idle_timeout_closes_with_policy_code(server):
    with ws(server) as conn:
        t0 = time.monotonic()
        msg = recv_json(conn, timeout=15)
        assert msg["code"] == "idle_timeout" and msg["fatal"] is True
        assert close_code(conn) == 1008 and 3 < time.monotonic() - t0 < 12


def test_rest_errors(server):
    base, h = f"http://{server}", {"X-API-Key": KEY}
    post = lambda path, files, data=None: httpx.post(f"{base}{path}", headers=h, files=files, data=data or {}, timeout=30)
    r = post("/v1/transcriptions", {"file": ("x.wav", b"not audio at all")})
    assert r.status_code == 400 and r.json()["code"] == "invalid_audio"
    r = post("/v1/transcriptions", {"file": ("x.wav", wav_bytes())}, {"format": "docx"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field"
    r = post("/v1/transcriptions", {"file": ("x.wav", wav_bytes())}, {"array": "[[0, 0]]"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field"
    r = post("/v1/transcriptions", {"file": ("x.wav", wav_bytes())}, {"diarisation": "maybe"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field"
    r = post("/v1/transcriptions", {"file": ("x.wav", wav_bytes())})
    assert r.status_code == 503 and r.json()["code"] == "model_unavailable"
    r = post("/v1/transcriptions", {"file": ("x.wav", wav_bytes())}, {"model": "nope"})
    assert r.status_code == 404 and r.json()["code"] == "unknown_model"
    r = post("/v1/transcriptions", {"file": ("big.wav", wav_bytes(seconds=12))})  # 384 kB > 300 kB
    assert r.status_code == 413 and r.json()["code"] == "upload_too_large"

    def chunked():  # no Content-Length: cut off once past the limit, never read whole
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(100):
            yield b"\0" * 65536
    r = httpx.post(f"{base}/v1/jobs", headers={**h, "Content-Type": "multipart/form-data; boundary=xyz"},
                   content=chunked(), timeout=30)
    assert r.status_code == 413 and r.json()["code"] == "upload_too_large"
    r = post("/v1/jobs", {"file": ("x.wav", wav_bytes())})
    assert r.status_code == 503 and r.json()["code"] == "model_unavailable"
    r = httpx.post(f"{base}/v1/transcriptions", headers=h, data={"format": "json"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_field"
    r = httpx.get(f"{base}/v1/jobs/does-not-exist", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "unknown_job"
    assert httpx.get(f"{base}/v1/jobs", headers=h).json() == {"jobs": []}
