"""The lexicon scorer (decoding/lexicon.py): its word and prefix tests, the penalty rows it gives
the beam, and the beam search with it on the tiny random transducer of test_beam_search."""

from __future__ import annotations

import gzip

import pytest
import torch

from decoding.beam_search import BeamSearch
from decoding.lexicon import Lexicon, LexiconScorer
from decoding.options import DecodingOptions
from tests.test_beam_search import V, TinyTransducer, _enc
from tests.test_server_stream import SO, clip, model_store, reference  # noqa: F401

# Output id k -> piece (0 is the blank); "▁" starts a word, as SentencePiece writes it.
PIECES = ["", "\u2581A", "\u2581B", "C", "D", "\u2581E", "F", "G", "\u2581H", "I", "J", "<unk>"]
assert len(PIECES) == V
WORDS = ["A", "B", "BC", "E", "EF", "H", "HI", "HIJ"]


def test_words_prefixes_and_session_words():
    lex = Lexicon(["cat", "Cab", "dog"])
    assert "CAT" in lex and "CA" not in lex and len(lex) == 3
    assert lex.is_prefix("") and lex.is_prefix("CA") and lex.is_prefix("DOG") and not lex.is_prefix("CAX")
    more = lex.with_words(["zebra crossing"])
    assert "ZEBRA" in more and "CROSSING" in more and more.is_prefix("ZEB") and more.is_prefix("CA")
    assert "ZEBRA" not in lex  # the base is shared, never changed


def test_file_round_trip_is_byte_stable(tmp_path):
    lex = Lexicon(WORDS)
    lex.write(tmp_path / "a.txt.gz")
    Lexicon.read(tmp_path / "a.txt.gz").write(tmp_path / "b.txt.gz")
    assert (tmp_path / "a.txt.gz").read_bytes() == (tmp_path / "b.txt.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.txt.gz").read_bytes()).decode().split() == sorted(WORDS)


def test_each_non_word_pays_once_at_the_first_token_that_shows_it():
    sc = LexiconScorer(Lexicon(WORDS), PIECES, blank=0, penalty=2.0)
    ids = {p: k for k, p in enumerate(PIECES)}
    row = sc.row("B")  # a word, and a prefix of "BC"
    assert row[ids["C"]] == 0 and row[ids["\u2581E"]] == 0 and row[0] == 0
    assert row[ids["D"]] == -2.0  # "BD" starts no word
    row = sc.row("HIJ")
    assert row[ids["\u2581A"]] == 0
    row = sc.row("HIJD")  # already paid when "D" came: its continuations are free
    assert row[ids["C"]] == 0 and row[ids["\u2581A"]] == 0
    assert sc.row("")[ids["<unk>"]] == -2.0 and sc.row("")[ids["C"]] == -2.0  # no word starts with "C"
    lex2 = LexiconScorer(Lexicon(["HIJK"]), PIECES, blank=0, penalty=2.0)
    row = lex2.row("HI")  # a prefix, but no word: closing it costs the penalty
    assert row[ids["\u2581A"]] == -4.0  # closes "HI" (−2) and starts "A", which starts no word (−2)
    assert lex2.final_penalty([ids["\u2581H"], ids["I"]]) == -2.0
    assert lex2.final_penalty([ids["\u2581H"], ids["I"], ids["J"], ids["<unk>"]]) == 0.0  # paid already
    assert sc.partial([ids["\u2581H"], ids["I"], ids["\u2581B"], ids["C"]]) == "BC"


def test_row_of_a_bare_continuation_at_the_start():
    """A hypothesis may begin with a piece that does not start a word (the model's choice);
    it is then the start of the first word."""
    sc = LexiconScorer(Lexicon(["CD"]), PIECES, blank=0, penalty=1.0)
    assert sc.row("")[PIECES.index("C")] == 0 and sc.row("")[PIECES.index("D")] == -1.0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = TinyTransducer().eval()
    with torch.no_grad():
        m.out.bias.zero_()
    return m


def _search_with(model, penalty, chunk=None):
    lex = LexiconScorer(Lexicon(WORDS), PIECES, blank=0, penalty=penalty)
    search = BeamSearch(model)
    enc, lengths = _enc(3, 20, seed=11), torch.tensor([20, 14, 17])
    opts = DecodingOptions(search="beam", beam_size=4, oov_penalty=penalty)
    streams = [search.new_stream(opts, None, lex) for _ in range(3)]
    step = chunk or 20
    for start in range(0, 20, step):
        part = enc[:, start:start + step]
        search.search(streams, part, (lengths - start).clamp(0, part.size(1)))
    return [search.nbest(s, 1)[0] for s in streams], lex, search, (enc, lengths)


def _words(tokens):
    return "".join(PIECES[k] for k in tokens).replace("\u2581", " ").split()


def test_strong_penalty_keeps_every_word_in_the_lexicon(model):
    hyps, lex, _, (enc, lengths) = _search_with(model, 0.0)
    free = [_words(h.tokens) for h in hyps]
    assert any(w not in lex.lexicon for ws in free for w in ws), "the random model must spell non-words on its own"
    hyps, lex, _, _ = _search_with(model, 50.0)
    for h in hyps:
        assert all(w in lex.lexicon for w in _words(h.tokens)), _words(h.tokens)
        assert h.lexicon_score == 0.0
        assert h.score == pytest.approx(h.am_score, abs=1e-4)  # no other term fused


def test_penalty_parts_add_up_and_chunking_changes_nothing(model):
    whole, _, _, _ = _search_with(model, 1.0)
    chunked, _, _, _ = _search_with(model, 1.0, chunk=3)
    for a, b in zip(whole, chunked):
        assert a.tokens == b.tokens and a.score == pytest.approx(b.score, abs=1e-4)
        assert a.score == pytest.approx(a.am_score + a.lexicon_score, abs=1e-4)
        assert a.lexicon_score <= 0.0


def test_packaged_lexicon_is_loaded_applied_and_echoed(model_store, tmp_path):  # noqa: F811
    """A store version with `lexicon.txt.gz` and an `oov_penalty` default: the loader finds the
    words, `plan` echoes the penalty (and drops it when a client asks for 0), hotwords join the
    lexicon, and on real speech a strong penalty keeps every word inside a tiny lexicon."""
    from compression.store import ModelStore
    from decoding.options import SearchRequest
    from decoding.recogniser import Recogniser
    from training.package import package

    if not SO.is_dir():
        pytest.skip("speechocean762 is not at ../shared/data")
    torch.set_num_threads(1)
    folder = ModelStore(model_store[0]).resolve("default")[0]
    name = "SPEAKER0005/000050003"
    words = reference(name).split() + ["HELLO"]
    Lexicon(words).write(tmp_path / "lex.txt.gz")
    out = package(folder / "model.pt", "default", "1", {}, store_root=tmp_path / "store",
                  decoding={"search": "beam", "beam_size": 4, "oov_penalty": 20.0}, lexicon=tmp_path / "lex.txt.gz")
    assert (out / "lexicon.txt.gz").read_bytes() == (tmp_path / "lex.txt.gz").read_bytes()
    rec = Recogniser.load(out)
    assert rec.manifest.extra["lexicon"]["words"] == len(set(words))
    _, plan = rec.plan()
    assert plan.oov_penalty == 20.0 and plan.to_dict()["oov_penalty"] == 20.0
    _, off = rec.plan(search=SearchRequest(oov_penalty=0.0))
    assert off.oov_penalty == 0.0 and rec.new_stream(rec.plan(search=SearchRequest(oov_penalty=0.0))[0]).beam.lexicon is None
    hot, _ = rec.plan(("ZEBRA CROSSING",))
    assert "ZEBRA" in rec.new_stream(hot).beam.lexicon.lexicon
    said = [w.text for w in rec.transcribe(clip(name))]
    assert all(w in set(words) for w in said), said
    if model_store[1]:  # the trained model hears the words of its lexicon, not silence
        assert len(said) >= len(words) // 2, said


def test_a_session_scorer_over_the_shared_one_gives_the_same_rows():
    """Hotwords and vocabulary extend the lexicon per stream; that scorer reads the shared
    scorer's cached rows for every partial word no added word starts with, and must give exactly
    the rows a scorer built from scratch over the extended lexicon gives."""
    base_lex = Lexicon(WORDS)
    shared = LexiconScorer(base_lex, PIECES, blank=0, penalty=2.0)
    extended = base_lex.with_words(["CDF", "AJ"])
    session = LexiconScorer(extended, PIECES, blank=0, penalty=2.0, base=shared)
    scratch = LexiconScorer(extended, PIECES, blank=0, penalty=2.0)
    for word in ["", "A", "AJ", "B", "BC", "C", "CD", "CDF", "CDFG", "H", "HIJ", "X", "E"]:
        assert torch.equal(session.row(word), scratch.row(word)), word
    assert set(session._rows) <= {"", "A", "AJ", "C", "CD", "CDF"}  # only the added words' prefixes
