"""Hotword (contextual) biasing: a boosting trie over tokens, built per session.

A stream's `start` message may list words the talker is likely to say (names, jargon). They are
tokenised into the model's pieces and put in a trie; each hypothesis carries a trie node. A
token that extends a partial match earns `boost` (`DecodingOptions.hotword_boost`); a token
that breaks a match gives back what the partial match earned (so biasing cannot reward a
prefix that never completes), then is tried again from the root. A completed hotword keeps its bonus and returns to the root. The
trie is a plain Python object built in microseconds, so hotwords change per session without
reloading anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch

__all__ = ["HotwordTrie", "TrieNode"]


@dataclass(eq=False)
class TrieNode:
    """One node: children by token id; `depth` tokens matched so far; `end` when a hotword ends."""

    depth: int = 0
    end: bool = False
    children: dict[int, "TrieNode"] = field(default_factory=dict)


class HotwordTrie:
    """Token trie of hotwords with a per-token bonus `boost` (log domain). No default here:
    the value comes from `DecodingOptions.hotword_boost`, the option's one home."""

    def __init__(self, token_seqs: Iterable[Sequence[int]], boost: float) -> None:
        self.root = TrieNode()
        self.boost = float(boost)
        self.size = 0
        for seq in token_seqs:
            if not seq:
                continue
            node = self.root
            for t in seq:
                node = node.children.setdefault(int(t), TrieNode(depth=node.depth + 1))
            node.end = True
            self.size += 1

    @classmethod
    def from_words(cls, words: Iterable[str], encode: Callable[[str], list[int]], boost: float) -> "HotwordTrie":
        """Build from normalised words/phrases with the model's tokenizer (`encode(text) -> ids`)."""
        return cls((encode(w) for w in words if w.strip()), boost)

    def __bool__(self) -> bool:
        return self.size > 0

    def advance(self, node: TrieNode, token: int) -> tuple[float, TrieNode]:
        """Bonus for emitting `token` from `node`, and the node after it."""
        child = node.children.get(token)
        if child is not None:
            bonus = self.boost
            if child.end and not child.children:
                return bonus, self.root
            return bonus, child
        # Match broken: take back the partial bonus, then try to start a new match at the root.
        bonus = -self.boost * node.depth
        child = self.root.children.get(token)
        if child is not None:
            return bonus + self.boost, (self.root if child.end and not child.children else child)
        return bonus, self.root

    def bonus_row(self, node: TrieNode, vocab_size: int) -> torch.Tensor:
        """(V,) bonus for every token from `node` (the dense form the beam search adds)."""
        row = torch.full((vocab_size,), -self.boost * node.depth)
        for t, child in self.root.children.items():
            row[t] += self.boost
        if node is not self.root:
            for t in node.children:
                row[t] = self.boost
        return row

    def final_bonus(self, node: TrieNode) -> float:
        """Correction at the end of a hypothesis: an unfinished match gives back its bonus."""
        return 0.0 if node.end else -self.boost * node.depth
