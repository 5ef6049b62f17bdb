"""The client's pieces that need no server: wire encoding, event parsing and re-basing after a
reconnect, speaker revisions, the CLI's argument handling (the formats: tests/test_transcript.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clients.audio import AudioSourceError, FileSource, encode
from clients.cli import resolve_array
from clients.client import ClientConfig, ClientError, StartOptions, stream_url
from clients.events import End, Final, Partial, Ready, ServerError, Speakers, Unknown, parse_event, shift_event
from minutes.types import Segment, Word

SAMPLE = Path(__file__).resolve().parents[1] / "clients" / "web" / "samples"


def test_encode_s16_interleaves_and_clips():
    block = np.array([[0.5, -1.0], [2.0, 0.0]], dtype=np.float32)  # 2 frames, 2 channels
    raw = encode(block, "pcm_s16le")
    assert np.frombuffer(raw, "<i2").tolist() == [16384, -32767, 32767, 0]  # 0.5*32767 rounds up


def test_encode_f32_roundtrips():
    block = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    assert np.array_equal(np.frombuffer(encode(block, "pcm_f32le"), "<f4").reshape(5, 3), block)
    with pytest.raises(ValueError):
        encode(block, "mp3")


def test_file_source_blocks_cover_the_file(tmp_path):
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (16000 + 123, 2)).astype(np.float32)
    path = tmp_path / "a.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    src = FileSource(path)
    assert (src.sample_rate, src.channels) == (16000, 2)

    async def collect():
        return [b async for b in src.blocks(0.1)]

    import asyncio

    blocks = asyncio.run(collect())
    assert all(len(b) == 1600 for b in blocks[:-1])
    assert np.allclose(np.concatenate(blocks), x)
    part = FileSource(path, start=0.5, duration=0.25)
    assert abs(part.seconds - 0.25) < 1e-9
    assert sum(len(b) for b in asyncio.run(_collect(part))) == 4000


async def _collect(src):
    return [b async for b in src.blocks(0.1)]


def test_file_source_error_is_one_clean_message(tmp_path):
    bad = tmp_path / "not-audio.wav"
    bad.write_text("hello")
    with pytest.raises(AudioSourceError, match="cannot read"):
        FileSource(bad)


def test_start_message_has_only_what_was_chosen():
    msg = StartOptions(array="circular-7", hotwords=("kalman filter",)).message(48000, 7)
    assert msg == {
        "type": "start", "sample_rate": 48000, "encoding": "pcm_s16le", "channels": 7,
        "array": "circular-7", "options": {"partials": True, "hotwords": ["kalman filter"]},
    }
    msg = StartOptions(diarisation=False, channel=0, model="m").message(16000, 1)
    assert "array" not in msg and msg["options"] == {"partials": True, "diarisation": False, "model": "m", "channel": 0}


def test_stream_url_normalises_what_users_type():
    assert stream_url("127.0.0.1:8000") == "ws://127.0.0.1:8000/v1/stream"
    assert stream_url("https://example.org/") == "wss://example.org/v1/stream"
    assert stream_url("ws://h:1/v1/stream?api_key=k") == "ws://h:1/v1/stream?api_key=k"
    with pytest.raises(ClientError):
        stream_url("ftp://h/")
    with pytest.raises(ValueError):
        ClientConfig(speed=-1)


def test_parse_events_of_every_type():
    final = parse_event({
        "type": "final", "segment": 3, "start": 12.4, "end": 14.08, "text": "HELLO WORLD", "speaker": "S1",
        "words": [
            {"text": "HELLO", "start": 12.4, "end": 12.8, "conf": 0.93, "speaker": "S1", "azimuth": 41.5},
            {"text": "WORLD", "start": 12.9, "end": 13.5, "conf": 0.88, "speaker": "S1", "azimuth": 42.0},
        ],
    })
    assert isinstance(final, Final) and final.segment.text == "HELLO WORLD" and final.segment.words[1].azimuth == 42.0
    assert isinstance(parse_event({"type": "ready", "stream_id": "x", "sample_rate": 16000, "channels": 7,
                                   "options": {}, "model": {"name": "default"}}), Ready)
    p = parse_event({"type": "partial", "segment": 1, "text": "HEL", "stable_chars": 2, "start": 1.0, "end": 1.5})
    assert isinstance(p, Partial) and p.text[: p.stable_chars] == "HE"
    assert parse_event({"type": "error", "code": "bad_frame", "message": "m"}) == ServerError("bad_frame", "m", False)
    assert isinstance(parse_event({"type": "end", "stream_id": "x", "reason": "stop", "duration": 1, "segments": 0,
                                   "words": 0, "text": "", "rtf": 0.1}), End)
    assert isinstance(parse_event({"type": "speakers", "time": 1.0, "speakers": [{"speaker": "S1"}]}), Speakers)
    assert isinstance(parse_event({"type": "brand-new"}), Unknown)
    with pytest.raises(ValueError):
        parse_event(["not", "an", "object"])


def test_shift_event_rebases_times_and_segment_ids():
    w = Word("HI", 1.0, 1.5, 0.9, "S1", 10.0)
    ev = shift_event(Final(Segment(2, 1.0, 1.5, (w,), "S1")), 10.0, 5)
    assert ev.segment.id == 7 and ev.segment.start == 11.0 and ev.segment.words[0].end == 11.5
    assert ev.segment.closed_until is None
    cut = shift_event(Final(Segment(2, 1.0, 1.5, (w,), "S1", closed_until=1.9)), 10.0, 5)
    assert cut.segment.closed_until == pytest.approx(11.9)
    assert Segment.from_dict(cut.segment.to_dict()) == cut.segment  # the field survives the wire
    from engine.events import Final as ServerFinal  # the server's own serialiser

    assert parse_event(ServerFinal(cut.segment).to_dict()).segment == cut.segment
    p = shift_event(Partial(0, "HI", 0, 1.0, 2.0), 3.0, 1)
    assert (p.segment, p.start, p.end) == (1, 4.0, 5.0)


def _w(text, start, end, spk, az=None, conf=0.9):
    return Word(text, start, end, conf, spk, az)


def test_cli_array_resolution():
    assert resolve_array("auto", 7) == "circular-7"
    assert resolve_array("auto", 1) is None
    assert resolve_array("none", 7) is None
    assert resolve_array("[[0.1, 0, 0], [-0.1, 0, 0]]", 2) == [[0.1, 0, 0], [-0.1, 0, 0]]
    assert resolve_array("linear-4", 4) == "linear-4"


def test_bundled_samples_match_their_references():
    listed = json.loads((SAMPLE / "samples.json").read_text())
    assert {s["id"] for s in listed} == {"corpus-meeting", "meeting"}
    total = 0
    for item in listed:
        ref = json.loads((SAMPLE / item["reference"]).read_text())
        info = sf.info(str(SAMPLE / item["audio"]))
        assert (info.channels, info.samplerate) == (item["channels"], item["sample_rate"]) == (7, 16000)
        assert abs(info.frames / info.samplerate - ref["duration"]) < 0.01
        assert len({t["speaker"] for t in ref["turns"]}) == 3
        assert " ".join(t["text"] for t in ref["turns"]).split() == ref["text"].split()
        rttm = (SAMPLE / item["rttm"]).read_text().splitlines()
        assert len(rttm) == len(ref["turns"]) and all(l.split()[1] == item["id"] for l in rttm)
        total += (SAMPLE / item["audio"]).stat().st_size
    assert total < 7_500_000  # a few MB each


def test_speaker_revisions_relabel_words_and_segments():
    from clients.formats import apply_revisions

    seg = Segment(0, 0.0, 3.0, (_w("A", 0.0, 0.5, "S1"), _w("B", 1.0, 1.5, "S1"), _w("C", 2.0, 2.5, "S1")), "S1")
    ev = parse_event({"type": "speakers", "time": 5.0, "speakers": [{"speaker": "S2", "azimuth": 90.0}],
                      "revised": [{"start": 0.9, "end": 3.0, "speaker": "S2"}]})
    assert isinstance(ev, Speakers) and len(ev.revised) == 1
    shifted = shift_event(ev, 10.0, 0)
    assert shifted.revised[0]["start"] == 10.9 and shifted.time == 15.0
    (new,) = apply_revisions([seg], ev.revised)
    assert [w.speaker for w in new.words] == ["S1", "S2", "S2"] and new.speaker == "S2"
    assert apply_revisions([seg], []) == [seg]
