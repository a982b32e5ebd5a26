"""Train the image side of MDR alone (:class:`~mdr.models.image_factors.ImageFactorModel`)
on an images-only prepared folder (:mod:`mdr.data.fashion`).

The config is data (``benchmarks/configs/fashion.yaml``): frozen dataclasses below,
built with :func:`mdr.config.from_dict`, the slot schema reusing
:class:`mdr.config.SlotConfig`. Dotted overrides work as for :class:`mdr.config.RunConfig`.

Protocol:

- a seeded ``train.valid_fraction`` of the items is held out (stream
  ``rng(seed, "image-split")``); the model trains on the others only, and only
  the held-out items' weak labels are hidden from it;
- each epoch shuffles the training items with ``rng(seed, "image-shuffle", epoch)``
  and seeds torch's sampling noise from ``rng(seed, "image-noise", epoch)``, so a
  resumed run repeats an uninterrupted one exactly on the CPU;
- validation (eval mode, posterior means): each loss term on the held-out items
  (ws on their weak labels) and, per labelled slot, the accuracy of its Eq. 12
  classifier against the held-out items' GROUND-TRUTH class (``factors.npz``; the
  labels the model never saw) beside the majority-class rate;
- model selection on the held-out loss (Eq. 11 + Eq. 13; ground truth is never used
  to select).

The run folder ``OUT``:

- ``config.yaml``   resolved config plus a ``provenance:`` block (mdr.provenance)
- ``metrics.jsonl`` one line per epoch: ``train/<term>``, ``valid/<term>``,
  ``valid/acc_<slot>``, ``valid/chance_<slot>``, wall times, images/s
- ``checkpoint.pt`` after every epoch, atomically (model, optimiser, state)
- ``best.pt``, ``final.pt`` weights at the best held-out loss and at the end
- ``result.json``   the summary :func:`train_images` returns; written last (a
  folder with it is a finished run)
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mdr.config import (
    VARIANT_SECTIONS,
    ConfigError,
    SlotConfig,
    apply_overrides,
    config_hash,
    dump_yaml,
    from_dict,
    load_yaml,
    to_dict,
)
from mdr.data.fashion import FashionImages
from mdr.evaluate import RunError, load_torch_file, resolve_device
from mdr.io import append_jsonl, truncate_jsonl_epochs, write_json, write_text, write_torch
from mdr.models.image_factors import LOSS_TERMS, ImageFactorModel
from mdr.models.image_vae import pixel_statistics
from mdr.provenance import device_name, manifest
from mdr.seeding import rng, seed_everything

CHECKPOINT_FORMAT = "mdr-image-checkpoint"
WEIGHTS_FORMAT = "mdr-image-weights"
FORMAT_VERSION = 1
RESUMABLE_CHANGES = ("train.epochs", "train.device", "train.num_threads")


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ImageDataConfig:
    """How the corpus is prepared (:func:`mdr.data.fashion.prepare_fashion`)."""

    image_size: int = 32
    min_count: int = 50
    label_fraction: float = 0.1
    limit: int | None = None


@dataclass(frozen=True)
class ImageModelConfig:
    """Slots of s (image kinds only), black-box width and the conv VAE's widths."""

    slots: tuple[SlotConfig, ...] = (
        SlotConfig("colour", "visual_dominant", 4, "colour"),
        SlotConfig("shape", "visual_only", 4, "article"),
    )
    blackbox_dim: int = 8
    channels: tuple[int, ...] = (16, 32, 32, 64)
    hidden: int = 256


@dataclass(frozen=True)
class ImageLossConfig:
    """loss = visual * (rec + beta * kl) + mu * ws (Eq. 11 + Eq. 13)."""

    beta: float = 1.0
    mu: float = 1.0
    visual: float = 1.0


@dataclass(frozen=True)
class ImageTrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = None
    valid_fraction: float = 0.1
    eval_batch_size: int = 1024
    device: str = "cpu"
    num_threads: int | None = None


@dataclass(frozen=True)
class ImageRunConfig:
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    model: ImageModelConfig = field(default_factory=ImageModelConfig)
    loss: ImageLossConfig = field(default_factory=ImageLossConfig)
    train: ImageTrainConfig = field(default_factory=ImageTrainConfig)
    seed: int = 0


def load_image_config(path: str | Path | None = None,
                      overrides: Mapping[str, Any] | None = None) -> ImageRunConfig:
    """An :class:`ImageRunConfig` from YAML plus dotted overrides (``description``,
    ``provenance`` and the named override sets ``ablations:``/``baselines:`` are not part of
    the run config; :func:`mdr.config.variant_overrides` reads the latter)."""
    data = load_yaml(path) if path is not None else {}
    for key in ("description", "provenance", *VARIANT_SECTIONS):
        data.pop(key, None)
    cfg = from_dict(ImageRunConfig, data, where=str(path) if path else "config")
    return apply_overrides(cfg, overrides or {})


# --------------------------------------------------------------------------- run folder


@dataclass(frozen=True)
class ImageRunFolder:
    root: Path

    def __getattr__(self, name: str) -> Path:
        files = {"config": "config.yaml", "metrics": "metrics.jsonl",
                 "checkpoint": "checkpoint.pt", "best": "best.pt", "final": "final.pt",
                 "result": "result.json"}
        if name in files:
            return self.root / files[name]
        raise AttributeError(name)

    def files(self) -> list[Path]:
        return [self.config, self.metrics, self.checkpoint, self.best, self.final, self.result]


@dataclass
class ImageTrainState:
    epoch: int = 0  # completed epochs
    step: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    elapsed_s: float = 0.0


def build_model(cfg: ImageRunConfig, ds: FashionImages,
                images: torch.Tensor | None = None) -> ImageFactorModel:
    """The model for ``cfg`` on ``ds`` (pixel statistics from all of ``ds``'s images;
    ``images``: those images as a uint8 tensor when the caller has them loaded)."""
    images = images if images is not None else _images_tensor(ds)
    n_classes = {name: len(classes) for name, classes in ds.label_names.items()}
    m, lo = cfg.model, cfg.loss
    return ImageFactorModel(
        m.slots, ds.image_size, n_classes, m.blackbox_dim, m.channels, m.hidden,
        pixel_stats=pixel_statistics(images),
        beta=lo.beta, mu=lo.mu, visual=lo.visual, seed=cfg.seed,
    )


def _images_tensor(ds: FashionImages) -> torch.Tensor:
    """All images as one uint8 tensor (n, S, S, 3), copied out of the memory map."""
    return torch.from_numpy(np.array(ds.images))


def split_items(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) item indices, each sorted."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"train.valid_fraction must lie in (0, 1), got {fraction}")
    n_valid = max(1, round(fraction * n))
    if n - n_valid < 1:
        raise ConfigError(f"{n} items are too few to hold out {n_valid}")
    perm = rng(seed, "image-split").permutation(n)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def _weights(model: ImageFactorModel, epoch: int, valid_loss: float) -> dict[str, Any]:
    return {"format": WEIGHTS_FORMAT, "version": FORMAT_VERSION, "epoch": epoch,
            "valid_loss": valid_loss,
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


# --------------------------------------------------------------------------- epochs


@dataclass
class _Data:
    """The arrays one run needs, as tensors."""

    images: torch.Tensor  # uint8 (n, S, S, 3)
    labels: dict[str, torch.Tensor]  # weak, (n,), -1 unlabelled
    truth: dict[str, torch.Tensor]  # ground truth of each weak label, (n,)
    train: np.ndarray
    valid: np.ndarray


def _load_data(ds: FashionImages, cfg: ImageRunConfig) -> _Data:
    images = _images_tensor(ds)
    labels = {k: torch.from_numpy(v) for k, v in ds.labels.items()}
    truth = {k: torch.from_numpy(ds.factors[k]) for k in labels if k in ds.factors}
    train, valid = split_items(ds.n_items, cfg.train.valid_fraction, cfg.seed)
    return _Data(images, labels, truth, train, valid)


def _train_epoch(model: ImageFactorModel, opt: torch.optim.Optimizer, data: _Data,
                 cfg: ImageRunConfig, epoch: int, device: torch.device,
                 state: ImageTrainState, progress: bool) -> dict[str, float]:
    """One pass over the shuffled training items; per-term means over the steps."""
    t = cfg.train
    order = rng(cfg.seed, "image-shuffle", epoch).permutation(data.train)
    torch.manual_seed(int(rng(cfg.seed, "image-noise", epoch).integers(2**62)))
    model.train()
    sums = dict.fromkeys(("loss", *LOSS_TERMS), 0.0)
    steps = range(0, len(order), t.batch_size)
    bar = tqdm(steps, desc=f"epoch {epoch}/{t.epochs}", disable=not progress, leave=False)
    for lo in bar:
        idx = torch.from_numpy(order[lo : lo + t.batch_size])
        labels = {k: v[idx].to(device) for k, v in data.labels.items()}
        out = model.calculate_loss(data.images[idx].to(device), labels)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        state.step += 1
        value = float(out["loss"].detach())
        if not math.isfinite(value):
            raise RunError(f"non-finite loss {value} at epoch {epoch}, step {state.step}; "
                           "lower train.lr or check the data")
        for k in sums:
            sums[k] += float(out[k].detach())
        bar.set_postfix(loss=f"{value:.3f}")
    return {k: v / max(len(steps), 1) for k, v in sums.items()}


@torch.no_grad()
def validate(model: ImageFactorModel, data: _Data, items: np.ndarray, batch_size: int,
             device: torch.device) -> dict[str, float]:
    """Held-out loss terms (posterior means) and each labelled slot's accuracy against the
    ground truth, beside the majority-class rate of the training items' weak labels."""
    model.eval()
    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    codes = []
    for lo in range(0, len(items), batch_size):
        idx = torch.from_numpy(items[lo : lo + batch_size])
        labels = {k: v[idx].to(device) for k, v in data.labels.items()}
        terms = model.loss_terms(data.images[idx].to(device), labels, sample=False)
        for k in LOSS_TERMS:
            sums[k] += float(terms[k]) * len(idx)
        codes.append(model.encode(data.images[idx]))
    out = {k: v / len(items) for k, v in sums.items()}
    out["loss"] = float(model.combine({k: torch.tensor(v) for k, v in out.items()}))
    pred = model.predict_labels(torch.cat(codes).to(device))
    for slot, label in model.slot_labels.items():
        if label not in data.truth:
            continue
        y = data.truth[label][torch.from_numpy(items)]
        out[f"acc_{slot}"] = float((pred[label].cpu() == y).float().mean())
        weak = data.labels[label][torch.from_numpy(data.train)]
        weak = weak[weak >= 0]
        majority = int(torch.bincount(weak).argmax()) if len(weak) else 0
        out[f"chance_{slot}"] = float((y == majority).float().mean())
    return out


def _run_epoch(model: ImageFactorModel, opt: torch.optim.Optimizer, data: _Data,
               cfg: ImageRunConfig, run: ImageRunFolder, device: torch.device,
               state: ImageTrainState, progress: bool) -> dict[str, Any]:
    """Train, validate, keep the best weights, log and checkpoint one epoch."""
    epoch = state.epoch + 1
    t0 = time.perf_counter()
    train = _train_epoch(model, opt, data, cfg, epoch, device, state, progress)
    t1 = time.perf_counter()
    valid = validate(model, data, data.valid, cfg.train.eval_batch_size, device)
    t2 = time.perf_counter()
    improved = state.best_epoch == 0 or valid["loss"] < state.best_loss
    if improved:
        state.best_loss, state.best_epoch = valid["loss"], epoch
        write_torch(run.best, _weights(model, epoch, valid["loss"]))
    state.epoch = epoch
    state.elapsed_s += t2 - t0
    line = {"epoch": epoch, "step": state.step,
            **{f"train/{k}": v for k, v in train.items()},
            **{f"valid/{k}": v for k, v in valid.items()},
            "best_epoch": state.best_epoch, "improved": improved,
            "train_s": t1 - t0, "valid_s": t2 - t1, "elapsed_s": state.elapsed_s,
            "images_per_s": len(data.train) / max(t1 - t0, 1e-9)}
    append_jsonl(run.metrics, line)
    write_torch(run.checkpoint, {
        "format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(), "state": dataclasses.asdict(state),
        "config": to_dict(cfg)})
    return line


# --------------------------------------------------------------------------- entry point


def _changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in sorted(set(old) | set(new))
                for c in _changes(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if old != new else []


def _read_checkpoint(run: ImageRunFolder, cfg: ImageRunConfig) -> dict[str, Any]:
    ckpt = load_torch_file(run.checkpoint, CHECKPOINT_FORMAT)
    changed = [k for k in _changes(ckpt["config"], to_dict(cfg)) if k not in RESUMABLE_CHANGES]
    if changed:
        raise RunError(f"{run.checkpoint}: written with a different config ({', '.join(changed)}"
                       " differ); resume with the same config or use a new folder")
    return ckpt


def _check_folder(run: ImageRunFolder, resume: bool) -> None:
    if resume and run.checkpoint.is_file():
        return
    started = [p.name for p in run.files() if p.exists()]
    if started:
        raise RunError(f"{run.root}: holds a {'finished' if run.result.exists() else 'started'}"
                       f" run ({', '.join(started)}); pass resume=True or choose a new folder")


def _open_data(data: str | Path, cfg: ImageRunConfig) -> FashionImages:
    ds = FashionImages.open(data)
    if ds.image_size != cfg.data.image_size:
        raise ConfigError(f"{data}: prepared at {ds.image_size}x{ds.image_size}, but the config "
                          f"says data.image_size {cfg.data.image_size}; prepare it again")
    return ds


def train_images(cfg: ImageRunConfig, data: str | Path, out: str | Path, resume: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Train :class:`ImageFactorModel` on the images-only folder ``data`` into ``out``.

    Returns the summary also written to ``OUT/result.json``. With ``resume`` an existing
    ``OUT/checkpoint.pt`` is continued up to ``cfg.train.epochs`` (a finished run just
    returns its result); a started or finished folder is never overwritten otherwise.
    """
    data = Path(data)
    ds = _open_data(data, cfg)
    run = ImageRunFolder(Path(out))
    _check_folder(run, resume)
    ckpt = _read_checkpoint(run, cfg) if resume and run.checkpoint.is_file() else None
    state = ImageTrainState(**ckpt["state"]) if ckpt else ImageTrainState()
    if ckpt and state.epoch >= cfg.train.epochs and run.result.is_file():
        return json.loads(run.result.read_text(encoding="utf-8"))
    run.result.unlink(missing_ok=True)

    seed_everything(cfg.seed)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device)
    d = _load_data(ds, cfg)
    model = build_model(cfg, ds, d.images).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr,
                           weight_decay=cfg.train.weight_decay)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        truncate_jsonl_epochs(run.metrics, state.epoch)
    else:
        for p in run.files():
            p.unlink(missing_ok=True)
    prov = manifest(seed=cfg.seed, config_hash=config_hash(cfg), dataset=ds.name,
                    data=str(data.resolve()), device=device_name(cfg.train.device),
                    resumed_from_epoch=state.epoch if ckpt else None)
    write_text(run.config, dump_yaml({**to_dict(cfg), "provenance": prov}))
    while state.epoch < cfg.train.epochs:
        line = _run_epoch(model, opt, d, cfg, run, device, state, progress)
        if progress:
            accs = "  ".join(f"{k[10:]} {v:.3f}" for k, v in line.items()
                             if k.startswith("valid/acc_"))
            tqdm.write(f"epoch {line['epoch']}: train loss {line['train/loss']:.4f}  valid loss "
                       f"{line['valid/loss']:.4f}  held-out accuracy {accs}  "
                       f"({line['images_per_s']:.0f} images/s)")
    return _finish(model, d, cfg, run, ds, state, device)


def _finish(model: ImageFactorModel, d: _Data, cfg: ImageRunConfig, run: ImageRunFolder,
            ds: FashionImages, state: ImageTrainState, device: torch.device) -> dict[str, Any]:
    """final.pt, then the best weights' held-out metrics into result.json (written last)."""
    write_torch(run.final, _weights(model, state.epoch, math.nan))
    best = load_torch_file(run.best, WEIGHTS_FORMAT)
    model.load_state_dict(best["model"])
    valid = validate(model, d, d.valid, cfg.train.eval_batch_size, device)
    result = {"dataset": ds.name, "n_items": ds.n_items, "n_train": len(d.train),
              "n_valid": len(d.valid), "image_size": ds.image_size, "seed": cfg.seed,
              "epochs_run": state.epoch, "step": state.step, "best_epoch": best["epoch"],
              "train_s": state.elapsed_s, **{f"valid/{k}": v for k, v in valid.items()}}
    write_json(run.result, result)
    return result


def load_image_model(run_dir: str | Path, data: str | Path | None = None, which: str = "best",
                     device: str = "cpu") -> tuple[ImageRunConfig, ImageFactorModel,
                                                    FashionImages]:
    """Reopen a run: its config, the model with ``best`` or ``final`` weights (eval mode),
    and its dataset (``data``, default: the path recorded in config.yaml)."""
    run = ImageRunFolder(Path(run_dir))
    raw = load_yaml(run.config)
    path = data if data is not None else raw.get("provenance", {}).get("data")
    if path is None:
        raise RunError(f"{run.config}: no provenance.data; pass data=")
    cfg = load_image_config(run.config)
    ds = _open_data(path, cfg)
    model = build_model(cfg, ds)
    weights = load_torch_file(run.best if which == "best" else run.final, WEIGHTS_FORMAT)
    model.load_state_dict(weights["model"])
    return cfg, model.to(resolve_device(device)).eval(), ds


__all__ = ["ImageDataConfig", "ImageLossConfig", "ImageModelConfig", "ImageRunConfig",
           "ImageRunFolder", "ImageTrainConfig", "build_model", "load_image_config",
           "load_image_model", "split_items", "train_images", "validate"]
