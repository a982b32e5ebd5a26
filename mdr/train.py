"""One trainer for every representation model (MDR and the baselines under the DIN head).

The model comes in through the registry (:mod:`mdr.registry`) and the small
:class:`~mdr.models.base.RecModel` interface only: ``calculate_loss`` for
training, ``encode_items`` + ``score`` for evaluation. The trainer never
imports a concrete model.

A run folder ``RUN`` (see :class:`mdr.evaluate.RunFolder`) holds:

- ``config.yaml``   the resolved config plus a ``provenance:`` block (seed, git
                    commit, package versions, dataset name and path, device)
- ``metrics.jsonl`` one line per epoch: ``epoch``, ``step``, ``train/<term>``
                    (mean of each loss term over the epoch's steps),
                    ``valid/<metric>`` (GAUC, AUC, NDCG@10, HR@10 on the sampled
                    validation lists), ``best``, wall times and samples/s
- ``checkpoint.pt`` after every epoch, atomically: model, optimiser, Python /
                    NumPy / torch RNG states, epoch, step, best validation GAUC
                    and its epoch, early-stopping counter
- ``best.pt``       model weights at the best validation GAUC (model selection
                    never looks at test)
- ``test.json``     test metrics of ``best.pt``: sampled lists and full ranking
- ``DONE``          written last; a folder with it is a finished run

Model selection: early stopping on validation GAUC after ``train.patience``
epochs without improvement (``patience <= 0`` disables it); ties keep the
earlier epoch; the test score is always that of ``best.pt``.

Resuming (``resume=True``) restores the checkpoint and continues; because the
training samples and the shuffle order are pure functions of (seed, epoch)
and every other random state is checkpointed, a run killed at any moment and
resumed ends with exactly the metrics of an uninterrupted run on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mdr.config import RunConfig, config_hash, dump_yaml, to_dict
from mdr.data.batches import BatchIterator, training_samples
from mdr.data.dataset import ProcessedDataset
from mdr.evaluate import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FORMAT,
    RunError,
    RunFolder,
    autocast,
    build,
    evaluate_model,
    item_features,
    load_model_state,
    load_torch_file,
    resolve_device,
)
from mdr.io import append_jsonl, truncate_jsonl_epochs, write_json, write_text, write_torch
from mdr.models.base import to_device
from mdr.provenance import device_name, manifest
from mdr.seeding import seed_everything

# Config keys that may change between a run and its resumption.
RESUMABLE_CHANGES = ("train.epochs", "train.device", "train.num_threads")

StepHook = Callable[[int, int], None]


@dataclass
class TrainState:
    """Progress that a checkpoint carries besides weights and RNG states."""

    epoch: int = 0  # completed epochs (epochs are numbered from 1)
    step: int = 0  # optimiser steps so far
    best_gauc: float = -math.inf
    best_epoch: int = 0  # 0: no epoch validated yet
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    stopped: bool = False  # early stopping triggered
    elapsed_s: float = 0.0  # wall time of the completed epochs

    def complete(self, epochs: int) -> bool:
        return self.stopped or self.epoch >= epochs


# --------------------------------------------------------------------------- RNG states


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as plain types and tensors (``weights_only``-safe)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    out: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(states: dict[str, Any]) -> None:
    version, mt, gauss = states["python"]
    random.setstate((version, tuple(mt), gauss))
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],  # noqa: NPY002
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --------------------------------------------------------------------------- run folder


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_checkpoint(run: RunFolder, cfg: RunConfig, model: nn.Module,
                    optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    write_torch(run.checkpoint, {
        "format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION,
        "model": _cpu_state(model), "optimizer": optimizer.state_dict(),
        "rng": rng_states(), "state": dataclasses.asdict(state), "config": to_dict(cfg),
    })


def save_best(run: RunFolder, model: nn.Module, epoch: int, gauc: float) -> None:
    write_torch(run.best, {"format": WEIGHTS_FORMAT, "version": FORMAT_VERSION,
                           "epoch": epoch, "valid_gauc": gauc, "model": _cpu_state(model)})


def _config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b, name = old.get(k), new.get(k), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_changes(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out


def read_checkpoint(run: RunFolder, cfg: RunConfig) -> dict[str, Any]:
    """Load ``checkpoint.pt`` and check that it belongs to ``cfg`` (up to RESUMABLE_CHANGES)."""
    ckpt = load_torch_file(run.checkpoint, CHECKPOINT_FORMAT)
    changed = [k for k in _config_changes(ckpt["config"], to_dict(cfg))
               if k not in RESUMABLE_CHANGES]
    if changed:
        raise RunError(f"{run.checkpoint}: written with a different config ({', '.join(changed)} "
                       "differ); resume with the same config or start a new run folder")
    return ckpt


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _check_folder(run: RunFolder, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a finished or started run unless asked; clear it when overwriting."""
    if overwrite:
        _remove(*run.files())
        return
    if resume and run.checkpoint.is_file():
        return
    if run.is_finished():
        raise RunError(f"{run.root}: holds a finished run (test.json, DONE); choose another "
                       "output folder, resume it to train more epochs, or overwrite it")
    started = [p.name for p in run.files() if p.exists()]
    if started and not resume:
        raise RunError(f"{run.root}: holds a started run ({', '.join(started)}); "
                       "pass resume to continue it or overwrite to start again")


def write_config(cfg: RunConfig, run: RunFolder, ds: ProcessedDataset, data: Path,
                 **extra: Any) -> None:
    """RUN/config.yaml: the resolved config at top level plus a ``provenance:`` block."""
    prov = manifest(seed=cfg.seed, model=cfg.model.name, config_hash=config_hash(cfg),
                    dataset=ds.name, data=str(data.resolve()),
                    device=device_name(cfg.train.device), **extra)
    write_text(run.config, dump_yaml({**to_dict(cfg), "provenance": prov}))


# --------------------------------------------------------------------------- epochs


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, ds: ProcessedDataset,
                 cfg: RunConfig, epoch: int, device: torch.device, state: TrainState,
                 progress: bool, on_step: StepHook | None) -> tuple[dict[str, float], int]:
    """One pass over the epoch's samples; returns per-term loss means and the sample count."""
    t = cfg.train
    samples = training_samples(ds, epoch, cfg.seed, t.n_train_neg, t.max_hist)
    batches = BatchIterator(samples, t.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch,
                            pin_memory=device.type == "cuda", max_batches=t.max_steps_per_epoch)
    model.train()
    sums: dict[str, Tensor] = {}
    n_samples = 0
    bar = tqdm(batches, desc=f"epoch {epoch}/{t.epochs}", disable=not progress, leave=False)
    for i, batch in enumerate(bar):
        b = to_device(batch, device)
        with autocast(device, t.amp):
            out = model.calculate_loss(b)
        loss = out["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        state.step += 1
        n_samples += len(batch["label"])
        for k, v in out.items():
            v = v.detach().float()
            sums[k] = sums[k] + v if k in sums else v
        if i % 20 == 0:
            value = float(loss.detach())
            if not math.isfinite(value):
                raise RunError(f"non-finite loss {value} at epoch {epoch}, step {state.step}; "
                               "lower train.lr or check the data")
            bar.set_postfix(loss=f"{value:.4f}")
        if on_step is not None:
            on_step(epoch, state.step)
    means = {k: float(v) / max(len(batches), 1) for k, v in sums.items()}
    return means, n_samples


def _run_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, ds: ProcessedDataset,
               cfg: RunConfig, run: RunFolder, device: torch.device, state: TrainState,
               progress: bool, on_step: StepHook | None) -> dict[str, Any]:
    """Train, validate, update early stopping, log and checkpoint one epoch."""
    t = cfg.train
    epoch = state.epoch + 1
    t0 = time.perf_counter()
    losses, n_samples = _train_epoch(model, optimizer, ds, cfg, epoch, device, state,
                                     progress, on_step)
    t1 = time.perf_counter()
    valid = evaluate_model(model, ds, "valid", t.max_hist, t.eval_batch_size, device,
                           amp=t.amp, progress=progress)
    t2 = time.perf_counter()
    gauc = valid["gauc"]
    improved = state.best_epoch == 0 or gauc > state.best_gauc  # NaN never improves
    if improved:
        state.best_gauc, state.best_epoch, state.bad_epochs = gauc, epoch, 0
        save_best(run, model, epoch, gauc)
    else:
        state.bad_epochs += 1
    state.epoch = epoch
    state.stopped = t.patience > 0 and state.bad_epochs >= t.patience
    state.elapsed_s += t2 - t0
    line = {
        "epoch": epoch, "step": state.step,
        **{f"train/{k}": v for k, v in losses.items()},
        **{f"valid/{k}": v for k, v in valid.items()},
        "best_epoch": state.best_epoch, "improved": improved, "stopped": state.stopped,
        "train_samples": n_samples, "train_s": t1 - t0, "valid_s": t2 - t1,
        "epoch_s": t2 - t0, "elapsed_s": state.elapsed_s,
        "samples_per_s": n_samples / max(t1 - t0, 1e-9),
    }
    append_jsonl(run.metrics, line)
    save_checkpoint(run, cfg, model, optimizer, state)
    return line


def _finish(model: nn.Module, ds: ProcessedDataset, cfg: RunConfig, run: RunFolder,
            device: torch.device, state: TrainState, progress: bool) -> dict[str, Any]:
    """Score ``best.pt`` on the test lists and by full ranking; write test.json, then DONE."""
    best = run.load_best(model)
    model.to(device)
    t = cfg.train
    test = evaluate_model(model, ds, "test", t.max_hist, t.eval_batch_size, device,
                          full_ranking=t.full_ranking, amp=t.amp, progress=progress,
                          full_rank_users=t.full_rank_users)
    result = {
        "dataset": ds.name, "n_users": ds.n_users, "model": cfg.model.name, "seed": cfg.seed,
        "best_epoch": best["epoch"], "best_valid_gauc": best["valid_gauc"],
        "epochs_run": state.epoch, "stopped_early": state.stopped, "step": state.step,
        **test,
    }
    write_json(run.test, result)
    write_text(run.done, json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                              time.gmtime())}) + "\n")
    return result


# --------------------------------------------------------------------------- entry point


def train(cfg: RunConfig, data: str | Path, out: str | Path, resume: bool = False,
          progress: bool = True, overwrite: bool = False,
          on_step: StepHook | None = None) -> dict[str, Any]:
    """Train ``cfg.model.name`` on the prepared dataset ``data`` into the run folder ``out``.

    Returns the final test metrics (the content of ``RUN/test.json``). With
    ``resume`` an existing ``RUN/checkpoint.pt`` is continued (up to
    ``cfg.train.epochs``; a finished run just returns its result). A finished or
    started run is never overwritten unless ``overwrite``. ``on_step(epoch, step)``
    is called after every optimiser step (a hook for tests and monitoring).
    """
    data = Path(data)
    ds = ProcessedDataset.open(data)
    run = RunFolder(Path(out))
    _check_folder(run, resume, overwrite)
    ckpt = read_checkpoint(run, cfg) if resume and run.checkpoint.is_file() else None
    state = TrainState(**ckpt["state"]) if ckpt else TrainState()
    if ckpt and state.complete(cfg.train.epochs) and run.is_finished():
        return json.loads(run.test.read_text(encoding="utf-8"))
    _remove(run.done, run.test)

    seed_everything(cfg.seed)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device)
    model = build(cfg, ds, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr,
                                 weight_decay=cfg.train.weight_decay)
    if ckpt:
        load_model_state(model, ckpt["model"], run.checkpoint)
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_states(ckpt["rng"])
        truncate_jsonl_epochs(run.metrics, state.epoch)
    else:
        _remove(run.metrics, run.best, run.checkpoint)
    write_config(cfg, run, ds, data, resumed_from_epoch=state.epoch if ckpt else None)

    while not state.complete(cfg.train.epochs):
        line = _run_epoch(model, optimizer, ds, cfg, run, device, state, progress, on_step)
        if progress:
            tqdm.write(f"epoch {line['epoch']}: loss {line.get('train/loss', float('nan')):.4f}"
                       f"  valid gauc {line['valid/gauc']:.4f}  ndcg@10 "
                       f"{line['valid/ndcg@10']:.4f}  ({line['samples_per_s']:.0f} samples/s)")
    return _finish(model, ds, cfg, run, device, state, progress)


__all__ = ["RESUMABLE_CHANGES", "RunError", "TrainState", "item_features", "read_checkpoint",
           "rng_states", "save_checkpoint", "set_rng_states", "train"]
