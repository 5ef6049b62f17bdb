"""Word times of final words by forced alignment on the CTC head (decoding/alignment.py,
issue 18): spans from spikes, and on a real clip the aligned times land on the words that
pocketsphinx's independent aligner finds, closer than the emission frames do."""

from __future__ import annotations

import statistics

import pytest
import torch

from decoding.alignment import align_words
from decoding.options import DecodingOptions
from decoding.tokenizer import CharTokenizer
from tests.test_server_hotwords import rec  # noqa: F401  (the loaded default model)
from tests.test_server_stream import SO, clip, model_store, reference  # noqa: F401


def _spiky(frames: int, spikes: dict[int, str]) -> torch.Tensor:
    """(frames, C) log-posteriors: blank everywhere but one character at each spike frame."""
    chars = CharTokenizer()
    p = torch.full((frames, chars.vocab_size), 0.01)
    p[:, 0] = 1.0
    for t, c in spikes.items():
        p[t] = 0.01
        p[t, chars.index[c]] = 1.0
    return (p / p.sum(-1, keepdim=True)).log()


def test_words_span_from_their_first_spike_to_the_next_word_or_a_short_tail():
    lp = _spiky(30, {2: "H", 4: "I", 6: " ", 8: "Y", 9: "O", 11: "U"})
    spans = align_words(lp, ["HI", "YOU"], max_gap_frames=3)
    assert [(s.first_spike, s.last_spike) for s in spans] == [(2, 4), (8, 11)]
    assert (spans[0].start, spans[0].end) == (2, 8)  # runs on to the next word's first spike
    assert (spans[1].start, spans[1].end) == (8, 15)  # a pause follows: 3 frames after its last spike
    assert align_words(_spiky(3, {}), ["HELLO"]) is None  # more letters than frames
    assert align_words(lp, ["<unk>"]) is None  # nothing to align
    assert align_words(lp, ["HI", "YOU"], max_frames=29) is None  # too long a stretch: emission times stay


@pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")
@pytest.mark.parametrize("name", ["SPEAKER0001/000010011", "SPEAKER0005/000050003"])
def test_aligned_times_fall_inside_the_words_on_real_speech(rec, name):  # noqa: F811
    from corpus.align import align_words as sphinx_align

    x = clip(name)
    ref, method = sphinx_align(reference(name), x)
    assert method == "pocketsphinx"
    errors, confs = {}, {}
    for how in ("aligned", "emission"):
        words = rec.transcribe(x, DecodingOptions.from_dict({"word_times": how}, base=rec.options), chunk_samples=1600)
        assert all(0 <= w.start < w.end for w in words) and [w.start for w in words] == sorted(w.start for w in words)
        by_text = {r.word.upper(): r for r in ref}
        hits = [(w, by_text[w.text]) for w in words if w.text in by_text]
        assert len(hits) >= len(ref) // 2, (words, ref)
        if how == "aligned":
            for w, r in hits:  # the word's middle lies inside the reference word, give or take a frame
                assert r.start - 0.06 <= (w.start + w.end) / 2 <= r.end + 0.06, (w, r)
        errors[how] = statistics.fmean(abs(w.start - r.start) + abs(w.end - r.end) for w, r in hits)
        confs[how] = [w.conf for w in words]
    assert errors["aligned"] < errors["emission"], errors
    assert confs["aligned"] == confs["emission"]  # which times are reported does not move the confidence


def test_the_confidence_model_round_trips_and_refuses_other_features():
    """The calibrator the manifest carries (decoding/confidence.py): monotone in a feature with
    a positive weight, identical after a JSON round trip, refused when fitted on other features."""
    import json

    from decoding.confidence import FEATURES, ConfidenceModel, word_features

    m = ConfidenceModel([0.0] * 6, [1.0] * 6, [2.0, 0, 0, 1.0, 0, 0], 0.5)
    sure = word_features([0.95, 0.9], 5, 0.4, 0.9)
    unsure = word_features([0.3, 0.1], 5, 0.4, 0.2)
    assert 0 < m.predict(unsure) < m.predict(sure) < 1
    again = ConfidenceModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.predict(sure) == m.predict(sure)
    assert ConfidenceModel.from_dict(None) is None
    with pytest.raises(ValueError, match="fitted on"):
        ConfidenceModel([0.0] * 6, [1.0] * 6, [0.0] * 6, 0.0, features=tuple(reversed(FEATURES)))


@pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")
def test_served_confidence_separates_right_from_wrong_words(rec):  # noqa: F811
    """The default model's `conf` is its calibrator's P(correct) (training/confidence.py): on a
    slice of real speech it ranks the words the recogniser got right above the ones it got
    wrong (AUC > 0.7) and means what it says on average (within 0.15 of the accuracy)."""
    from sklearn.metrics import roc_auc_score

    from training.confidence import label_words

    assert rec.confidence is not None, "the served default ships no confidence calibrator"
    names = sorted(p.relative_to(SO / "audio").with_suffix("").as_posix() for p in (SO / "audio").glob("*/*.flac"))
    y, conf = [], []
    for name in names[:: max(1, len(names) // 30)][:30]:
        words = rec.transcribe(clip(name), rec.options, chunk_samples=1600)
        y += label_words(reference(name).split(), [w.text for w in words])
        conf += [w.conf for w in words]
    assert 0 < sum(y) < len(y), "a slice with no wrong (or no right) words cannot test confidence"
    assert roc_auc_score(y, conf) > 0.7
    assert abs(statistics.fmean(conf) - statistics.fmean(y)) < 0.15
