"""Speed suite: data, training, encoding, evaluation and efficiency, in one run.

    python -m benchmarks.speed [--quick] [--device cpu|cuda] [--out results/speed]
                               [--dataset synthetic-small] [--threads N] [--skip-data]
                               [--compare BEFORE.json] [--note TEXT]
    python -m benchmarks.speed --render RESULT.json [--compare BEFORE.json]   (no measuring)

Measures, on the machine it runs on:

- data: ``mdr data synth`` + ``mdr data prepare`` of the ``cloth`` shop (``--quick``:
  the tiny shop), wall time and peak RSS, each step in its own process
  (:func:`speed_data.measure_step`); plus the in-process loader (one epoch of
  :func:`~mdr.data.batches.training_samples` and its collation), samples/s;
- training: samples/s of full steps (forward, backward, clipping, Adam) of MDR,
  of the project's DIN on id embeddings (variant ``din`` of
  ``benchmarks/configs/mdr_synthetic.yaml``) and of deepctr-torch's DIN with the
  same sizes (:mod:`din_deepctr`), on the same batches, timed round-robin (one
  step of each in turn, so machine load hits all alike), median step time;
- encoding: MDR with unique-item encoding against naive per-position encoding,
  on the same batches;
- evaluation: item representations of all items (cached once), users/s scoring
  the stored 1+n_neg lists and ranking all items;
- efficiency: MDR's FLOPs per training sample (``FlopCounterMode``, forward +
  backward) times its samples/s, against the dense matmul and conv2d rates torch
  reaches on the same device in the same run.

On CUDA every timer synchronises first and MDR/DIN steps run under bf16 autocast
(``--no-amp`` to disable), as the trainer does with ``train.amp``. Batches are
moved to the device before timing (the loader is measured on its own).

Writes ``<out>/<device-slug>.json`` and ``.md`` (``--quick``: ``<device-slug>-quick``),
atomically (device via
:func:`mdr.provenance.device_name`, versions, date, git commit). ``--compare``
adds a before/after column from an earlier JSON of this script. The default suite
takes about 4-6 minutes on 2 CPU cores; ``--quick`` under a minute.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import CONFIGS, RESULTS, run_script
from mdr import io as mio
from mdr.argtypes import Parser
from mdr.config import RunConfig, apply_overrides, load_run_config, variant_overrides
from mdr.data.batches import BatchIterator, eval_samples, training_samples, user_seen
from mdr.data.catalog import resolve
from mdr.data.dataset import ProcessedDataset
from mdr.models.base import ItemFeatures, to_device
from mdr.provenance import device_name, manifest
from mdr.seeding import seed_everything
from mdr.training.evaluate import (
    autocast,
    full_ranking_ranks,
    item_representations,
    sampled_scores,
)
from mdr.training.registry import build_model
from mdr.training.step import make_optimizer, train_step
from mdr.training.tasks import item_features

CONFIG = CONFIGS / "mdr_synthetic.yaml"
StepFn = Callable[[int], None]


@dataclass(frozen=True)
class Plan:
    """Sizes of one suite run (the default, or ``--quick``)."""

    data_size: str  # shop for the data step
    data_image_size: int
    train_steps: int  # timed steps per training contender (after one warm-up)
    naive_steps: int  # timed naive-encoding steps (each costs ~15 s on 2 CPU cores)
    full_users: int | None  # users ranked over all items (None: all)
    matmul_n: int
    conv_batch: int
    flop_batches: int  # batches whose FLOPs are counted


DEFAULT = Plan("cloth", 64, 8, 2, None, 2048, 64, 2)
QUICK = Plan("tiny", 32, 3, 1, None, 512, 16, 1)


# --------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work (a no-op on the CPU), so that timers see finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin(
    steps: Mapping[str, StepFn], n: int, device: torch.device, warmup: int = 1
) -> dict[str, list[float]]:
    """Call every step function on batches ``0 .. warmup + n - 1``, one of each in turn;
    returns each contender's step seconds of the ``n`` timed batches."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(warmup + n):
        for name, fn in steps.items():
            sync(device)
            t0 = time.perf_counter()
            fn(i)
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def rate(samples: list[int], seconds: list[float]) -> dict[str, float]:
    """samples/s from per-step sample counts and times (median step, and overall)."""
    per_step = [s / t for s, t in zip(samples, seconds, strict=True)]
    return {
        "samples_per_s": round(statistics.median(per_step), 1),
        "samples_per_s_mean": round(sum(samples) / sum(seconds), 1),
        "step_s_median": round(statistics.median(seconds), 4),
        "step_s_min": round(min(seconds), 4),
        "steps": len(seconds),
    }


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of ``fn()`` (matmuls and convolutions, forward and backward, as torch counts
    them: 2 per multiply-add) and the FLOPs per outermost module called in it (by class
    name; a model whose methods call its submodules directly reports those)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    by_module: dict[str, int] = {}
    for name, ops in counter.get_flop_counts().items():
        if name != "Global" and "." not in name:  # outermost modules called, e.g. "DINHead"
            by_module[name] = int(sum(ops.values()))
    return int(counter.get_total_flops()), by_module


def best_rate(fn: Callable[[], Any], flops: int, device: torch.device, reps: int) -> float:
    """GFLOP/s of ``fn`` (``flops`` per call) from the median of ``reps`` timed calls."""
    fn()  # warm-up
    seconds = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return flops / statistics.median(seconds) / 1e9


# --------------------------------------------------------------------------- data


def data_section(plan: Plan, work: Path) -> tuple[dict[str, Any], Path]:
    """Synth + prepare the plan's shop in child processes; returns figures and the folder."""
    from benchmarks.performance.speed_data import measure_step

    mdr = [sys.executable, "-P", "-m", "mdr.cli"]  # -P: the installed mdr, not ./mdr
    raw, proc = work / "raw", work / "proc"
    synth = measure_step(
        [*mdr, "data", "synth", "-q", "--size", plan.data_size, "--seed", "0", "--out", str(raw)]
    )
    prep = measure_step(
        [
            *mdr,
            "data",
            "prepare",
            "-q",
            "--raw",
            str(raw),
            "--category",
            "Synthetic",
            "--out",
            str(proc),
            "--image-size",
            str(plan.data_image_size),
            "--n-neg",
            "50" if plan.data_size == "tiny" else "100",
        ]
    )
    stats = ProcessedDataset.open(proc).stats()
    return {
        "size": plan.data_size,
        "image_size": plan.data_image_size,
        "synth": synth,
        "prepare": prep,
        "dataset": {k: stats[k] for k in ("users", "items", "behaviors")},
        "targets": {"prepare_wall_s": 180, "prepare_peak_rss_mb": 4096},
    }, proc


def loader_section(ds: ProcessedDataset, cfg: RunConfig) -> dict[str, Any]:
    """One epoch of training samples and their collation into batches, samples/s."""
    t = cfg.train
    t0 = time.perf_counter()
    samples = training_samples(ds, 1, cfg.seed, t.n_train_neg, t.max_hist)
    t1 = time.perf_counter()
    n = 0
    for batch in BatchIterator(samples, t.batch_size, shuffle=True, seed=cfg.seed, epoch=1):
        n += len(batch["label"])
    t2 = time.perf_counter()
    return {
        "samples": n,
        "build_s": round(t1 - t0, 4),
        "collate_s": round(t2 - t1, 4),
        "samples_per_s": round(n / max(t2 - t0, 1e-9), 1),
    }


# --------------------------------------------------------------------------- training


def fixed_batches(
    ds: ProcessedDataset, cfg: RunConfig, n: int, device: torch.device
) -> list[dict[str, Tensor]]:
    """``n`` training batches of epoch 1 (as the trainer draws them), already on ``device``."""
    t = cfg.train
    samples = training_samples(ds, 1, cfg.seed, t.n_train_neg, t.max_hist)
    it = BatchIterator(
        samples,
        t.batch_size,
        shuffle=True,
        seed=cfg.seed,
        epoch=1,
        drop_last=len(samples["label"]) >= t.batch_size * n,
        max_batches=n,
    )
    batches = [to_device(b, device) for b in it]
    while len(batches) < n:  # tiny shops: fewer full batches than asked, so cycle them
        batches.append(batches[len(batches) % len(it)])
    return batches


def rec_step(
    cfg: RunConfig,
    feats: ItemFeatures,
    batches: list[dict[str, Tensor]],
    device: torch.device,
    amp: bool,
) -> tuple[nn.Module, StepFn]:
    """A registered model and the trainer's step (:func:`mdr.training.step.train_step`)
    on ``batches[i]``."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model.name, cfg, feats).to(device)
    t = replace(cfg.train, amp=amp)
    opt = make_optimizer(model.parameters(), t)
    params = list(model.parameters())
    model.train()

    def step(i: int) -> None:
        train_step(lambda: model.calculate_loss(batches[i]), params, opt, device, t)

    return model, step


def deepctr_step(
    cfg: RunConfig,
    ds: ProcessedDataset,
    batches: list[dict[str, Tensor]],
    device: torch.device,
    amp: bool,
) -> StepFn:
    """The trainer's step on deepctr-torch's DIN at the ``din`` variant's sizes (inputs
    built up front, as deepctr's own ``fit`` and :mod:`baselines.deepctr_models` do)."""
    from benchmarks.performance.din_deepctr import (
        build_deepctr_din,
        deepctr_din_input,
        deepctr_din_loss,
    )

    m = cfg.model
    net = build_deepctr_din(
        ds.n_users,
        ds.n_items,
        ds.n_categories,
        m.id_dim,
        m.att_hidden,
        m.mlp_hidden,
        cfg.train.max_hist,
        device,
        cfg.seed,
    )
    t = replace(cfg.train, amp=amp)
    opt = make_optimizer(net.parameters(), t)
    params = list(net.parameters())
    category = torch.from_numpy(ds.item_category.astype("int64"))
    xs = [deepctr_din_input(net, b, category) for b in batches]
    net.train()

    def step(i: int) -> None:
        train_step(
            lambda: {"loss": deepctr_din_loss(net, xs[i], batches[i]["label"])},
            params,
            opt,
            device,
            t,
        )

    return step


def training_section(
    cfg: RunConfig,
    ds: ProcessedDataset,
    feats: ItemFeatures,
    device: torch.device,
    amp: bool,
    plan: Plan,
    batches: list[dict[str, Tensor]],
) -> tuple[dict[str, Any], nn.Module]:
    """samples/s of MDR (with its image cache, and encoding every item every step), the
    project's DIN and deepctr-torch's DIN, round-robin."""
    din_cfg = apply_overrides(cfg, variant_overrides(CONFIG, "din"))
    every_cfg = apply_overrides(cfg, {"model.image_grad_items": None})
    mdr_model, mdr = rec_step(cfg, feats, batches, device, amp)
    _, every = rec_step(every_cfg, feats, batches, device, amp)
    _, din = rec_step(din_cfg, feats, batches, device, amp)
    ctr = deepctr_step(din_cfg, ds, batches, device, amp)
    times = round_robin(
        {"mdr": mdr, "mdr_every_item": every, "din": din, "deepctr_din": ctr},
        plan.train_steps,
        device,
    )
    sizes = [len(b["label"]) for b in batches[1 : 1 + plan.train_steps]]
    out: dict[str, Any] = {k: rate(sizes, v) for k, v in times.items()}
    out["image_grad_items"] = cfg.model.image_grad_items
    out["cache_over_every_item"] = round(
        out["mdr"]["samples_per_s"] / out["mdr_every_item"]["samples_per_s"], 2
    )
    out["din_over_deepctr"] = round(
        out["din"]["samples_per_s"] / out["deepctr_din"]["samples_per_s"], 3
    )
    out["sizes"] = {
        "batch_size": cfg.train.batch_size,
        "max_hist": cfg.train.max_hist,
        "id_dim": din_cfg.model.id_dim,
        "att_hidden": list(din_cfg.model.att_hidden),
        "mlp_hidden": list(din_cfg.model.mlp_hidden),
    }
    b = batches[1]
    items = torch.cat([b["hist"][b["hist_mask"]], b["cand"]])
    out["positions_per_batch"] = int(items.numel())
    out["unique_items_per_batch"] = int(torch.unique(items).numel())
    out["every_item_times"] = times["mdr_every_item"]  # the naive run's like-for-like
    return out, mdr_model


def encoding_section(
    cfg: RunConfig,
    feats: ItemFeatures,
    device: torch.device,
    amp: bool,
    plan: Plan,
    batches: list[dict[str, Tensor]],
    unique_times: list[float],
) -> dict[str, Any]:
    """MDR with naive per-position encoding on the first timed batches of the training
    section, against unique-item encoding (without the image cache) on the same batches."""
    naive_cfg = apply_overrides(
        cfg, {"model.unique_item_encoding": False, "model.image_grad_items": None}
    )  # no cache to read
    warm = {k: v[:128] for k, v in batches[0].items()}  # a small warm-up: naive is slow
    _, step = rec_step(naive_cfg, feats, [warm, *batches[1:]], device, amp)
    n = min(plan.naive_steps, len(unique_times))
    naive_times = round_robin({"naive": step}, n, device)["naive"]
    sizes = [len(b["label"]) for b in batches[1 : 1 + n]]
    unique = rate(sizes, unique_times[:n])
    naive = rate(sizes, naive_times)
    return {
        "unique": unique,
        "naive": naive,
        "unique_over_naive": round(unique["samples_per_s"] / naive["samples_per_s"], 2),
    }


# --------------------------------------------------------------------------- evaluation


def evaluation_section(
    model: nn.Module,
    ds: ProcessedDataset,
    cfg: RunConfig,
    device: torch.device,
    amp: bool,
    plan: Plan,
) -> dict[str, Any]:
    """Item representations once, then sampled lists (all users) and full ranking."""
    t = cfg.train
    samples = eval_samples(ds, "test", t.max_hist)
    seen = user_seen(ds, "test")
    sync(device)
    t0 = time.perf_counter()
    reps = item_representations(model, ds.n_items, t.eval_batch_size, device, amp)
    sync(device)
    t_reps = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampled_scores(model, reps, samples, t.eval_batch_size, device, amp)
    sync(device)
    t_lists = time.perf_counter() - t0
    n_full = ds.n_users if plan.full_users is None else min(plan.full_users, ds.n_users)
    part = {k: v[:n_full] for k, v in samples.items()}
    t0 = time.perf_counter()
    full_ranking_ranks(model, reps, part, seen[:n_full], t.eval_batch_size, device, amp)
    sync(device)
    t_full = time.perf_counter() - t0
    c = int(samples["cands"].shape[1])
    return {
        "items": ds.n_items,
        "users": ds.n_users,
        "list_length": c,
        "item_reps_s": round(t_reps, 3),
        "item_reps_per_s": round(ds.n_items / t_reps, 1),
        # what encoding each list's items again (no cache) would add, from the same rate
        "uncached_lists_extra_s_estimate": round(ds.n_users * c * t_reps / ds.n_items, 1),
        "sampled_s": round(t_lists, 3),
        "sampled_users_per_s": round(ds.n_users / t_lists, 1),
        "full_rank_users": n_full,
        "full_rank_s": round(t_full, 3),
        "full_rank_users_per_s": round(n_full / t_full, 1),
        "full_rank_all_users_s_estimate": round(ds.n_users * t_full / n_full, 1),
    }


# --------------------------------------------------------------------------- efficiency


def efficiency_section(
    cfg: RunConfig,
    feats: ItemFeatures,
    device: torch.device,
    amp: bool,
    plan: Plan,
    batches: list[dict[str, Tensor]],
    mdr_rate: float,
) -> dict[str, Any]:
    """MDR's achieved FLOP rate in training against torch's matmul and conv2d rates here."""
    seed_everything(cfg.seed)
    model = build_model(cfg.model.name, cfg, feats).to(device).train()
    total, n = 0, 0
    for b in batches[1 : 1 + plan.flop_batches]:

        def fwd_bwd(b: dict[str, Tensor] = b) -> None:
            with autocast(device, amp):
                loss = model.calculate_loss(b)["loss"]
            loss.backward()

        flops, _ = count_flops(fwd_bwd)
        total, n = total + flops, n + len(b["label"])
        model.zero_grad(set_to_none=True)
    # shares by module from a forward pass: torch's module tracker misattributes backward
    # FLOPs of modules that a method (not forward) calls, e.g. the text model's attention
    with torch.no_grad(), autocast(device, amp):
        fwd_total, modules = count_flops(lambda: model.calculate_loss(batches[1]))
    per_sample = total / n
    achieved = per_sample * mdr_rate / 1e9
    dtype = torch.bfloat16 if amp and device.type == "cuda" else torch.float32
    k = plan.matmul_n
    a = torch.randn(k, k, device=device, dtype=dtype)
    bm = torch.randn(k, k, device=device, dtype=dtype)
    matmul = best_rate(lambda: a @ bm, 2 * k**3, device, reps=5)
    conv = nn.Conv2d(32, 64, 3, padding=1).to(device=device, dtype=dtype)
    x = torch.randn(plan.conv_batch, 32, 32, 32, device=device, dtype=dtype)
    with torch.no_grad():
        conv_flops, _ = count_flops(lambda: conv(x))
        conv_rate = best_rate(lambda: conv(x), conv_flops, device, reps=5)
    return {
        "mdr_flops_per_sample": round(per_sample),
        "mdr_forward_flops_by_module_percent": {
            m: round(100 * v / max(fwd_total, 1), 1) for m, v in sorted(modules.items())
        },
        "mdr_achieved_gflops": round(achieved, 2),
        "dtype": str(dtype).removeprefix("torch."),
        "matmul": {"n": k, "gflops": round(matmul, 1)},
        "conv2d": {
            "shape": f"N={plan.conv_batch} 32->64 3x3 on 32x32",
            "gflops": round(conv_rate, 1),
        },
        "mdr_over_matmul": round(achieved / matmul, 4),
        "mdr_over_conv2d": round(achieved / conv_rate, 4),
    }


# --------------------------------------------------------------------------- report


def headline(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The figures compared before/after: a flat ``{label: value}``."""

    def get(*path: str) -> float | None:
        node: Any = result
        for p in path:
            if not isinstance(node, Mapping) or p not in node:
                return None
            node = node[p]
        return node

    return {
        "data: synth (s)": get("data", "synth", "wall_s"),
        "data: prepare (s)": get("data", "prepare", "wall_s"),
        "data: prepare peak RSS (MB)": get("data", "prepare", "peak_rss_mb"),
        "loader: samples/s": get("loader", "samples_per_s"),
        "train: MDR samples/s": get("training", "mdr", "samples_per_s"),
        "train: MDR every item encoded samples/s": get(
            "training", "mdr_every_item", "samples_per_s"
        ),
        "train: project DIN samples/s": get("training", "din", "samples_per_s"),
        "train: deepctr-torch DIN samples/s": get("training", "deepctr_din", "samples_per_s"),
        "train: MDR naive encoding samples/s": get("encoding", "naive", "samples_per_s"),
        "eval: item representations (s)": get("evaluation", "item_reps_s"),
        "eval: sampled lists users/s": get("evaluation", "sampled_users_per_s"),
        "eval: full ranking users/s": get("evaluation", "full_rank_users_per_s"),
        "efficiency: MDR GFLOP/s": get("efficiency", "mdr_achieved_gflops"),
        "efficiency: matmul GFLOP/s": get("efficiency", "matmul", "gflops"),
        "efficiency: conv2d GFLOP/s": get("efficiency", "conv2d", "gflops"),
    }


def markdown(r: Mapping[str, Any], before: Mapping[str, Any] | None) -> str:
    """The human-readable report."""
    d, tr, enc, ev, ef = (
        r[k] for k in ("data", "training", "encoding", "evaluation", "efficiency")
    )
    sz = tr["sizes"]
    lines = [
        f"# Speed suite: {r['device']}{' (bf16 autocast)' if r['amp'] else ''}",
        "",
        f"{r['created']}, commit {r['git_commit']}, torch {r['versions'].get('torch')}, "
        f"{r['threads']} torch threads, training/evaluation on `{r['dataset']}` "
        f"({ev['users']} users, {ev['items']} items){', quick' if r['quick'] else ''}. "
        f"Suite wall time {r['wall_s']} s "
        f"({', '.join(f'{k} {v}' for k, v in r['section_s'].items())}).",
    ]
    if r.get("note"):
        lines += ["", f"Note: {r['note']}"]
    lines += ["", "| measure | value |", "|---|---|"]
    if d is None:
        lines.append("| data | not measured (--skip-data) |")
    else:
        lines += [
            f"| data: synth {d['size']} shop | {d['synth']['wall_s']} s, "
            f"peak {d['synth']['peak_rss_mb']} MB |",
            f"| data: prepare ({d['image_size']}x{d['image_size']}; {d['dataset']['users']} "
            f"users, {d['dataset']['items']} items, {d['dataset']['behaviors']} behaviours) | "
            f"{d['prepare']['wall_s']} s, peak {d['prepare']['peak_rss_mb']} MB |",
        ]
    lines += [
        f"| loader: one epoch of samples + collation | {r['loader']['samples_per_s']} samples/s "
        f"({r['loader']['samples']} samples in "
        f"{r['loader']['build_s'] + r['loader']['collate_s']:.3f} s) |",
        f"| train: MDR (unique-item encoding, {tr['image_grad_items']} items a step through the "
        f"image encoder) | {tr['mdr']['samples_per_s']} samples/s |",
        f"| train: MDR, every unique item through the image encoder | "
        f"{tr['mdr_every_item']['samples_per_s']} samples/s (the cache: "
        f"{tr['cache_over_every_item']}x) |",
        f"| train: project DIN on id embeddings | {tr['din']['samples_per_s']} samples/s |",
        f"| train: deepctr-torch DIN, same sizes | {tr['deepctr_din']['samples_per_s']} "
        "samples/s |",
        f"| project DIN / deepctr DIN | {tr['din_over_deepctr']}x |",
        f"| MDR naive per-position encoding | {enc['naive']['samples_per_s']} samples/s "
        f"(unique-item: {enc['unique']['samples_per_s']} on the same batches, "
        f"{enc['unique_over_naive']}x) |",
        f"| eval: item representations of all {ev['items']} items | {ev['item_reps_s']} s |",
        f"| eval: sampled lists (1+{ev['list_length'] - 1}) | {ev['sampled_users_per_s']} "
        "users/s |",
        f"| eval: full ranking over {ev['items']} items | {ev['full_rank_users_per_s']} users/s "
        f"({ev['full_rank_users']} users; all: ~{ev['full_rank_all_users_s_estimate']} s) |",
        f"| efficiency: MDR training | {ef['mdr_achieved_gflops']} GFLOP/s "
        f"({ef['mdr_flops_per_sample'] / 1e6:.2f} MFLOP/sample) |",
        f"| efficiency: dense matmul {ef['matmul']['n']}^2 ({ef['dtype']}) | "
        f"{ef['matmul']['gflops']} GFLOP/s (MDR reaches {100 * ef['mdr_over_matmul']:.1f}%) |",
        f"| efficiency: conv2d {ef['conv2d']['shape']} | {ef['conv2d']['gflops']} GFLOP/s "
        f"(MDR reaches {100 * ef['mdr_over_conv2d']:.1f}%) |",
        "",
        f"Training sizes: batch {sz['batch_size']}, history {sz['max_hist']}, id embedding "
        f"{sz['id_dim']}, attention MLP {sz['att_hidden']}, prediction MLP {sz['mlp_hidden']}; "
        f"{tr['unique_items_per_batch']} unique items for {tr['positions_per_batch']} positions "
        "a batch. Median step time over "
        f"{tr['mdr']['steps']} steps, contenders interleaved step by step. MDR forward FLOPs by "
        "module (%): "
        + ", ".join(
            f"{k} {v}" for k, v in ef.get("mdr_forward_flops_by_module_percent", {}).items()
        )
        + ".",
    ]
    if before is not None:
        old, new = headline(before), headline(r)
        lines += [
            "",
            f"## Before / after (before: {before.get('created')}, commit "
            f"{before.get('git_commit')})",
            "",
            "| measure | before | after |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {old.get(k)} | {v} |" for k, v in new.items()]
        gauge_old, gauge_new = old["efficiency: matmul GFLOP/s"], new["efficiency: matmul GFLOP/s"]
        if gauge_old and gauge_new:
            lines += [
                "",
                "Machine-speed gauge (dense matmul rate, after / before): "
                f"{gauge_new / gauge_old:.2f}x. On a shared machine a figure that moved "
                "by about as much did not change with the code.",
            ]
    return "\n".join(lines) + "\n"


def device_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40]


# --------------------------------------------------------------------------- entry point


def run_suite(
    plan: Plan,
    device: torch.device,
    amp: bool,
    dataset: str | None,
    work: Path,
    quick: bool,
    skip_data: bool = False,
) -> dict[str, Any]:
    """Every section in order; returns the result dict (without provenance)."""
    t0 = time.perf_counter()
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = round(time.perf_counter() - t0 - sum(marks.values()), 1)

    data: dict[str, Any] | None = None
    if skip_data:
        dataset = dataset or "synthetic-tiny"
    else:
        data, shop = data_section(plan, work / "shop")
    mark("data")
    ds = ProcessedDataset.open(resolve(dataset, progress=False) if dataset else shop)
    cfg = load_run_config(CONFIG, {"train.device": device.type, "train.amp": amp})
    if quick:  # tiny shop: a smaller batch so the three contenders see distinct batches
        cfg = apply_overrides(cfg, {"train.batch_size": 256})
    feats = item_features(ds)
    loader = loader_section(ds, cfg)
    batches = fixed_batches(ds, cfg, 1 + plan.train_steps, device)
    mark("setup_and_loader")
    training, mdr_model = training_section(cfg, ds, feats, device, amp, plan, batches)
    mark("training")
    encoding = encoding_section(
        cfg, feats, device, amp, plan, batches, training.pop("every_item_times")
    )
    mark("encoding")
    evaluation = evaluation_section(mdr_model, ds, cfg, device, amp, plan)
    mark("evaluation")
    efficiency = efficiency_section(
        cfg, feats, device, amp, plan, batches, training["mdr"]["samples_per_s"]
    )
    mark("efficiency")
    return {
        "dataset": ds.name,
        "data": data,
        "loader": loader,
        "training": training,
        "encoding": encoding,
        "evaluation": evaluation,
        "efficiency": efficiency,
        "wall_s": round(time.perf_counter() - t0, 1),
        "section_s": marks,
    }


def check_finite(obj: Any, where: str = "result") -> None:
    """Every number in the result must be finite (a NaN rate means a broken measurement)."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            check_finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_finite(v, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"{where} is {obj}")


def _read(path: Path | None) -> dict[str, Any] | None:
    return None if path is None else json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shop, few steps (under a minute)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument(
        "--out", "--results", type=Path, default=RESULTS / "speed", help="results folder"
    )
    p.add_argument(
        "--skip-data",
        action="store_true",
        help="no data step (e.g. when the caller has just timed it)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset for training/evaluation (default: synthetic-small; --quick: "
        "the tiny shop of the data step)",
    )
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="an earlier JSON of this script: adds a before/after table",
    )
    p.add_argument("--note", default=None, help="a line for the report (e.g. machine load)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        help="measure nothing: rewrite the .md of this result JSON (with --compare)",
    )
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {a.device}: CUDA is not available here")
    amp = device.type == "cuda" and not a.no_amp
    plan = QUICK if a.quick else DEFAULT
    if device.type == "cuda":  # peak rates need larger problems on a GPU
        plan = replace(plan, matmul_n=8192, conv_batch=512)
    dataset = a.dataset or (None if a.quick else "synthetic-small")
    if a.render is not None:  # no measuring: re-render a result's markdown
        result = json.loads(a.render.read_text(encoding="utf-8"))
        mio.write_text(a.render.with_suffix(".md"), markdown(result, _read(a.compare)))
        print(a.render.with_suffix(".md").read_text(encoding="utf-8"))
        return 0
    work = a.work or Path(tempfile.mkdtemp(prefix="mdr-speed-"))
    try:
        body = run_suite(plan, device, amp, dataset, work, a.quick, a.skip_data)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    name = device_name(a.device)
    result = manifest(
        benchmark="speed",
        device=name,
        amp=amp,
        quick=a.quick,
        threads=torch.get_num_threads(),
        config=str(CONFIG.relative_to(CONFIGS.parent.parent)),
        note=a.note,
        **body,
    )
    result["headline"] = headline(result)
    check_finite(result)
    slug = device_slug(name) + ("-quick" if a.quick else "")
    md = markdown(result, _read(a.compare))
    mio.write_json(a.out / f"{slug}.json", result)
    mio.write_text(a.out / f"{slug}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    run_script("speed", main)
