"""Faster finals (issue 16): the level-based silence test, the quick endpoint rule on real speech
through the shipped model, and the blank penalty of greedy search."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from decoding.vad import FrameLevels
from test_asr_model import real_utterances

REPO = Path(__file__).resolve().parents[1]
FRAME = 640  # 40 ms at 16 kHz


def noise(seconds: float, db: float, seed: int = 0) -> np.ndarray:
    """White noise at `db` dBFS mean power."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * 16000))
    return (x * 10 ** (db / 20)).astype(np.float32)


def test_levels_tell_a_pause_from_speech_and_say_when_they_cannot():
    lv = FrameLevels(FRAME)
    lv.accept(noise(4.0, -20.0, 1))  # "speech": 100 frames
    lv.accept(noise(1.0, -60.0, 2))  # the room between sentences: 25 frames
    assert lv.trailing_silence(lv.end) == 25
    assert lv.trailing_silence(115) == 15  # counted up to the frames asked for, not all heard
    assert lv.trailing_silence(100) is None  # no pause heard yet by then: no floor to tell from
    lv.accept(noise(0.2, -20.0, 8))  # the talker goes on
    assert lv.trailing_silence(lv.end) == 0
    assert lv.trailing_silence(lv.end + 1) is None  # a frame not heard yet

    flat = FrameLevels(FRAME)  # speech no louder than the room: no contrast, no answer
    flat.accept(noise(5.0, -30.0, 3))
    assert flat.trailing_silence(flat.end) is None

    muted = FrameLevels(FRAME)  # exact zeros are silence even with nothing else heard
    muted.accept(np.zeros(16000, np.float32))
    assert muted.trailing_silence(muted.end) == 25


def test_levels_do_not_depend_on_how_the_audio_was_cut():
    """A file sent whole and the same audio streamed in odd pieces, queried at the same decoded
    frames, give the same answers (the REST path and a live stream must end segments alike)."""
    x = np.concatenate([noise(6.0, -20.0, 4), noise(0.5, -55.0, 5), noise(6.0, -22.0, 6), noise(1.0, -55.0, 7)])
    whole, pieces = FrameLevels(FRAME), FrameLevels(FRAME)
    whole.accept(x)
    answers_whole, answers_pieces = [], []
    for end in range(8, len(x) // FRAME, 8):
        answers_whole.append(whole.trailing_silence(end))
    fed = 0
    for end in range(8, len(x) // FRAME, 8):
        while fed < min(len(x), (end + 3) * FRAME):
            pieces.accept(x[fed:fed + 777])
            fed += 777
        answers_pieces.append(pieces.trailing_silence(end))
    assert answers_whole == answers_pieces
    assert max(a or 0 for a in answers_whole) >= 12  # the pauses were found
    assert len(whole.levels) <= whole.rule.history_frames + len(x) // FRAME - (len(x) // FRAME // 8 - 1) * 8


@pytest.fixture(scope="module")
def shipped():
    from compression.store import ModelStore
    from decoding.recogniser import Recogniser

    torch.set_num_threads(1)
    path, _ = ModelStore(REPO / "store").resolve("default", verify=True)
    return Recogniser.load(path)


def endpoint_delays(rec, audio: np.ndarray, opts) -> tuple[list[float], list[str]]:
    """Per endpoint: seconds from the segment's last word to the chunk that closed it (the
    benchmark's own decode loop, 100 ms messages as live clients send them)."""
    from bench.endpointing import decode

    words, delays = decode(rec, audio, opts)
    return delays, [w.text for w in words]


def test_quick_rule_closes_segments_sooner_after_real_speech(shipped):
    """Real utterances with 1.2 s room-level pauses between them: the quick rule must close
    after each sentence well before the 1 s trailing-blank rule does, and lose no word.
    (Measured with default/7: median 0.60 s against 1.24 s over 11 endpoints.)"""
    parts = []
    for wav, _ in real_utterances(10):
        x = wav.numpy()
        parts += [x, noise(1.2, 10 * np.log10(np.percentile(x[: len(x) // FRAME * FRAME].reshape(-1, FRAME).var(1), 10) + 1e-12), 7)]
    audio = np.concatenate(parts)
    slow, slow_words = endpoint_delays(shipped, audio, replace(shipped.options, endpoint_quick_blank=0.0))
    quick, quick_words = endpoint_delays(shipped, audio, replace(shipped.options, endpoint_quick_blank=0.16))
    assert slow and quick
    assert np.median(quick) < np.median(slow) - 0.25, (quick, slow)
    assert np.median(quick) < 0.75
    assert len(quick_words) >= len(slow_words) - 1, (quick_words, slow_words)


def test_blank_penalty_emits_more_and_zero_changes_nothing(shipped):
    wave = real_utterances(3)[2][0].numpy()
    base = [w.text for w in shipped.transcribe(wave, replace(shipped.options, blank_penalty=0.0), endpoints=False)]
    same = [w.text for w in shipped.transcribe(wave, shipped.options, endpoints=False)] \
        if shipped.options.blank_penalty == 0 else base
    assert base == same
    more = shipped.transcribe(wave, replace(shipped.options, blank_penalty=4.0), endpoints=False)
    assert len(more) > len(base), (base, [w.text for w in more])
