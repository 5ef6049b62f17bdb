"""Text-only adaptation to a new domain (issue 18): WER on the new domain and on the source
domain, before and after. Writes bench/results/adaptation.{json,md}.

    minutes adapt --model default/11 --method ilma --name legal --version 1 --text <train licences>
    python -m bench.adaptation --base default/11 --adapted legal/1

The new domain is software licences (/usr/share/common-licenses), a text no minutes model or LM
has seen. The adapted model is trained on GPL, LGPL, GFDL, MPL-1.1 and Artistic texts
(`TRAIN_DOCS`); the test sentences come from two other licences, Apache-2.0 and MPL-2.0
(`TEST_DOCS`, less any sentence shared with the training documents), spoken by four TTS voices
(no real speech of this domain exists here). The source domain is real speech: the first
`--limit` speechocean762 dev utterances.

Rows: the base model; the base with the new domain's words added to its lexicon for the session
(`options.vocabulary`: what the adapted version's lexicon also holds, to tell that effect
apart); the adapted model. All with the base's served decoding (beam + LM + ILME + lexicon).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
LICENCES = Path("/usr/share/common-licenses")
TRAIN_DOCS = ("GPL-3", "GPL-2", "LGPL-3", "LGPL-2.1", "GFDL-1.3", "MPL-1.1", "Artistic")
TEST_DOCS = ("Apache-2.0", "MPL-2.0")
SOURCE = "/work/data/corpus/speechocean762/dev.jsonl"


@dataclass
class Row:
    method: str
    model: str
    target_wer: float
    source_wer: float


def test_sentences(limit: int) -> list[str]:
    from training.adapt import domain_sentences

    seen = set(domain_sentences([LICENCES / d for d in TRAIN_DOCS]))
    test = [s for s in domain_sentences([LICENCES / d for d in TEST_DOCS]) if s not in seen]
    return [s for s in test if len(s.split()) <= 30][:limit]


def target_audio(sentences: list[str]):
    from corpus.tts import Voice, synthesize_many

    voices = [Voice("festival", "cmu_us_slt_arctic_hts", 1.0, 0), Voice("festival", "kal_diphone", 1.0, 0),
              Voice("flite", "rms", 1.0, 0), Voice("espeak", "en-us+m3", 1.0, 0)]
    return synthesize_many([(voices[i % len(voices)], s) for i, s in enumerate(sentences)])


def wer(rec, options, waves, refs) -> float:
    import jiwer

    hyps = [" ".join(w.text for w in rec.transcribe(w, options, chunk_samples=1600)) for w in waves]
    return round(100 * jiwer.wer(refs, hyps), 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="default/11")
    p.add_argument("--adapted", action="append", required=True, help="method=name/version, e.g. ilma=legal/1")
    p.add_argument("--store", type=Path, default=RESULTS.parent.parent / "store")
    p.add_argument("--target", type=int, default=60, help="test sentences of the new domain")
    p.add_argument("--limit", type=int, default=100, help="source-domain utterances")
    p.add_argument("--name", default="adaptation")
    args = p.parse_args()

    import torch
    from tqdm import tqdm

    from compression.store import ModelStore, split_ref
    from corpus.manifest import read_manifest, resolve_audio
    from decoding.options import DecodingOptions
    from decoding.recogniser import Recogniser
    from training.adapt import domain_sentences
    from training.data import load_audio

    torch.set_num_threads(1)
    store = ModelStore(args.store)
    sentences = test_sentences(args.target)
    t_waves = target_audio(sentences)
    records = list(read_manifest(SOURCE))[: args.limit]
    s_waves = [load_audio(str(resolve_audio(r, SOURCE)), 16000).numpy() for r in records]
    s_refs = [r.text for r in records]
    vocab = sorted({w for s in domain_sentences([LICENCES / d for d in TRAIN_DOCS]) for w in s.split()})
    base = Recogniser.load(*store.resolve(*split_ref(args.base)))
    runs = [("none", args.base, base, base.options),
            ("vocabulary", args.base, base, DecodingOptions.from_dict({"vocabulary": vocab}, base=base.options))]
    for spec in args.adapted:
        method, ref = spec.split("=", 1)
        rec = Recogniser.load(*store.resolve(*split_ref(ref)))
        runs.append((method, ref, rec, rec.options))
    rows = []
    for method, ref, rec, options in tqdm(runs, desc="models"):
        rows.append(Row(method, ref, wer(rec, options, t_waves, sentences), wer(rec, options, s_waves, s_refs)))
        tqdm.write(str(rows[-1]))
    RESULTS.mkdir(exist_ok=True)
    doc = {"base": args.base, "target": {"domain": "software licences", "train_docs": TRAIN_DOCS, "test_docs": TEST_DOCS,
                                         "sentences": len(sentences), "speech": "TTS: festival slt, festival kal, flite rms, espeak-ng en-us+m3"},
           "source": {"set": SOURCE, "utterances": len(records)}, "rows": [asdict(r) for r in rows],
           "adaptation": {r.method: {"target_wer": r.target_wer, "source_wer": r.source_wer} for r in rows}}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Text-only adaptation to software licences (`bench/adaptation.py`, base `{args.base}`)", "",
             f"New domain: {len(sentences)} sentences of {', '.join(TEST_DOCS)} spoken by TTS voices; source domain: "
             f"the first {len(records)} speechocean762 dev utterances (real speech). Served decoding (beam + LM + ILME + lexicon).", "",
             "| method | model | WER new domain | WER source domain |", "|---|---|---|---|"]
    lines += [f"| {r.method} | {r.model} | {r.target_wer:.2f} % | {r.source_wer:.2f} % |" for r in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
