"""minutes.transcript and minutes.arrays: words to turns (circular azimuth), the SRT/VTT/RTTM/
JSON writers, and the array presets every package shares. Pure Python: no model, no server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minutes import arrays
from minutes.transcript import (
    build_transcript, circular_mean, read_rttm, to_json, to_rttm, to_srt, to_txt, to_vtt, turns_from_words,
)
from minutes.types import Segment, Transcript, Turn, Word


def _w(text, start, end, spk, az=None, conf=0.9):
    return Word(text, start, end, conf, spk, az)


def _meeting() -> Transcript:
    s0 = Segment(0, 0.5, 1.25, (_w("HELLO", 0.5, 0.9, "S1", 350.0), _w("THERE", 0.95, 1.25, "S1", 10.0)), "S1")
    s1 = Segment(2, 3661.0, 3662.5, (_w("BYE", 3661.0, 3662.5, "S2", 180.0),), "S2")
    s2 = Segment(3, 3663.0, 3663.0, (), None)  # an endpoint with no words makes no cue
    return build_transcript([s1, s2, s0], duration=3664.0)


def test_circular_mean_wraps_at_zero():
    for angles in ([350.0, 10.0], [340.0, 20.0, 0.0], [359.0, 1.0]):
        mean = circular_mean(angles)
        assert 0.0 <= mean < 360.0 and min(mean, 360.0 - mean) < 1e-9, angles  # ~0, not 180
    assert circular_mean([80.0, 100.0]) == pytest.approx(90.0)
    assert circular_mean([350.0, 330.0]) == pytest.approx(340.0)
    assert circular_mean([]) is None


def test_turns_take_the_circular_mean_not_the_median():
    words = [_w("A", 0.0, 0.4, "S1", 350.0), _w("B", 0.5, 0.9, "S1", 10.0)]
    (turn,) = turns_from_words(words)
    assert turn.azimuth == 0.0  # a median (or plain mean) says 180: behind the array
    assert (turn.speaker, turn.start, turn.end) == ("S1", 0.0, 0.9)


def test_turns_split_by_speaker_and_gap():
    words = [_w("A", 0.0, 0.4, "S1", 350.0), _w("B", 0.5, 0.9, "S1", 10.0), _w("C", 1.0, 1.3, "S2", 180.0),
             _w("D", 3.0, 3.2, "S2", 180.0), _w("E", 3.3, 3.5, None)]
    turns = turns_from_words(words, max_gap=1.0)
    assert [(t.speaker, t.start, t.end) for t in turns] == [("S1", 0.0, 0.9), ("S2", 1.0, 1.3), ("S2", 3.0, 3.2)]
    assert [t.azimuth for t in turns][1:] == [180.0, 180.0]
    assert turns_from_words([_w("A", 0.0, 0.4, None)]) == []


def test_build_transcript_keeps_a_diarisers_turns():
    seg = Segment(0, 0.0, 1.0, (_w("A", 0.0, 0.5, "S1", 90.0),), "S1")
    given = (Turn("S9", 0.0, 1.0, 45.0),)
    assert build_transcript([seg], turns=given).turns == given
    assert build_transcript([seg], turns=()).turns == (Turn("S1", 0.0, 0.5, 90.0),)  # empty: from the words


def test_srt_structure():
    srt = to_srt(_meeting())
    assert srt == ("1\n00:00:00,500 --> 00:00:01,250\nS1: HELLO THERE\n\n"
                   "2\n01:01:01,000 --> 01:01:02,500\nS2: BYE\n\n")


def test_vtt_structure():
    vtt = to_vtt(_meeting())
    assert vtt == ("WEBVTT\n\n00:00:00.500 --> 00:00:01.250\nS1: HELLO THERE\n\n"
                   "01:01:01.000 --> 01:01:02.500\nS2: BYE\n\n")
    assert to_vtt(Transcript()) == "WEBVTT\n\n"


def test_rttm_lines_and_round_trip(tmp_path):
    tr = _meeting()
    rttm = to_rttm(tr, "meet ing")  # a space would split the field: it becomes _
    lines = rttm.splitlines()
    assert lines[0].split() == ["SPEAKER", "meet_ing", "1", "0.500", "0.750", "<NA>", "<NA>", "S1", "<NA>", "<NA>"]
    assert len(lines) == len(tr.turns) == 2
    back = read_rttm(rttm)["meet_ing"]
    assert [(t.speaker, t.start, round(t.end, 3)) for t in back] == [(t.speaker, t.start, t.end) for t in tr.turns]
    path = tmp_path / "m.rttm"
    path.write_text(rttm + ";; a comment\nSPKR-INFO meet_ing 1 <NA> <NA> <NA> unknown S1 <NA>\n")
    assert read_rttm(path) == read_rttm(str(path)) == {"meet_ing": back}
    assert to_rttm([Turn("S1", 2.0, 1.5)], "x") == "SPEAKER x 1 2.000 0.000 <NA> <NA> S1 <NA> <NA>\n"  # never < 0


def test_json_and_txt():
    tr = _meeting()
    d = json.loads(to_json(tr, {"model": {"name": "default"}}))
    assert d["text"] == "HELLO THERE BYE" and d["model"] == {"name": "default"}
    assert Transcript.from_dict(d) == tr
    assert to_txt(tr) == "HELLO THERE\nBYE\n"


def test_array_presets_one_home():
    assert arrays.preset_names() == ["circular-7", "linear-4", "mono"]
    c = arrays.geometry("circular-7")
    assert c.shape == (7, 3) and np.allclose(np.linalg.norm(c[:6], axis=1), 0.0425) and not c[6].any()
    assert arrays.azimuth_deg(c[1]) == pytest.approx(60.0)  # counter-clockwise from +x
    c[0] = 9.0  # a copy: the shared preset does not move
    assert arrays.PRESETS["circular-7"][0, 0] == pytest.approx(0.0425)
    with pytest.raises(ValueError):
        arrays.PRESETS["circular-7"][0, 0] = 1.0
    assert arrays.preset_rows("circular-7")[3] == [-0.0425, 0.0, 0.0]  # 5e-18 rounded off for the wire
    assert arrays.preset_rows("linear-4") == [[-0.06, 0.0, 0.0], [-0.02, 0.0, 0.0], [0.02, 0.0, 0.0], [0.06, 0.0, 0.0]]
    preset, geom = arrays.resolve_array("linear-4", 4)
    assert preset == "linear-4" and geom.shape == (4, 3)
    with pytest.raises(arrays.GeometryError):
        arrays.resolve_array("linear-4", 7)
    with pytest.raises(arrays.GeometryError):
        arrays.resolve_array([[0, 0, 99.0]], None)
