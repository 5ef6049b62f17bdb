"""Speaker-embedding recipe: speechocean762 train speakers + TTS voices -> `models.speaker`.

    python -m training.speaker --recipe training/recipes/speaker.toml

Steps: (1) list real utterances and hold out whole speakers with the corpus package's own
`split_speakers` (so the held-out speakers here are the ones the meeting corpus keeps for
test); (2) synthesise a few dozen TTS pseudo-speakers (espeak-ng variants, flite voices),
some held out too; (3) log-mel features of each utterance clean and through simulated rooms
(pyroomacoustics RIRs + noise: the diariser hears far-field reverberant speech); (4) train
the TDNN with AAM-softmax on random 2 s crops for a wall-clock budget; (5) EER on held-out
speakers; (6) publish the checkpoint to the model store (`ModelStore.publish`: checksums, its
architecture, the next version; a published version is never overwritten).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import subprocess
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import fftconvolve, resample_poly

from compression.store import Manifest, ModelStore, StoreError
from diarisation.embedding import ARCHITECTURE
from models.speaker import AAMSoftmax, SpeakerConfig, SpeakerEncoder, save_speaker

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SpeakerRecipe:
    """Everything the run depends on; loaded from `training/recipes/speaker*.toml`."""

    work_dir: Path = Path("/work/data/speaker")  # feature and TTS cache (never in git)
    store: Path = REPO / "store"  # the model store the trained model is published to
    name: str = "speaker"  # its store name (diarisation.embedding loads the newest version of it)
    version: str = ""  # "" = the one after the newest (v2 -> v3); an existing version is refused
    n_dev: int = 10  # real speakers held out (corpus.readers.split_speakers)
    espeak_voices: tuple[str, ...] = ()  # "lang+variant" pseudo-speakers
    flite_voices: tuple[str, ...] = ("kal16", "awb", "rms", "slt")
    tts_heldout: int = 5  # last N TTS voices held out for EER
    tts_utts: int = 40  # utterances per TTS voice
    corpus_tts_utts: int = 0  # >0: also the corpus' TTS identity grid (corpus.tts), N utterances each
    n_rooms: int = 48  # RIRs drawn once, reused
    n_aug: int = 2  # reverberant copies per utterance besides the clean one
    crop_frames: int = 150  # 1.5 s training crops (the diariser embeds 1.5 s windows)
    batch: int = 48
    lr: float = 2e-3
    minutes: float = 25.0  # wall-clock training budget
    threads: int = 1
    margin: float = 0.2
    scale: float = 30.0
    seed: int = 0
    init: str = ""  # warm start: a speaker checkpoint whose encoder weights seed this run
    model: SpeakerConfig = field(default_factory=SpeakerConfig)

    @classmethod
    def load(cls, path: str | Path) -> "SpeakerRecipe":
        data = tomllib.loads(Path(path).read_text())
        model = SpeakerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("model", {}).items()})
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        for key in ("work_dir", "store", "store_dir"):
            if key in kw:
                p = Path(kw[key])
                kw[key] = p if p.is_absolute() else REPO / p
        if "store_dir" in kw:  # older recipes name the version folder: store/<name>/<version>
            d = kw.pop("store_dir")
            kw.setdefault("store", d.parent.parent)
            kw.setdefault("name", d.parent.name)
            if not d.exists():  # a version already published stays as it is: the next one is taken
                kw.setdefault("version", d.name)
        return cls(**kw, model=model)


# ---------------------------------------------------------------- data
def _trim(x: np.ndarray, thresh_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence (TTS pads both ends; DESIGN.md)."""
    frame = 160
    n = len(x) // frame
    if n == 0:
        return x
    e = 10 * np.log10(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    keep = np.flatnonzero(e > e.max() + thresh_db)
    return x[keep[0] * frame : (keep[-1] + 1) * frame] if len(keep) else x


def _synth(voice: str, text: str, out: Path) -> np.ndarray:
    """One TTS utterance at 16 kHz mono float32."""
    if voice.startswith("flite:"):
        subprocess.run(["flite", "-voice", voice[6:], "-t", text.lower(), "-o", str(out)], check=True)
    else:
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text.lower()], check=True)
    x, sr = sf.read(out, dtype="float32")
    if sr != 16000:
        x = resample_poly(x, 16000, sr).astype(np.float32)
    return _trim(x)


def tts_speakers(recipe: SpeakerRecipe, texts: list[str]) -> dict[str, list[np.ndarray]]:
    """{voice: [waveforms]} for every TTS pseudo-speaker, cached as FLAC under work_dir."""
    rng = random.Random(recipe.seed)
    voices = list(recipe.espeak_voices) + [f"flite:{v}" for v in recipe.flite_voices]
    out: dict[str, list[np.ndarray]] = {}
    for voice in voices:
        folder = recipe.work_dir / "tts" / voice.replace(":", "_").replace("+", "_")
        folder.mkdir(parents=True, exist_ok=True)
        waves = []
        for i in range(recipe.tts_utts):
            path = folder / f"{i:03d}.flac"
            if path.exists():
                waves.append(sf.read(path, dtype="float32")[0])
                continue
            x = _synth(voice, " ".join(rng.sample(texts, 2)), folder / "tmp.wav")
            sf.write(path, x, 16000)
            waves.append(x)
        out[f"tts:{voice}"] = waves
    return out


def corpus_tts_speakers(recipe: SpeakerRecipe, texts: list[str]) -> tuple[dict[str, list[np.ndarray]], set[str]]:
    """The meeting corpus' own pseudo-speakers (corpus.tts identity grid: base voice × rate ×
    pitch), so the embedding learns the identities meetings are made of; the grid's held-out
    identities (`is_held_out`) stay out of training and are scored for EER. Cached as npz."""
    from corpus import tts

    rng = random.Random(recipe.seed + 1)
    folder = recipe.work_dir / "corpus_tts"
    folder.mkdir(parents=True, exist_ok=True)
    out, heldout = {}, set()
    for voice in tts.identity_grid():
        path = folder / (voice.speaker.replace(":", "_") + f"-{recipe.corpus_tts_utts}.npz")
        if path.exists():
            z = np.load(path)
            waves = [z[k] for k in sorted(z.files)]
        else:
            items = [(voice, " ".join(rng.sample(texts, 2))) for _ in range(recipe.corpus_tts_utts)]
            waves = [w for w in tts.synthesize_many(items) if len(w) > 8000]
            np.savez(path, **{f"u{i:03d}": w for i, w in enumerate(waves)})
        out[voice.speaker] = waves
        if tts.is_held_out(voice):
            heldout.add(voice.speaker)
    return out, heldout


def room_irs(n: int, seed: int) -> list[np.ndarray]:
    """`n` single-channel RIRs from random shoebox rooms (RT60 0.15-0.7 s, 0.8-3 m away)."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    irs = []
    while len(irs) < n:
        dims = rng.uniform([3.5, 3.0, 2.5], [8.0, 7.0, 3.2])
        rt60 = rng.uniform(0.15, 0.7)
        try:
            absorption, order = pra.inverse_sabine(rt60, dims)
        except ValueError:
            continue
        room = pra.ShoeBox(dims, fs=16000, materials=pra.Material(absorption), max_order=min(order, 12))
        mic = dims / 2 + rng.uniform(-0.5, 0.5, 3) * [1, 1, 0]
        mic[2] = 0.8
        ang = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.8, 3.0)
        src = mic + [dist * np.cos(ang), dist * np.sin(ang), rng.uniform(0.3, 0.6)]
        if np.any(src[:2] < 0.2) or np.any(src[:2] > dims[:2] - 0.2):
            continue
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        ir = np.asarray(room.rir[0][0], dtype=np.float32)
        irs.append(ir / np.abs(ir).max())
    return irs


def _logmel(model: SpeakerEncoder, x: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return torch.log(model.mel(torch.from_numpy(x)) + 1e-6).to(torch.float16)


def _augment(x: np.ndarray, ir: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y = fftconvolve(x, ir)[: len(x)]
    y = y / (np.std(y) + 1e-8) * np.std(x)
    snr = rng.uniform(5, 30)
    y = y + rng.standard_normal(len(y)) * np.std(y) * 10 ** (-snr / 20)
    return y.astype(np.float32)


def build_features(recipe: SpeakerRecipe, model: SpeakerEncoder) -> dict:
    """{'train': [(feat, label)], 'eval': [(feat, speaker, aug)], 'classes': [...]} cached."""
    cache = recipe.work_dir / f"features-s{recipe.seed}-a{recipe.n_aug}-g{recipe.corpus_tts_utts}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    from corpus.readers import read_speechocean762, split_speakers

    utts = read_speechocean762()
    train_spk, dev_spk = split_speakers(utts, recipe.n_dev)
    by_spk: dict[str, list[np.ndarray]] = {}
    for u in utts:
        by_spk.setdefault(f"so762:{u.speaker}", []).append(sf.read(u.audio, dtype="float32")[0])
    tts = tts_speakers(recipe, sorted({u.text for u in utts}))
    tts_names = list(tts)
    heldout = {f"so762:{s}" for s in dev_spk} | set(tts_names[len(tts_names) - recipe.tts_heldout :])
    by_spk.update(tts)
    if recipe.corpus_tts_utts > 0:
        grid, grid_heldout = corpus_tts_speakers(recipe, sorted({u.text for u in utts}))
        by_spk.update(grid)
        heldout |= grid_heldout
    irs = room_irs(recipe.n_rooms, recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    classes = sorted(s for s in by_spk if s not in heldout)
    index = {s: i for i, s in enumerate(classes)}
    data: dict = {"train": [], "eval": [], "classes": classes, "heldout": sorted(heldout)}
    for spk, waves in by_spk.items():
        for x in waves:
            copies = [x] + [_augment(x, irs[rng.integers(len(irs))], rng) for _ in range(recipe.n_aug)]
            for k, y in enumerate(copies):
                if spk in heldout:
                    data["eval"].append((_logmel(model, y), spk, k))
                else:
                    data["train"].append((_logmel(model, y), index[spk]))
    torch.save(data, cache)
    return data


# ---------------------------------------------------------------- training
def _batch(items: list, crop: int, size: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    feats, labels = [], []
    for feat, label in rng.sample(items, size):
        t = feat.shape[-1]
        if t >= crop:
            s = rng.randrange(t - crop + 1)
            f = feat[:, s : s + crop]
        else:  # short utterance: repeat it to the crop length
            f = feat.repeat(1, crop // t + 1)[:, :crop]
        f = f.float()
        feats.append(f - f.mean(dim=-1, keepdim=True))
        labels.append(label)
    return torch.stack(feats), torch.tensor(labels)


def equal_error_rate(scores: np.ndarray, same: np.ndarray) -> float:
    """EER (%): the operating point where false accepts equal false rejects."""
    order = np.argsort(-scores)
    same = same[order].astype(bool)
    tp = np.cumsum(same) / max(same.sum(), 1)
    fp = np.cumsum(~same) / max((~same).sum(), 1)
    fnr = 1 - tp
    i = int(np.argmin(np.abs(fnr - fp)))
    return float(100 * (fnr[i] + fp[i]) / 2)


def evaluate(model: SpeakerEncoder, items: list, max_frames: int = 300) -> dict[str, float]:
    """EER over all pairs of held-out utterances (whole utterance, up to 3 s), cosine scores;
    split by real/TTS speakers and clean/reverberant copies."""
    model.eval()
    embs, spks, kinds = [], [], []
    with torch.no_grad():
        for feat, spk, aug in items:
            f = feat[:, :max_frames].float()
            embs.append(torch.nn.functional.normalize(model.forward_features((f - f.mean(-1, keepdim=True))[None]), dim=-1)[0])
            spks.append(spk)
            kinds.append(aug)
    e = torch.stack(embs).numpy()
    spks, kinds = np.array(spks), np.array(kinds)
    out = {}
    real = np.char.startswith(spks.astype(str), "so762:")
    grid = np.array([s.count(":") >= 4 for s in spks])  # corpus.tts identities: tts:engine:name:rate:pitch
    for name, mask in (("all", np.ones(len(spks), bool)), ("real", real), ("tts", ~real & ~grid),
                       ("real_reverb", real & (kinds > 0)), ("tts_grid", grid), ("tts_grid_reverb", grid & (kinds > 0))):
        idx = np.flatnonzero(mask)
        if len(idx) < 2:
            continue
        s = e[idx] @ e[idx].T
        iu = np.triu_indices(len(idx), 1)
        out[name] = equal_error_rate(s[iu], (spks[idx][:, None] == spks[idx][None, :])[iu])
    model.train()
    return out


def train(recipe: SpeakerRecipe) -> dict:
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    rng = random.Random(recipe.seed)
    if recipe.version and recipe.version in ModelStore(recipe.store).versions(recipe.name):  # before, not after, the run
        raise StoreError(f"{recipe.name}/{recipe.version} is already in {recipe.store}: a published version is "
                         "never overwritten (leave `version` empty for the next one)")
    model = SpeakerEncoder(recipe.model)
    if recipe.init:
        init = Path(recipe.init) if Path(recipe.init).is_absolute() else REPO / recipe.init
        model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True)["state"])
        log.info("warm start from %s", init)
    t0 = time.monotonic()
    data = build_features(recipe, model)
    log.info("features: %d train crops from %d classes, %d eval items (%.0fs)",
             len(data["train"]), len(data["classes"]), len(data["eval"]), time.monotonic() - t0)
    head = AAMSoftmax(recipe.model.embedding, len(data["classes"]), recipe.margin, recipe.scale)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=1e-4)
    budget = recipe.minutes * 60
    start, step, history = time.monotonic(), 0, []
    best_eer, best_state = 1e9, None
    while (elapsed := time.monotonic() - start) < budget:
        # Cosine decay on wall-clock time, so the schedule ends when the budget does.
        for g in opt.param_groups:
            g["lr"] = recipe.lr * 0.5 * (1 + np.cos(np.pi * elapsed / budget))
        # Margin warm-up: a full margin from step 0 stalls a randomly initialised model.
        head.margin = recipe.margin * min(1.0, step / 500)
        x, y = _batch(data["train"], recipe.crop_frames, recipe.batch, rng)
        loss = head(model.forward_features(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            log.info("step %d %.0fs loss %.3f lr %.2e", step, elapsed, loss.item(), opt.param_groups[0]["lr"])
        if step % 400 == 0:
            eer = evaluate(model, data["eval"])
            history.append({"step": step, "seconds": round(elapsed), "loss": loss.item(), "eer": eer})
            log.info("step %d EER %s", step, eer)
            if eer["all"] < best_eer:
                best_eer, best_state = eer["all"], {k: v.clone() for k, v in model.state_dict().items()}
    eer = evaluate(model, data["eval"])
    history.append({"step": step, "seconds": round(time.monotonic() - start), "eer": eer})
    if best_state is not None and best_eer < eer["all"]:
        model.load_state_dict(best_state)
        eer = evaluate(model, data["eval"])
    model.eval()
    result = {
        "eer_percent": eer, "steps": step, "train_classes": len(data["classes"]),
        "heldout_speakers": data["heldout"], "history": history,
        "recipe": json.loads(json.dumps(asdict(recipe), default=str)),
    }
    manifest = publish(recipe, model, result)
    log.info("done: %d steps, EER %s -> %s/%s", step, eer, manifest.name, manifest.version)
    return {"name": manifest.name, "version": manifest.version, **result}


def publish(recipe: SpeakerRecipe, model: SpeakerEncoder, result: dict) -> Manifest:
    """The trained model into the store as `recipe.name` (the next version unless the recipe
    names one): checksummed, with its architecture, so the server's `/v1/models` lists what it
    is and `diarisation.embedding` loads it verified. The run's record (EER, history, recipe)
    goes into the manifest's `extra`, the EER into `metrics`."""
    store = ModelStore(recipe.store)
    with tempfile.TemporaryDirectory(prefix="speaker-") as tmp:
        save_speaker(model, Path(tmp) / "model.pt", {"eer_percent": result.get("eer_percent")})
        return store.publish(Path(tmp), recipe.name, ARCHITECTURE, version=recipe.version or None,
                             parameters=sum(p.numel() for p in model.parameters()),
                             metrics={"eer_percent": result.get("eer_percent")},
                             description="speaker embedding (TDNN, AAM-softmax) for the online diariser",
                             extra={k: v for k, v in result.items() if k != "eer_percent"})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(REPO / "training" / "recipes" / "speaker.toml"))
    p.add_argument("--minutes", type=float, default=None, help="override the training budget")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    recipe = SpeakerRecipe.load(args.recipe)
    if args.minutes is not None:
        from dataclasses import replace

        recipe = replace(recipe, minutes=args.minutes)
    train(recipe)


if __name__ == "__main__":
    main()
