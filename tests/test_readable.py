"""Readable finals without a server: the display writer over the stored punctuator, and the
split of a segment at speaker changes (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.display import DisplayWriter
from engine.stream import speaker_runs
from minutes.text import normalise_text
from minutes.types import Segment, Word

STORE = Path(__file__).resolve().parents[1] / "store"


@pytest.fixture(scope="module")
def punctuator():
    from compression.store import ModelStore
    from models.punctuation import Punctuator

    folder, _ = ModelStore(STORE).resolve("punctuator")
    return Punctuator.load(folder)


def words(text: str, speaker: str | None = None) -> list[Word]:
    return [Word(t, i * 0.3, i * 0.3 + 0.25, 0.9, speaker) for i, t in enumerate(text.split())]


def test_finals_are_cased_and_punctuated_and_keep_their_tokens(punctuator):
    w = DisplayWriter(punctuator)
    raw = "SO WHAT DO YOU THINK ABOUT THE BUDGET FOR NEXT YEAR I THINK WE SHOULD ASK ANNA"
    out = w.final(words(raw))
    text = " ".join(x.text for x in out)
    assert [x.token for x in out] == raw.split()
    assert normalise_text(text) == raw  # only case and marks change: WER is judged on the tokens
    assert text[0].isupper() and " I " in text and "Anna" in text, text
    assert any(c in text for c in ".?,"), text
    assert [(x.start, x.end, x.conf) for x in out] == [(x.start, x.end, x.conf) for x in words(raw)]
    seg = Segment(0, 0.0, 1.0, tuple(out))
    assert seg.normalised_text == raw and seg.text == text
    assert out[0].to_dict()["token"] == "SO" and "token" not in words(raw)[0].to_dict()


def test_a_final_starts_with_a_capital_only_after_a_sentence_ended(punctuator):
    w = DisplayWriter(punctuator)
    w.final(words("I WILL SEND THE REPORT TOMORROW"))
    w.sentence_open = True  # as if the last final had ended mid-sentence
    assert w.final(words("AND THE SLIDES"))[0].text[0].islower()
    w.sentence_open = False
    assert w.final(words("AND THE SLIDES"))[0].text[0].isupper()


def test_partials_keep_their_stable_prefix_and_every_words_length(punctuator):
    w = DisplayWriter(punctuator)
    raw = "WELL I DON'T THINK MCDONALD IS RIGHT"
    for k in range(1, len(raw) + 1):
        shown = w.partial(raw[:k], max(0, k - 4))
        assert len(shown.text) == k and shown.stable_chars == max(0, k - 4)
        assert normalise_text(shown.text) == normalise_text(raw[:k])
    assert w.partial(raw, 10).text.startswith("Well I don't")


def test_segments_split_where_the_speaker_changes():
    ws = words("A B C", "S1") + [Word("D", 1.0, 1.2)] + words("E F", "S2") + words("G", "S1")
    runs = speaker_runs(ws)
    assert [[x.text for x in r] for r in runs] == [["A", "B", "C", "D"], ["E", "F"], ["G"]]
    assert speaker_runs(words("A B")) == [words("A B")]  # no diarisation: one run
    assert [len(r) for r in speaker_runs([Word("X", 0, 1)] + words("Y", "S3"))] == [2]
