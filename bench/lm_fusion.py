"""LM-fusion benchmark: greedy vs beam vs shallow fusion vs ILME vs MWER fine-tunes; hotwords; RTF.

    python -m bench.lm_fusion --model /work/data/exp/asr/best.pt --lm /work/data/exp/lm/bible/lm.pt \
        --mwer-dir /work/data/exp/mwer

Writes `bench/results/lm_fusion.json` (`{test_set: {method: {"wer": %}}}`), the details beside
it (`lm_fusion_details.json`: tuned λ's, the λ grid, hotword recall, RTF) and a readable table
(`lm_fusion.md`). λ's are tuned on the dev part of the LM's domain and then frozen for every
test set. Encoder outputs come from the full-utterance forward with the streaming mask (equal to
what chunked streaming computes; tests check that); searches run batched across utterances
exactly as the server batches streams.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jiwer
import torch

from decoding.beam_search import BeamSearch
from decoding.greedy import greedy_search
from decoding.hotwords import HotwordTrie
from decoding.options import DecodingOptions
from decoding.scorers import load_external_lm
from decoding.tokenizer import Tokenizer
from decoding.transducer_view import TransducerSearchView
from models.transducer import Transducer, load_checkpoint
from training.data import FeatureCache, Item, read_items

RESULTS = Path(__file__).parent / "results"
DEFAULT_SETS = {
    "bible_dev": "/work/data/lmfusion/bible_dev/manifest.jsonl",
    "bible_test": "/work/data/lmfusion/bible_test/manifest.jsonl",
    "speechocean762_dev": "/work/data/corpus/speechocean762/dev.jsonl",
    "single_test": "/work/data/corpus/single/test.jsonl",
}
TUNE_SET = "bible_dev"
LM_GRID = (0.1, 0.2, 0.3, 0.45, 0.6)
ILM_GRID = (0.05, 0.1, 0.2, 0.3)


@dataclass
class Encoded:
    """A test set run through one model's encoder once: frames per utterance and references."""

    enc: list[torch.Tensor]  # (N_i, D) each
    refs: list[str]
    seconds: float  # audio duration


@torch.no_grad()
def encode_set(model: Transducer, items: list[Item], cache: FeatureCache, batch: int = 8) -> Encoded:
    enc, refs = [], []
    order = sorted(items, key=lambda it: it.duration)
    for i in range(0, len(order), batch):
        part = order[i:i + batch]
        feats = [cache.get(it) for it in part]
        fl = torch.tensor([f.shape[0] for f in feats])
        x = torch.zeros(len(feats), int(fl.max()), feats[0].shape[1])
        for j, f in enumerate(feats):
            x[j, : f.shape[0]] = f
        e, el = model.encode(x, fl)
        enc += [e[j, : el[j]] for j in range(len(part))]
        refs += [it.text for it in part]
    return Encoded(enc, refs, sum(it.duration for it in items))


def _pad(encs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([e.size(0) for e in encs])
    x = torch.zeros(len(encs), int(lens.max()), encs[0].size(1))
    for j, e in enumerate(encs):
        x[j, : e.size(0)] = e
    return x, lens


def decode_greedy(model: Transducer, tok: Tokenizer, data: Encoded, batch: int = 8) -> list[str]:
    out = []
    for i in range(0, len(data.enc), batch):
        x, lens = _pad(data.enc[i:i + batch])
        em, _ = greedy_search(model, x, lens, model.initial_predictor_state(x.size(0)))
        out += [tok.decode([e.token for e in r]) for r in em]
    return out


def decode_beam(search: BeamSearch, tok: Tokenizer, data: Encoded, opts: DecodingOptions,
                trie: HotwordTrie | None = None, batch: int = 8) -> list[str]:
    out = []
    for i in range(0, len(data.enc), batch):
        x, lens = _pad(data.enc[i:i + batch])
        streams = [search.new_stream(opts, trie) for _ in range(x.size(0))]
        search.search(streams, x, lens)
        out += [tok.decode(search.nbest(s, 1)[0].tokens) for s in streams]
    return out


def wer(refs: list[str], hyps: list[str]) -> float:
    return round(100 * jiwer.wer(refs, [h if h.strip() else "<EMPTY>" for h in hyps]), 2)


def tune(decode: Callable[[DecodingOptions], list[str]], refs: list[str], grid: list[DecodingOptions]) -> tuple[DecodingOptions, list[dict]]:
    """Lowest dev WER over the grid (ties: the first, i.e. the smaller λ's)."""
    rows = []
    for o in grid:
        rows.append({"lm_weight": o.lm_weight, "ilm_weight": o.ilm_weight, "wer": wer(refs, decode(o))})
        print(f"  tune λ_T={o.lm_weight} λ_I={o.ilm_weight}: WER {rows[-1]['wer']}", flush=True)
    best = min(range(len(grid)), key=lambda i: rows[i]["wer"])
    return grid[best], rows


def hotword_recall(refs: list[str], hyps: list[str], words: set[str]) -> dict[str, float]:
    """Occurrences of list words in the references that the hypotheses contain (bag of words)."""
    hit = total = 0
    for r, h in zip(refs, hyps):
        hc = Counter(h.split())
        for w, n in Counter(x for x in r.split() if x in words).items():
            total += n
            hit += min(n, hc[w])
    return {"recall": round(100 * hit / max(1, total), 2), "occurrences": total}


def rare_words(refs: list[str], train_texts: list[str], max_count: int = 1, limit: int = 150) -> list[str]:
    """Words of the test references seen at most `max_count` times in the ASR's training text."""
    seen = Counter(w for t in train_texts for w in t.split())
    cand = sorted({w for r in refs for w in r.split() if seen[w] <= max_count and len(w) > 3})
    return cand[:limit]


def rtf(model: Transducer, tok: Tokenizer, items: list[Item], cache: FeatureCache, run: Callable[[Encoded], list[str]]) -> float:
    """Real-time factor of encoder + search for one stream at a time (1 thread)."""
    t0, secs = time.perf_counter(), 0.0
    for it in items:
        data = encode_set(model, [it], cache, batch=1)
        run(data)
        secs += it.duration
    return (time.perf_counter() - t0) / secs


def lambda_spread(search: BeamSearch, tok: Tokenizer, data: Encoded, o: DecodingOptions,
                  scales: tuple[float, ...] = (0.5, 1.0, 1.5)) -> dict:
    """Dev WER with every λ scaled by 0.5, 1, 1.5 (at least λ_T = 0.1): how much a model's WER
    depends on getting λ right (the paper: MWER-ILME is the least sensitive)."""
    from dataclasses import replace

    base_t = o.lm_weight or 0.2
    rows = {}
    for k in scales:
        o2 = replace(o, lm_weight=round(base_t * k, 3), ilm_weight=round(o.ilm_weight * k, 3))
        rows[f"x{k}"] = wer(data.refs, decode_beam(search, tok, data, o2))
    return {"wer": rows, "spread": round(max(rows.values()) - min(rows.values()), 2)}


def _mwer_models(folder: Path) -> dict[str, Path]:
    return {v: folder / f"{v}.pt" for v in ("mwer", "mwer_sf", "mwer_ilme") if (folder / f"{v}.pt").exists()}


def hotwords_table(hw: dict, heading: str) -> list[str]:
    """Markdown lines: a heading, then recall and WER of each decoding run of `hw["runs"]`."""
    lines = ["", heading, "", "| decoding | recall % | WER % |", "|---|---|---|"]
    return lines + [f"| {k} | {v['recall']:.1f} | {v['wer']:.1f} |" for k, v in hw["runs"].items()]


def table(results: dict, details: dict) -> str:
    methods = ["greedy", "beam", "sf", "ilme", "mwer", "mwer_sf", "mwer_ilme"]
    lines = ["# LM fusion benchmark (WER %)", "",
             f"Model: `{details['model']}`; LM: `{details['lm']}` ({details.get('lm_domain', '?')}); "
             f"beam {details['beam_size']}; λ's tuned on `{TUNE_SET}`: SF λ_T={details['sf']['lm_weight']}, "
             f"ILME λ_T={details['ilme']['lm_weight']} λ_I={details['ilme']['ilm_weight']}.", "",
             "| test set | n | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for name, row in results.items():
        cells = [f"{row[m]['wer']:.1f}" if m in row else "–" for m in methods]
        lines.append(f"| {name} | {details['sizes'].get(name, '?')} | " + " | ".join(cells) + " |")
    hw = details.get("hotwords")
    if hw:
        lines += hotwords_table(hw, f"## Hotwords ({hw['set']}, {hw['n_words']} rare words, bonus {hw['score']}/token)")
    lm2 = details.get("second_lm")
    if lm2 and "bible_test" in lm2:
        lines += ["", f"Second LM `{lm2['lm']}` on bible_test: SF {lm2['bible_test']['sf']:.1f} "
                  f"(λ_T={lm2['sf']['lm_weight']}), ILME {lm2['bible_test']['ilme']:.1f} "
                  f"(λ_T={lm2['ilme']['lm_weight']}, λ_I={lm2['ilme']['ilm_weight']})."]
    sens = details.get("lambda_sensitivity")
    if sens:
        lines += ["", f"## λ sensitivity ({TUNE_SET} WER with the λ's scaled ×0.5 / ×1 / ×1.5)", "",
                  "| model | ×0.5 | ×1 | ×1.5 | spread |", "|---|---|---|---|---|"]
        for k, v in sens.items():
            w = v["wer"]
            lines.append(f"| {k} | {w['x0.5']:.1f} | {w['x1.0']:.1f} | {w['x1.5']:.1f} | {v['spread']:.1f} |")
    r = details.get("rtf")
    if r:
        lines += ["", "## Cost (1 thread, one stream at a time, encoder + search)", "",
                  f"greedy RTF {r['greedy']:.3f}; beam {details['beam_size']} + ILME (LSTM LM) RTF "
                  f"{r['beam_ilme']:.3f}; ratio {r['ratio']:.2f}× (target ≤ 2×)."]
    lines += ["", "## Reproduce", "", "```sh",
              "python -m bench.lm_fusion_data --domain bible --dev 60 --test 100   # TTS dev/test sets",
              "python -m training.lm --recipe training/recipes/lm_bible.toml        # LSTM LM (+ lm_bible_ngram.toml)",
              "for v in mwer mwer_sf mwer_ilme; do python -m training.mwer --recipe training/recipes/$v.toml --base BASE; done",
              f"python -m bench.lm_fusion --model BASE --lm {details['lm']}", "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from dataclasses import replace

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="/work/data/exp/asr/best.pt")
    p.add_argument("--lm", default="/work/data/exp/lm/bible/lm.pt")
    p.add_argument("--lm-domain", default="bible")
    p.add_argument("--lm2", default="/work/data/exp/lm/bible/ngram.pkl",
                   help="a second LM (e.g. the n-gram) compared on the LM's domain; '' to skip")
    p.add_argument("--mwer-dir", type=Path, default=Path("/work/data/exp/mwer"))
    p.add_argument("--set", action="append", default=[], help="NAME=MANIFEST (default: the built-in sets)")
    p.add_argument("--max-utts", type=int, default=100)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--rtf-utts", type=int, default=15)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model, blob = load_checkpoint(args.model)
    tok = Tokenizer(blob["tokenizer"])
    lm = load_external_lm(args.lm, model.cfg.vocab_size, tokenizer=blob["tokenizer"])
    paths = dict(s.split("=", 1) for s in args.set) or DEFAULT_SETS
    sets = {n: read_items([m], 30.0)[: args.max_utts] for n, m in paths.items()}
    sets = {n: v for n, v in sets.items() if v}
    cache = FeatureCache()
    enc = {n: encode_set(model, items, cache) for n, items in sets.items()}
    search = BeamSearch(TransducerSearchView(model), lm)
    base = DecodingOptions(search="beam", beam_size=args.beam)
    tune_data = enc[TUNE_SET]

    def dev_decode(o: DecodingOptions) -> list[str]:
        return decode_beam(search, tok, tune_data, o)

    sf, sf_rows = tune(dev_decode, tune_data.refs, [replace(base, lm_weight=l) for l in LM_GRID])
    ilme, ilme_rows = tune(dev_decode, tune_data.refs,
                           [replace(base, lm_weight=l, ilm_weight=i) for l in LM_GRID for i in ILM_GRID if i <= l])
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, data in enc.items():
        row = {"greedy": {"wer": wer(data.refs, decode_greedy(model, tok, data))}}
        for method, o in (("beam", base), ("sf", sf), ("ilme", ilme)):
            row[method] = {"wer": wer(data.refs, decode_beam(search, tok, data, o))}
        results[name] = row
        print(name, row, flush=True)
    mwer_lambdas = {}
    sensitivity = {"base (beam+ILME)": lambda_spread(search, tok, tune_data, ilme)}
    for variant, path in _mwer_models(args.mwer_dir).items():
        m2, b2 = load_checkpoint(path)
        rec = b2.get("mwer_recipe", {})
        o = replace(base, lm_weight=rec.get("lm_weight", 0.0), ilm_weight=rec.get("ilm_weight", 0.0))
        mwer_lambdas[variant] = {"lm_weight": o.lm_weight, "ilm_weight": o.ilm_weight, "steps": b2.get("step")}
        s2 = BeamSearch(TransducerSearchView(m2), lm)
        for name, items in sets.items():
            data = encode_set(m2, items, cache)
            results[name][variant] = {"wer": wer(data.refs, decode_beam(s2, tok, data, o))}
            if name == TUNE_SET:
                sensitivity[variant] = lambda_spread(s2, tok, data, o)
        print(variant, {n: r.get(variant) for n, r in results.items()}, flush=True)
    details = {"model": args.model, "lm": args.lm, "lm_domain": args.lm_domain, "beam_size": args.beam,
               "sizes": {n: len(v) for n, v in sets.items()}, "sf": {"lm_weight": sf.lm_weight},
               "ilme": {"lm_weight": ilme.lm_weight, "ilm_weight": ilme.ilm_weight},
               "grid": {"sf": sf_rows, "ilme": ilme_rows}, "mwer": mwer_lambdas,
               "lambda_sensitivity": sensitivity}
    if args.lm2 and Path(args.lm2).exists():
        details["second_lm"] = second_lm_run(model, tok, blob, args.lm2, enc, base)
    details["hotwords"] = hotword_run(search, tok, blob, enc, base, ilme)
    details["rtf"] = rtf_run(model, tok, search, sets, cache, base, ilme, args.rtf_utts)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lm_fusion.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "lm_fusion_details.json").write_text(json.dumps(details, indent=2) + "\n")
    (args.out / "lm_fusion.md").write_text(table(results, details))
    print(table(results, details))


def second_lm_run(model: Transducer, tok: Tokenizer, blob: dict, path: str, enc: dict[str, Encoded],
                  base: DecodingOptions, set_name: str = "bible_test") -> dict:
    """SF and ILME with another external LM (λ's tuned on the same dev set)."""
    from dataclasses import replace

    search = BeamSearch(TransducerSearchView(model), load_external_lm(path, model.cfg.vocab_size, tokenizer=blob["tokenizer"]))
    dev = enc[TUNE_SET]

    def dev_decode(o: DecodingOptions) -> list[str]:
        return decode_beam(search, tok, dev, o)

    sf, _ = tune(dev_decode, dev.refs, [replace(base, lm_weight=l) for l in LM_GRID[1::2]])
    ilme, _ = tune(dev_decode, dev.refs, [replace(base, lm_weight=l, ilm_weight=i)
                                          for l in LM_GRID[1::2] for i in ILM_GRID[1:3] if i <= l])
    out = {"lm": path, "sf": {"lm_weight": sf.lm_weight}, "ilme": {"lm_weight": ilme.lm_weight, "ilm_weight": ilme.ilm_weight}}
    if set_name in enc:
        data = enc[set_name]
        out[set_name] = {m: wer(data.refs, decode_beam(search, tok, data, o)) for m, o in (("sf", sf), ("ilme", ilme))}
    print("second LM", out, flush=True)
    return out


def hotword_run(search: BeamSearch, tok: Tokenizer, blob: dict, enc: dict[str, Encoded],
                base: DecodingOptions, ilme: DecodingOptions, set_name: str = "bible_test") -> dict | None:
    """Recall of rare words with and without the biasing trie (bonus tuned on the dev part)."""
    from dataclasses import replace

    if set_name not in enc:
        return None
    manifests = blob.get("train_config", {}).get("train_manifests", [])
    train_texts = [it.text for it in read_items(manifests, 60.0)]
    dev, data = enc[TUNE_SET], enc[set_name]
    dev_words = set(rare_words(dev.refs, train_texts))
    best, best_wer = 1.0, float("inf")
    for score in (1.0, 2.0, 3.0):
        trie = HotwordTrie.from_words(sorted(dev_words), tok.encode, score)
        w = wer(dev.refs, decode_beam(search, tok, dev, replace(base, hotword_boost=score), trie))
        print(f"  hotword bonus {score}: dev WER {w}", flush=True)
        if w < best_wer:
            best, best_wer = score, w
    words = rare_words(data.refs, train_texts)
    trie = HotwordTrie.from_words(words, tok.encode, best)
    runs = {}
    for label, o, t in (("beam", base, None), ("beam + hotwords", replace(base, hotword_boost=best), trie),
                        ("beam + ILME", ilme, None), ("beam + ILME + hotwords", replace(ilme, hotword_boost=best), trie)):
        hyps = decode_beam(search, tok, data, o, t)
        runs[label] = hotword_recall(data.refs, hyps, set(words)) | {"wer": wer(data.refs, hyps)}
        print(" ", label, runs[label], flush=True)
    return {"set": set_name, "n_words": len(words), "score": best, "words": words, "runs": runs}


def rtf_run(model: Transducer, tok: Tokenizer, search: BeamSearch, sets: dict[str, list[Item]],
            cache: FeatureCache, base: DecodingOptions, ilme: DecodingOptions, n: int) -> dict:
    items = sets.get("bible_test", next(iter(sets.values())))[:n]
    for it in items:
        cache.get(it)  # feature extraction is common to both; keep it out of the comparison
    opts = ilme if ilme.lm_weight else DecodingOptions(search="beam", beam_size=base.beam_size, lm_weight=0.3, ilm_weight=0.1)
    g = rtf(model, tok, items, cache, lambda d: decode_greedy(model, tok, d, batch=1))
    b = rtf(model, tok, items, cache, lambda d: decode_beam(search, tok, d, opts, batch=1))
    return {"greedy": round(g, 4), "beam_ilme": round(b, 4), "ratio": round(b / g, 2), "utts": len(items),
            "options": opts.to_dict()}


if __name__ == "__main__":
    main()
