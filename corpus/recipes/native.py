"""The `native` recipe: a clean, studio-like native-speech test set from the most natural voices.

Piper `joe` (neural VITS) and festival `cmu_us_slt_arctic_hts` (HTS), both at their own rate
(1.0) and pitch (no sox shift), read held-out sentences (`sentences.is_test_text`, the pool the
`single` test split reads), run together to 2-12 s as in `single._text`. No room, no noise: the
ASR benchmark's "native US speaker, studio read speech" stand-in. Test split only; the voices
alternate, so the set is half each. Rendering is `single`'s (same shards, same FLAC layout, same
resume), with clean items only.

Note that these two identities (`r1.00:p+0`) are not among `tts.is_held_out`'s voices, so a model
trained on `single` has heard them; only the texts are unseen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from corpus import tts
from corpus.build import BuildStats, run_shards
from corpus.recipes.single import Item, Shard, _text, render_shard, split_into_shards

VOICES = (tts.Voice("piper", "joe"), tts.Voice("festival", "cmu_us_slt_arctic_hts"))


@dataclass(frozen=True)
class NativeConfig:
    out: Path
    utts: int = 200
    seed: int = 0
    shard_size: int = 20
    workers: int = 1
    progress: bool = True
    resume: bool = False


def plan(cfg: NativeConfig) -> list[Shard]:
    """Every shard of the build, from the seed alone."""
    from corpus.sentences import load_pool

    pool = load_pool()
    rng = random.Random(cfg.seed)
    items = []
    for i in range(cfg.utts):
        v = VOICES[i % len(VOICES)]
        src, text = _text(pool, rng, "test", v.rate)
        items.append(Item(f"test-{i:06d}", "test", text, v.speaker, v.source, rng.getrandbits(32), v,
                          extra={"text_source": src}))
    # array/all_channels are unused for clean items; the shard type wants them
    return split_into_shards(items, cfg.shard_size, cfg.out, "circular-7", False)


def build_native(cfg: NativeConfig) -> BuildStats:
    return run_shards(render_shard, plan(cfg), cfg.out, cfg.workers, cfg.progress, desc="native", resume=cfg.resume)
