"""The punctuation + casing tagger: labelling of written text, display forms, the stored model."""

from pathlib import Path

from compression.store import ModelStore
from models.punctuation import Punctuator, case_of, display_form
from training.punctuation_data import label_text

REPO = Path(__file__).resolve().parents[1]


def test_written_text_becomes_normalised_words_with_case_and_marks():
    words = label_text('"Well," said McDonald, "in 1984 NASA paid $5!" Really?')
    assert [w.word for w in words] == ["WELL", "SAID", "MCDONALD", "IN", "NINETEEN", "EIGHTY", "FOUR",
                                       "NASA", "PAID", "FIVE", "DOLLARS", "REALLY"]
    assert [w.mark for w in words] == [",", "", ",", "", "", "", "", "", "", "", ".", "?"]
    assert [w.case for w in words][:3] == ["title", "lower", "mixed"]
    assert words[7].case == "upper"


def test_display_forms():
    assert case_of("iPhone") == "mixed" and case_of("I") == "title" and case_of("NASA") == "upper"
    assert display_form("DON'T", "title", ",") == "Don't,"
    assert display_form("MCDONALD", "mixed", "", {"MCDONALD": "McDonald"}) == "McDonald"


def test_the_stored_tagger_writes_sentences():
    folder, manifest = ModelStore(REPO / "store").resolve("punctuator")
    assert manifest.architecture == "bilstm-punctuation-tagger"
    p = Punctuator.load(folder)
    out = p.punctuate("CAN EVERYONE SEE MY SCREEN".split())
    assert out[0] == "Can" and out[-1].endswith("?"), out
    out = p.punctuate("THANKS EVERYONE THAT'S ALL FOR TODAY".split())
    assert out[0] == "Thanks" and out[-1] == "today.", out
