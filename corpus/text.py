"""The corpus's view of the text normaliser, which lives in `minutes.text` (below every package:
the server normalises hotwords with it and must not import the corpus). Re-exported so that
corpus modules and manifests keep saying `corpus.text.normalise_text`."""

from minutes.text import ALPHABET, normalise_text, number_to_words

__all__ = ["normalise_text", "number_to_words", "ALPHABET"]
