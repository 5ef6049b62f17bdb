"""The server's pieces that need no model: audio framing, resampling, start validation,
output formats, stream slots — and that `server/` never imports torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import resample_poly

from engine.audio import AudioFormatError, StreamingResampler, decode_pcm, select_channel
from server.formats import render
from server.limits import StreamSlots
from server.protocol import ProtocolError, parse_start, parse_text


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (8000, 16000), (22050, 16000), (16000, 16000)])
def test_streaming_resampler_equals_one_shot(rates):
    rin, rout = rates
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rin + 37, 3)).astype(np.float32)
    g = np.gcd(rin, rout)
    want = resample_poly(x, rout // g, rin // g, axis=0)
    r = StreamingResampler(rin, rout)
    parts, i = [], 0
    while i < len(x):  # ragged chunks, as a network delivers them
        n = int(rng.integers(1, 2500))
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.flush())
    got = np.concatenate(parts)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-5


def test_decode_pcm_formats_and_errors():
    s16 = np.array([[0, 16384], [-32768, 32767]], dtype="<i2")
    out = decode_pcm(s16.tobytes(), "pcm_s16le", 2)
    assert out.shape == (2, 2) and out[0, 1] == 0.5 and out[1, 0] == -1.0
    f32 = np.array([0.25, -0.5], dtype="<f4")
    assert decode_pcm(f32.tobytes(), "pcm_f32le", 1)[:, 0].tolist() == [0.25, -0.5]
    with pytest.raises(AudioFormatError) as e:
        decode_pcm(b"\x00\x01\x02", "pcm_s16le", 1)
    assert e.value.code == "bad_frame"
    with pytest.raises(AudioFormatError):
        decode_pcm(b"\x00" * 12, "pcm_s16le", 7)  # 12 bytes is not a whole 14-byte frame
    with pytest.raises(AudioFormatError) as e:
        decode_pcm(np.array([np.nan], dtype="<f4").tobytes(), "pcm_f32le", 1)
    assert e.value.code == "bad_audio"
    with pytest.raises(AudioFormatError):
        decode_pcm(b"", "pcm_s16le", 1)
    frames = np.array([[1.0, 3.0], [2.0, 4.0]], dtype=np.float32)
    assert select_channel(frames, "mean").tolist() == [2.0, 3.0] and select_channel(frames, 1).tolist() == [3.0, 4.0]


def test_parse_start_accepts_presets_geometry_and_defaults():
    spec = parse_start({"type": "start", "sample_rate": 48000, "encoding": "pcm_f32le", "array": "circular-7",
                        "options": {"hotwords": ["kalman filter", "7 mics"], "partials": False}})
    assert spec.channels == 7 and spec.preset == "circular-7" and spec.diarisation is True
    assert len(spec.geometry) == 7 and spec.geometry[-1] == (0.0, 0.0, 0.0)
    assert abs(spec.geometry[0][0] - 0.0425) < 1e-9 and spec.partials is False
    assert spec.hotwords == ("KALMAN FILTER", "SEVEN MICS")  # normalised like the model's text
    spec = parse_start({"type": "start", "sample_rate": 16000})
    assert (spec.channels, spec.encoding, spec.geometry, spec.diarisation, spec.channel) == (1, "pcm_s16le", None, False, "mean")
    assert spec.word_times is None  # the model's default (aligned)
    assert parse_start({"type": "start", "sample_rate": 16000, "options": {"word_times": "emission"}}).word_times == "emission"
    spec = parse_start({"type": "start", "sample_rate": 8000, "channels": 2,
                        "array": [[-0.05, 0, 0], [0.05, 0, 0]], "options": {"channel": 1, "diarisation": False}})
    assert spec.preset is None and spec.channel == 1 and spec.diarisation is False
    assert spec.model is None
    for ref in ("default", "default/5", "default/10", "tiny-b/2026.1"):  # `name` or `name/version`
        assert parse_start({"type": "start", "sample_rate": 16000, "options": {"model": ref}}).model == ref


@pytest.mark.parametrize("msg, field", [
    ({"type": "start"}, "sample_rate"),
    ({"type": "start", "sample_rate": "16000"}, "sample_rate"),
    ({"type": "start", "sample_rate": 100}, "sample_rate"),
    ({"type": "start", "sample_rate": 16000, "encoding": "mp3"}, "encoding"),
    ({"type": "start", "sample_rate": 16000, "channels": 0}, "channels"),
    ({"type": "start", "sample_rate": 16000, "channels": 4, "array": "circular-7"}, "array"),
    ({"type": "start", "sample_rate": 16000, "array": "hexagon"}, "array"),
    ({"type": "start", "sample_rate": 16000, "channels": 1, "array": [[0, 0]]}, "array"),
    ({"type": "start", "sample_rate": 16000, "channels": 1, "array": [[0, 0, 1e9]]}, "array"),
    ({"type": "start", "sample_rate": 16000, "options": {"partial": True}}, "partial"),
    ({"type": "start", "sample_rate": 16000, "options": {"channel": 3}}, "channel"),
    ({"type": "start", "sample_rate": 16000, "options": {"partials": "yes"}}, "partials"),
    ({"type": "start", "sample_rate": 16000, "rate": 1}, "rate"),
    ({"type": "start", "sample_rate": 16000, "options": {"model": ""}}, "options.model"),
    ({"type": "start", "sample_rate": 16000, "options": {"model": 5}}, "options.model"),
    ({"type": "start", "sample_rate": 16000, "options": {"model": "default/"}}, "options.model"),
    ({"type": "start", "sample_rate": 16000, "options": {"model": "default/5/6"}}, "options.model"),
    ({"type": "start", "sample_rate": 16000, "options": {"model": "../default"}}, "options.model"),
    ({"type": "start", "sample_rate": 16000, "options": {"word_times": "exact"}}, "options.word_times"),
])
def test_parse_start_names_the_bad_field(msg, field):
    with pytest.raises(ProtocolError) as e:
        parse_start(msg)
    assert e.value.code == "invalid_start" and field in str(e.value)


@pytest.mark.parametrize("options, says", [
    ({"hotwords": "x"}, "list of strings"),
    ({"hotwords": ["x"] * 101}, "at most 100"),
    ({"hotwords": ["ok", None]}, "hotwords[1] must be a string"),
    ({"hotwords": ["y" * 101]}, "hotwords[0] is 101 characters"),
    ({"hotwords": [""]}, "hotwords[0] is empty"),
    ({"hotwords": ["..."]}, "no letters"),
    ({"hotword_boost": -1}, "hotword_boost"),
    ({"hotword_boost": float("nan")}, "hotword_boost"),
    ({"hotword_boost": True}, "hotword_boost"),
])
def test_bad_hotwords_get_their_own_code(options, says):
    with pytest.raises(ProtocolError) as e:
        parse_start({"type": "start", "sample_rate": 16000, "options": options})
    assert e.value.code == "invalid_hotwords" and says in str(e.value)


def test_hotwords_normalised_deduplicated_with_boost():
    spec = parse_start({"type": "start", "sample_rate": 16000,
                        "options": {"hotwords": ["Kalman filter", "KALMAN  FILTER", "3 mics"], "hotword_boost": 4}})
    assert spec.hotwords == ("KALMAN FILTER", "THREE MICS") and spec.hotword_boost == 4.0
    assert parse_start({"type": "start", "sample_rate": 16000}).hotword_boost is None


@pytest.mark.parametrize("search, says", [
    ("viterbi", 'must be "greedy", "beam" or an object'),
    (3, 'must be "greedy", "beam" or an object'),
    ({"beam": 0}, "search.beam must be an integer in 1..16"),
    ({"beam": 17}, "search.beam must be an integer in 1..16"),
    ({"beam": 2.5}, "search.beam"),
    ({"beam": True}, "search.beam"),
    ({"lm_weight": -0.1}, "search.lm_weight must be a number in [0, 2]"),
    ({"ilm_weight": float("inf")}, "search.ilm_weight"),
    ({"lm_weight": "0.3"}, "search.lm_weight"),
    ({"beam": 4, "temperature": 1}, "unknown key(s) ['temperature']"),
    ({"oov_penalty": 21}, "search.oov_penalty must be a number in [0, 20]"),
    ({"oov_penalty": None, "beam": "4"}, "search.beam"),
])
def test_bad_search_options_get_their_own_code(search, says):
    with pytest.raises(ProtocolError) as e:
        parse_start({"type": "start", "sample_rate": 16000, "options": {"search": search}})
    assert e.value.code == "invalid_search" and says in str(e.value)


def test_search_options_parsed_and_applied_over_the_model_defaults():
    from decoding.options import DecodingOptions, SearchRequest

    assert parse_start({"type": "start", "sample_rate": 16000}).search is None
    spec = parse_start({"type": "start", "sample_rate": 16000,
                        "options": {"search": {"beam": 8, "lm_weight": 0.3, "ilm_weight": 0}}})
    assert spec.search == SearchRequest("beam", 8, 0.3, 0.0)
    base = DecodingOptions(search="beam", beam_size=4, lm_weight=0.5, ilm_weight=0.1, blank_penalty=0.5)
    applied = spec.search.apply(base)
    assert (applied.search, applied.beam_size, applied.lm_weight, applied.ilm_weight, applied.blank_penalty) == \
        ("beam", 8, 0.3, 0.0, 0.5)
    greedy = parse_start({"type": "start", "sample_rate": 16000, "options": {"search": "greedy"}}).search.apply(base)
    assert (greedy.search, greedy.lm_weight, greedy.ilm_weight) == ("greedy", 0.0, 0.0)
    # the reward that offsets the LM's per-piece cost follows the net LM weight asked for
    tuned = DecodingOptions(search="beam", lm_weight=0.45, ilm_weight=0.15, length_reward=0.9)
    assert SearchRequest(lm_weight=0.0, ilm_weight=0.0).apply(tuned).length_reward == 0.0
    assert abs(SearchRequest(lm_weight=0.75).apply(tuned).length_reward - 1.8) < 1e-9
    assert SearchRequest(beam_size=8).apply(tuned).length_reward == 0.9
    # the lexicon's penalty: asked for per stream, dropped with the greedy search (it needs the beam)
    lexical = DecodingOptions(search="beam", oov_penalty=3.0)
    assert SearchRequest(oov_penalty=0.0).apply(lexical).oov_penalty == 0.0
    assert SearchRequest(search="greedy").apply(lexical).oov_penalty == 0.0
    spec = parse_start({"type": "start", "sample_rate": 16000, "options": {"search": {"oov_penalty": 1.5}}})
    assert spec.search.apply(base).oov_penalty == 1.5
    assert SearchRequest("greedy").apply(tuned).length_reward == 0.0


def test_parse_text_refuses_garbage():
    for text, code in [("{", "bad_json"), ("[1, 2]", "bad_json"), ("x" * 70000, "message_too_large"),
                       ("[" * 100000, "message_too_large")]:
        with pytest.raises(ProtocolError) as e:
            parse_text(text)
        assert e.value.code == code


def test_formats():
    hello = [{"text": "HELLO", "start": 0.5, "end": 0.9}, {"text": "WORLD", "start": 0.95, "end": 1.25}]
    result = {"segments": [  # the shape `transcribe` answers with: a segment's text joins its words
        {"id": 0, "start": 0.5, "end": 1.25, "text": "HELLO WORLD", "speaker": "S1", "words": hello},
        {"id": 2, "start": 3661.0, "end": 3662.5, "text": "BYE", "speaker": None,
         "words": [{"text": "BYE", "start": 3661.0, "end": 3662.5}]},
    ], "turns": [{"speaker": "S1", "start": 0.5, "end": 1.25, "azimuth": 40.0}]}
    srt = render(result, "srt")
    assert srt.startswith("1\n00:00:00,500 --> 00:00:01,250\nS1: HELLO WORLD\n\n2\n01:01:01,000 --> 01:01:02,500\nBYE\n")
    assert render(result, "vtt").startswith("WEBVTT\n\n00:00:00.500 --> 00:00:01.250\nS1: HELLO WORLD\n")
    assert render(result, "rttm", "meet ing.flac") == "SPEAKER meet_ing 1 0.500 0.750 <NA> <NA> S1 <NA> <NA>\n"
    assert render(result, "txt") == "HELLO WORLD\nBYE\n"
    unlabelled = {**result, "turns": []}  # diarisation off: speech segments stand in as UNKNOWN
    assert render(unlabelled, "rttm", "m").splitlines()[1] == "SPEAKER m 1 3661.000 1.500 <NA> <NA> UNKNOWN <NA> <NA>"


def test_stream_slots():
    slots = StreamSlots(2, max_per_key=1)
    assert slots.try_acquire("a") is None
    assert "key" in slots.try_acquire("a")
    assert slots.try_acquire("b") is None
    assert "server" in slots.try_acquire("c")
    slots.release("a")
    assert slots.try_acquire("c") is None and slots.total == 2


def test_server_package_does_not_import_torch():
    code = "import sys, server.app, server.cli; from server.app import create_app; create_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
