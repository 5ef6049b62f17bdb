"""LM fusion on simulated acoustics: a real transducer, trained here in minutes, on a noisy
character channel instead of speech.

    python -m bench.lm_fusion_sim --minutes 12

Why: the speech transducer of this session is too young for LM fusion to mean anything (its
transducer WER is ~100 %), yet the claims of the issue (ILME beats SF across domains; MWER with
the LM in the loop helps and makes λ matter less) are about search and training, not about
audio. Here every character of a sentence becomes a few 80-dim "feature" frames: a prototype
shared by a confusable group (vowels; b/p/d/t; m/n; ...) plus a character-specific part plus
Gaussian noise, so the acoustic evidence is ambiguous in the ways an LM can resolve. The
transducer (the project's `models.transducer.Transducer`, same tokenizer as the ASR model,
trained with ILMT) learns only from NON-bible text; the external LM is the bible LM; the test
sets read bible (cross-domain) and fortunes/meeting text (the transducer's own domain). Same
search, fusion, ILME and MWER code as the speech benchmark. Results are labelled `sim_*`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.lm_fusion import (ILM_GRID, LM_GRID, RESULTS, Encoded, decode_beam, decode_greedy, hotword_recall,
                             wer)
from decoding.beam_search import BeamSearch
from decoding.hotwords import HotwordTrie
from decoding.options import DecodingOptions
from decoding.scorers import load_external_lm
from decoding.tokenizer import Tokenizer
from decoding.transducer_view import TransducerSearchView
from models.encoder import EncoderConfig
from models.transducer import Transducer, TransducerConfig, load_checkpoint, save_checkpoint

CHARS = " ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
GROUPS = ("AEIOUY", "BPDT", "MN", "SZCX", "FV", "GKQ", "LR", "HW", "J", " ", "'")
OUT = Path("/work/data/exp/lmsim")
SOURCE_DOMAINS = ("fortunes", "wordnet", "meeting", "essential", "devil")


class Channel:
    """Text → noisy feature frames (T, 80); deterministic prototypes, random noise and lengths."""

    def __init__(self, noise: float = 1.0, frames: tuple[int, int] = (4, 7), seed: int = 0) -> None:
        g = np.random.default_rng(seed)
        centers = {grp: g.normal(size=80) for grp in GROUPS}
        self.proto = {c: centers[next(grp for grp in GROUPS if c in grp)] + 0.45 * g.normal(size=80) for c in CHARS}
        self.noise, self.frames = noise, frames

    def __call__(self, text: str, rng: np.random.Generator) -> torch.Tensor:
        rows = []
        for c in " " + text + " ":
            n = int(rng.integers(self.frames[0], self.frames[1] + 1))
            rows.append(self.proto[c][None] + self.noise * rng.normal(size=(n, 80)))
        return torch.from_numpy(np.concatenate(rows)).float()


def texts(split: str, domains: tuple[str, ...], max_words: int = 14) -> list[str]:
    from corpus.sentences import load_pool

    pool = load_pool()
    src = pool.train if split == "train" else pool.test
    return [t for d in domains for t in src[d] if len(t.split()) <= max_words]


def make_model(vocab: int) -> Transducer:
    enc = EncoderConfig(n_mels=80, d_model=96, n_layers=2, n_heads=2, ff_mult=2, conv_kernel=5,
                        subsample_channels=16, stack=1, chunk_frames=8, left_chunks=4, dropout=0.1)
    return Transducer(TransducerConfig(vocab_size=vocab, encoder=enc, embed_dim=64, pred_dim=128, joint_dim=128))


def collate(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    fl = torch.tensor([f.shape[0] for f in feats])
    x = torch.zeros(len(feats), int(fl.max()), 80)
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = f
    return x, fl


def train_base(tok: Tokenizer, ch: Channel, minutes: float, out: Path, batch: int = 16,
               resume: bool = False) -> Transducer:
    torch.manual_seed(0)
    rng, prng = np.random.default_rng(1), random.Random(1)
    train = texts("train", SOURCE_DOMAINS)
    model, step = make_model(tok.vocab_size), 0
    if resume and out.exists():
        model, blob = load_checkpoint(out)
        model.train()
        step = blob.get("step", 0)
        rng, prng = np.random.default_rng(step), random.Random(step)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    start = time.monotonic()
    while (time.monotonic() - start) / 60 < minutes:
        part = prng.sample(train, batch)
        x, fl = collate([ch(t, rng) for t in part])
        ys = [tok.encode(t) for t in part]
        tl = torch.tensor([len(y) for y in ys])
        y = torch.zeros(len(ys), int(tl.max()), dtype=torch.long)
        for i, s in enumerate(ys):
            y[i, : len(s)] = torch.tensor(s)
        for g in opt.param_groups:
            g["lr"] = 2e-3 * min(1.0, (step + 1) / 200)
        losses = model.forward_losses(x, fl, y, tl, normalised=True)
        loss = losses["rnnt"] + 0.3 * losses["ctc"] + 0.1 * losses["ilm"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} {(time.monotonic() - start) / 60:.1f} min", {k: round(v.item(), 3) for k, v in losses.items()}, flush=True)
    model.eval()
    save_checkpoint(out, model, {"tokenizer": tok.proto, "step": step, "train_config": {"domains": SOURCE_DOMAINS}})
    return model


@torch.no_grad()
def encode(model: Transducer, feats: list[torch.Tensor], refs: list[str]) -> Encoded:
    enc = []
    for i in range(0, len(feats), 16):
        x, fl = collate(feats[i:i + 16])
        e, el = model.encode(x, fl)
        enc += [e[j, : el[j]] for j in range(e.size(0))]
    return Encoded(enc, refs, 0.0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", default="/work/data/exp/lm/asr_spm.model")
    p.add_argument("--lm", default="/work/data/exp/lm/bible/lm.pt")
    p.add_argument("--minutes", type=float, default=12.0, help="base training time")
    p.add_argument("--mwer-steps", type=int, default=40)
    p.add_argument("--noise", type=float, default=1.0)
    p.add_argument("--n", type=int, default=100, help="utterances per test set")
    p.add_argument("--reuse", action="store_true", help="reuse OUT/base.pt if present")
    p.add_argument("--resume", action="store_true", help="train OUT/base.pt for --minutes more")
    p.add_argument("--rtf-only", action="store_true", help="only time greedy vs beam 4 + ILME on OUT/base.pt")
    p.add_argument("--sf-reward-only", action="store_true",
                   help="only tune SF + length reward on sim_bible_dev and score it on the test sets")
    p.add_argument("--lambda-only", action="store_true",
                   help="only the λ-sensitivity grid: MWER fine-tunes (re-run and kept in OUT) over λ_T × test sets")
    p.add_argument("--control-only", action="store_true",
                   help="only the control fine-tune (transducer loss alone, same steps) on OUT/base.pt")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.load(args.tokenizer)
    ch = Channel(args.noise)
    base_path = OUT / "base.pt"
    if args.rtf_only:
        return sim_rtf(load_checkpoint(base_path)[0], tok, ch, args.lm)
    if args.control_only:
        return control(args, tok, ch, base_path)
    if args.lambda_only:
        return lambda_grid(args, tok, ch, base_path)
    if args.sf_reward_only:
        return sf_length_reward(args, tok, ch, base_path)
    if args.reuse and base_path.exists():
        model = load_checkpoint(base_path)[0]
    else:
        model = train_base(tok, ch, args.minutes, base_path, resume=args.resume)
    lm = load_external_lm(args.lm, model.cfg.vocab_size, tokenizer=tok.proto)
    raw, feats = test_sets(ch, args.n)
    data = {k: encode(model, feats[k], raw[k]) for k in raw}
    search = BeamSearch(TransducerSearchView(model), lm)
    base = DecodingOptions(search="beam", beam_size=4)
    dev = data["sim_bible_dev"]

    def tune(grid: list[DecodingOptions]) -> tuple[DecodingOptions, list]:
        rows = [(o, wer(dev.refs, decode_beam(search, tok, dev, o))) for o in grid]
        for o, w in rows:
            print(f"  tune λ_T={o.lm_weight} λ_I={o.ilm_weight}: {w}", flush=True)
        return min(rows, key=lambda r: r[1])[0], [{"lm_weight": o.lm_weight, "ilm_weight": o.ilm_weight, "wer": w} for o, w in rows]

    sf, sf_rows = tune([replace(base, lm_weight=l) for l in LM_GRID])
    ilme, ilme_rows = tune([replace(base, lm_weight=l, ilm_weight=i) for l in LM_GRID for i in ILM_GRID if i <= l])
    results = {}
    for name in ("sim_bible_test", "sim_source_test"):
        d = data[name]
        results[name] = {"greedy": {"wer": wer(d.refs, decode_greedy(model, tok, d))}}
        for m, o in (("beam", base), ("sf", sf), ("ilme", ilme)):
            results[name][m] = {"wer": wer(d.refs, decode_beam(search, tok, d, o))}
        print(name, results[name], flush=True)
    details = {"noise": args.noise, "sf": sf_rows, "ilme": ilme_rows, "tuned": {"sf": sf.to_dict(), "ilme": ilme.to_dict()},
               "sizes": {k: len(v) for k, v in raw.items()}}
    details["mwer"], details["lambda_sensitivity"] = mwer_runs(args, tok, ch, base_path, feats, raw, lm, sf, ilme, results)
    details["hotwords"] = sim_hotwords(search, tok, data, base, ilme)
    (RESULTS / "lm_fusion_sim.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "lm_fusion_sim_details.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    print(json.dumps(results, indent=1))


def mwer_runs(args, tok, ch, base_path, feats, raw, lm, sf, ilme, results,
              variants: tuple[str, ...] = ("mwer", "mwer_sf", "mwer_ilme")) -> tuple[dict, dict]:
    """MWER variants from one base (same data order, steps, lr); `control` = the same updates
    with the transducer loss alone, to separate MWER's effect from simply training longer."""
    from training.mwer import MWERRecipe, MWERTrainer

    train = texts("train", SOURCE_DOMAINS)
    info, sens = {}, {}
    lambdas = {"mwer": replace(sf, lm_weight=0.0), "mwer_sf": sf, "mwer_ilme": ilme, "control": replace(sf, lm_weight=0.0)}
    for variant in variants:
        o = lambdas[variant]
        r = MWERRecipe(base=str(base_path), out=str(OUT / f"{variant}.pt"), lm=args.lm, lm_weight=o.lm_weight,
                       ilm_weight=o.ilm_weight, beam_size=4, batch_utts=8, lr=1e-4, rnnt_weight=0.5,
                       mwer_weight=0.0 if variant == "control" else 1.0)
        tr = MWERTrainer(r, need_items=False)
        rng, prng = np.random.default_rng(7), random.Random(7)
        t0, hist = time.monotonic(), []
        for step in range(args.mwer_steps):
            part = prng.sample(train, r.batch_utts)
            hist.append(tr.update([ch(t, rng) for t in part], part))
        tr.model.eval()
        save_checkpoint(OUT / f"{variant}.pt", tr.model, {"tokenizer": tok.proto, "mwer_recipe": vars(r) | {}})
        info[variant] = {"lm_weight": o.lm_weight, "ilm_weight": o.ilm_weight, "steps": args.mwer_steps,
                         "minutes": round((time.monotonic() - t0) / 60, 2),
                         "mwer_loss_first_last": [round(hist[0]["mwer"], 3), round(hist[-1]["mwer"], 3)]}
        s2 = BeamSearch(TransducerSearchView(tr.model), lm)
        if variant == "control":  # the continued base decoded as the base is: beam, SF, ILME
            for name in ("sim_bible_test", "sim_source_test"):
                d = encode(tr.model, feats[name], raw[name])
                info[variant][name] = {m: wer(d.refs, decode_beam(s2, tok, d, oo))
                                       for m, oo in (("beam", o), ("sf", sf), ("ilme", ilme))}
            print(variant, info[variant], flush=True)
            continue
        for name in ("sim_bible_test", "sim_source_test", "sim_bible_dev"):
            d = encode(tr.model, feats[name], raw[name])
            w = wer(d.refs, decode_beam(s2, tok, d, o))
            if name in results:
                results[name][variant] = {"wer": w}
            else:
                sens[variant] = spread(s2, tok, d, o)
        print(variant, info[variant], {n: r.get(variant) for n, r in results.items()}, flush=True)
    return info, sens


def spread(search, tok, d, o) -> dict:
    rows = {}
    for k in (0.5, 1.0, 1.5):
        o2 = replace(o, lm_weight=round((o.lm_weight or 0.2) * k, 3), ilm_weight=round(o.ilm_weight * k, 3))
        rows[f"x{k}"] = wer(d.refs, decode_beam(search, tok, d, o2))
    return {"wer": rows, "spread": round(max(rows.values()) - min(rows.values()), 2)}


def sim_hotwords(search, tok, data, base, ilme) -> dict:
    """Rare bible words (absent from the transducer's training text) boosted on sim_bible_test."""
    from collections import Counter

    seen = Counter(w for t in texts("train", SOURCE_DOMAINS) for w in t.split())
    d = data["sim_bible_test"]
    words = sorted({w for r in d.refs for w in r.split() if seen[w] <= 1 and len(w) > 3})
    trie = HotwordTrie.from_words(words, tok.encode, 1.5)
    runs = {}
    for label, o, t in (("beam", base, None), ("beam + hotwords", replace(base, hotword_boost=1.5), trie),
                        ("beam + ILME", ilme, None), ("beam + ILME + hotwords", replace(ilme, hotword_boost=1.5), trie)):
        hyps = decode_beam(search, tok, d, o, t)
        runs[label] = hotword_recall(d.refs, hyps, set(words)) | {"wer": wer(d.refs, hyps)}
        print(" ", label, runs[label], flush=True)
    return {"set": "sim_bible_test", "n_words": len(words), "score": 1.5, "runs": runs}


LAMBDA_T = (0.1, 0.2, 0.3, 0.4, 0.5)


def lambda_grid(args, tok: Tokenizer, ch: Channel, base_path: Path) -> None:
    """λ-sensitivity: each MWER fine-tune decoded over λ_T ∈ LAMBDA_T on both test sets.

    Fusion per model: MWER-SF with SF (λ_I = 0), MWER-ILME with ILME (λ_I = λ_T × its training
    ratio λ_I/λ_T), MWER (trained without an LM) with both; the base with both, for reference.
    Spread = max − min WER over the grid; std over the grid. The fine-tunes are re-run with the
    same seeds, steps and λ's as the main run (and their WER at the training λ checked against it).
    """
    import statistics

    r = rerun_setup(args, tok, ch, base_path)
    det_path, det, sf, ilme, base, lm, raw, feats = r.det_path, r.det, r.sf, r.ilme, r.model, r.lm, r.raw, r.feats
    sets = ("sim_bible_test", "sim_source_test")
    need = [v for v in ("mwer", "mwer_sf", "mwer_ilme") if not (OUT / f"{v}.pt").exists()]
    check = {k: {} for k in sets}  # WER at the training λ's: must match the main table's
    if need:
        mwer_runs(args, tok, ch, base_path, feats, raw, lm, sf, ilme, check, variants=tuple(need))
    ratio = ilme.ilm_weight / ilme.lm_weight
    models = {"base": base, **{v: load_checkpoint(OUT / f"{v}.pt")[0] for v in ("mwer", "mwer_sf", "mwer_ilme")}}
    plan = [("base", "sf"), ("base", "ilme"), ("mwer", "sf"), ("mwer", "ilme"), ("mwer_sf", "sf"), ("mwer_ilme", "ilme")]
    beam = DecodingOptions(search="beam", beam_size=4)
    grid: dict[str, dict] = {}
    for name, fusion in plan:
        m = models[name]
        search = BeamSearch(TransducerSearchView(m), lm)
        data = {k: encode(m, feats[k], raw[k]) for k in sets}
        key = f"{name}@{fusion}"
        grid[key] = {k: {} for k in sets}
        for lt in LAMBDA_T:
            o = replace(beam, lm_weight=lt, ilm_weight=round(lt * ratio, 3) if fusion == "ilme" else 0.0)
            for k in sets:
                grid[key][k][str(lt)] = wer(data[k].refs, decode_beam(search, tok, data[k], o))
        for k in sets:
            w = list(grid[key][k].values())
            grid[key][k] |= {"spread": round(max(w) - min(w), 2), "std": round(statistics.pstdev(w), 2)}
        avg = [statistics.mean(grid[key][k][str(lt)] for k in sets) for lt in LAMBDA_T]
        grid[key]["mean_of_sets"] = {"wer": [round(a, 2) for a in avg], "spread": round(max(avg) - min(avg), 2),
                                     "std": round(statistics.pstdev(avg), 2)}
        print(key, json.dumps(grid[key]), flush=True)
    out = {"setup": "simulated channel (bench/lm_fusion_sim.py): transducer trained on non-bible text, bible LSTM LM; "
                    f"beam 4; λ_T grid {list(LAMBDA_T)}, λ_I = {ratio:g}·λ_T for ILME; MWER fine-tunes re-run "
                    "(30 steps, same seeds and training λ's as the main table); WER % on 100 utterances per set",
           "lambda_t": list(LAMBDA_T), "ilm_ratio": ratio, "grid": grid, "rerun_at_training_lambda": check}
    det["lambda_grid"] = out
    det_path.write_text(json.dumps(det, indent=2, default=str) + "\n")
    main_path = RESULTS / "lm_fusion.json"
    res = json.loads(main_path.read_text())
    res["lambda_sensitivity"] = {"setup": out["setup"], "lambda_t": out["lambda_t"], "ilm_ratio": ratio} | {
        key: {k: {"spread": g[k]["spread"], "std": g[k]["std"]} for k in (*sets, "mean_of_sets")} for key, g in grid.items()}
    main_path.write_text(json.dumps(res, indent=2) + "\n")
    plot_lambda(out, RESULTS / "lm_fusion_lambda.png")


def plot_lambda(out: dict, path: Path) -> None:
    """WER against λ_T, one panel per test set, one line per model@fusion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [k for k in next(iter(out["grid"].values())) if k != "mean_of_sets"]
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), sharey=True)
    for ax, k in zip(axes, sets):
        for key, g in out["grid"].items():
            ax.plot(out["lambda_t"], [g[k][str(lt)] for lt in out["lambda_t"]], marker="o",
                    label=f"{key} (spread {g[k]['spread']:.1f})", linestyle="--" if key.startswith("base") else "-")
        ax.set_title(k), ax.set_xlabel("λ_T  (ILME: λ_I = %g·λ_T)" % out["ilm_ratio"]), ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("WER %")
    fig.suptitle("λ sensitivity on the simulated channel (beam 4)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def control(args, tok: Tokenizer, ch: Channel, base_path: Path) -> None:
    """Rebuild the same test features (same seeds) and run the control fine-tune only."""
    r = rerun_setup(args, tok, ch, base_path)
    info, _ = mwer_runs(args, tok, ch, base_path, r.feats, r.raw, r.lm, r.sf, r.ilme, {}, variants=("control",))
    r.det["mwer"]["control"] = info["control"]
    det, det_path = r.det, r.det_path
    det_path.write_text(json.dumps(det, indent=2, default=str) + "\n")


def sf_length_reward(args, tok: Tokenizer, ch: Channel, base_path: Path) -> None:
    """SF with a per-token length reward (the usual fix for SF's deletions), tuned on the dev set,
    so that ILME is compared with the best SF, not with a handicapped one."""
    r = rerun_setup(args, tok, ch, base_path)
    det_path, det, model, raw, feats = r.det_path, r.det, r.model, r.raw, r.feats
    search = BeamSearch(TransducerSearchView(model), r.lm)
    data = {k: encode(model, feats[k], raw[k]) for k in raw}
    base, dev = DecodingOptions(search="beam", beam_size=4), data["sim_bible_dev"]
    rows = []
    for lw in (0.1, 0.2, 0.3, 0.45):
        for r in (0.5, 1.0, 2.0):
            o = replace(base, lm_weight=lw, length_reward=r * lw)
            rows.append((wer(dev.refs, decode_beam(search, tok, dev, o)), lw, r * lw))
    w, lw, rew = min(rows)
    o = replace(base, lm_weight=lw, length_reward=rew)
    det["sf_length_reward"] = {"lm_weight": lw, "length_reward": rew, "dev": w, "grid": rows} | {
        k: wer(data[k].refs, decode_beam(search, tok, data[k], o)) for k in ("sim_bible_test", "sim_source_test")}
    det_path.write_text(json.dumps(det, indent=2, default=str) + "\n")
    print(det["sf_length_reward"])


@dataclass
class Rerun:
    """What every re-run of the main experiment starts from: its saved details and tuned λ's,
    the base model, the external LM and the same test features (same seeds)."""

    det_path: Path
    det: dict
    sf: DecodingOptions
    ilme: DecodingOptions
    model: Transducer
    lm: Any
    raw: dict
    feats: dict


def rerun_setup(args, tok: Tokenizer, ch: Channel, base_path: Path) -> Rerun:
    det_path = RESULTS / "lm_fusion_sim_details.json"
    det = json.loads(det_path.read_text())
    sf, ilme = (DecodingOptions.from_dict(det["tuned"][k]) for k in ("sf", "ilme"))
    model = load_checkpoint(base_path)[0]
    lm = load_external_lm(args.lm, model.cfg.vocab_size, tokenizer=tok.proto)
    raw, feats = test_sets(ch, args.n)
    return Rerun(det_path, det, sf, ilme, model, lm, raw, feats)


def test_sets(ch: Channel, n: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(123)
    bible = texts("test", ("bible",))
    random.Random(0).shuffle(bible)
    own = texts("test", ("fortunes", "meeting"))
    random.Random(0).shuffle(own)
    raw = {"sim_bible_dev": bible[: n // 2], "sim_bible_test": bible[n // 2: n // 2 + n], "sim_source_test": own[:n]}
    return raw, {k: [ch(t, rng) for t in v] for k, v in raw.items()}


def sim_rtf(model: Transducer, tok: Tokenizer, ch: Channel, lm_path: str, n: int = 30) -> None:
    """Search cost on a trained transducer: encoder + greedy vs encoder + beam 4 + ILME + LM, one
    utterance at a time, 1 thread (10 ms feature frames, so 100 frames = 1 s)."""
    det_path = RESULTS / "lm_fusion_sim_details.json"
    det = json.loads(det_path.read_text())
    o = DecodingOptions.from_dict(det["tuned"]["ilme"])
    search = BeamSearch(TransducerSearchView(model), load_external_lm(lm_path, model.cfg.vocab_size, tokenizer=tok.proto))
    rng = np.random.default_rng(5)
    feats = [ch(t, rng) for t in texts("test", ("bible",))[:n]]
    secs = sum(f.shape[0] for f in feats) / 100
    times = {}
    for label in ("greedy", "beam_ilme"):
        t0 = time.perf_counter()
        for f in feats:
            d = encode(model, [f], [""])
            decode_greedy(model, tok, d, 1) if label == "greedy" else decode_beam(search, tok, d, o, batch=1)
        times[label] = (time.perf_counter() - t0) / secs
    det["rtf"] = {k: round(v, 4) for k, v in times.items()} | {"ratio": round(times["beam_ilme"] / times["greedy"], 2),
                                                               "options": o.to_dict()}
    det_path.write_text(json.dumps(det, indent=2, default=str) + "\n")
    print(det["rtf"])


if __name__ == "__main__":
    main()
