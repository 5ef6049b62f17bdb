"""Beam search through the streaming recogniser: same API, options per stream, batched with greedy."""

from __future__ import annotations

import pytest

from decoding.options import DecodingOptions
from decoding.recogniser import Recogniser
from test_asr_model import real_utterances, tiny_config, tiny_recogniser


@pytest.fixture(scope="module")
def utts():
    return real_utterances(2)


@pytest.fixture(scope="module")
def rec(utts, tmp_path_factory) -> Recogniser:
    return tiny_recogniser([t for _, t in utts], tmp_path_factory.mktemp("rec"))


def _run(rec, streams, wave, step=2000):
    for i in range(0, wave.numel(), step):
        for s in streams:
            s.accept_waveform(wave[i:i + step].numpy())
        while any(rec.is_ready(s) for s in streams):
            rec.decode_streams(streams)
    for s in streams:
        s.input_finished()
    while any(rec.is_ready(s) for s in streams):
        rec.decode_streams(streams)
    return [s.result() for s in streams]


def test_beam_one_stream_equals_greedy_one_symbol_and_batches_with_greedy(rec, utts):
    wave = utts[0][0]
    greedy = rec.new_stream(DecodingOptions(max_symbols_per_frame=1))
    beam1 = rec.new_stream(DecodingOptions(search="beam", beam_size=1))
    beam4 = rec.new_stream(DecodingOptions(search="beam", beam_size=4, ilm_weight=0.2))
    rg, rb1, rb4 = _run(rec, [greedy, beam1, beam4], wave)
    assert rg.text and rg.tokens == rb1.tokens and rg.text == rb1.text
    assert rb4.stable_chars == len(rb4.text)
    times = [w.start for w in rb4.words]
    assert times == sorted(times) and all(0 <= w.conf <= 1 for w in rb4.words)


def test_hotwords_switch_a_stream_to_beam_and_segments_close(rec, utts):
    s = rec.new_stream(DecodingOptions(hotwords=("HELLO",)))
    assert s.beam is not None
    words = rec.transcribe(utts[1][0].numpy(), DecodingOptions(search="beam", beam_size=3), chunk_samples=1600)
    assert words and all(a.start <= b.start for a, b in zip(words, words[1:]))
