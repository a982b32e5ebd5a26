"""Training and evaluation throughput of MDR, on the machine it runs on.

    python benchmarks/speed_train.py [--dataset synthetic-small] [--device cpu|cuda]
                                     [--config CFG] [--batch-size N] [--steps 5] [--amp]

Measures, in one run and on the same batches:

- MDR training samples/s with unique-item encoding (each unique item of a batch
  encoded once, then gathered) and with naive per-position encoding (every
  history position and candidate encoded separately), at history length 20;
- evaluation throughput: users/s scoring the stored 1+n_neg lists, and users/s
  ranking all items (with cached item representations).

Writes ``results/speed/train-<dataset>-<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch
from common import CONFIGS, RESULTS

from mdr import io as mio
from mdr.config import apply_overrides, load_run_config
from mdr.data.batches import BatchIterator, eval_samples, training_samples, user_seen
from mdr.data.catalog import dataset_name, resolve
from mdr.data.dataset import ProcessedDataset
from mdr.evaluate import autocast, full_ranking_ranks, item_representations, sampled_scores
from mdr.models.base import to_device
from mdr.provenance import device_name, manifest
from mdr.registry import build_model
from mdr.seeding import seed_everything
from mdr.train import item_features


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_rate(cfg, ds, feats, device, steps: int, unique: bool, amp: bool) -> dict:
    """Samples/s of full training steps (forward, backward, Adam) on fixed batches."""
    seed_everything(0)
    cfg = apply_overrides(cfg, {"model.unique_item_encoding": unique})
    model = build_model(cfg.model.name, cfg, feats).to(device)
    opt = torch.optim.Adam(model.parameters(), cfg.train.lr)
    samples = training_samples(ds, 0, 0, cfg.train.n_train_neg, cfg.train.max_hist)
    batches = list(BatchIterator(samples, cfg.train.batch_size, shuffle=True, seed=0, epoch=0,
                                 max_batches=steps + 1))
    model.train()
    times = []
    for i, batch in enumerate(batches):
        b = to_device(batch, device)
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, amp):
            loss = model.calculate_loss(b)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i > 0:  # the first step warms up kernels and allocators
            times.append(time.perf_counter() - t0)
    n = sum(len(b["label"]) for b in batches[1:])
    hist = batches[1]["hist"][batches[1]["hist_mask"]]
    n_unique = torch.unique(torch.cat([hist, batches[1]["cand"]])).numel()
    return {"samples_per_s": round(n / sum(times), 1), "step_s": round(sum(times) / len(times), 4),
            "steps": len(times), "batch_size": cfg.train.batch_size,
            "positions_per_batch": int(batches[1]["hist_mask"].sum()) + len(batches[1]["cand"]),
            "unique_items_per_batch": int(n_unique)}


def eval_rate(cfg, ds, feats, device, amp: bool, full_users: int) -> dict:
    seed_everything(0)
    model = build_model(cfg.model.name, cfg, feats).to(device)
    samples = eval_samples(ds, "test", cfg.train.max_hist)
    _sync(device)
    t0 = time.perf_counter()
    reps = item_representations(model, ds.n_items, cfg.train.eval_batch_size, device, amp)
    _sync(device)
    t_reps = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampled_scores(model, reps, samples, cfg.train.eval_batch_size, device, amp)
    _sync(device)
    t_lists = time.perf_counter() - t0
    n_full = min(full_users, ds.n_users)
    part = {k: v[:n_full] for k, v in samples.items()}
    t0 = time.perf_counter()
    full_ranking_ranks(model, reps, part, user_seen(ds, "test"), cfg.train.eval_batch_size,
                       device, amp)
    _sync(device)
    t_full = time.perf_counter() - t0
    return {"item_reps_s": round(t_reps, 3),
            "sampled_users_per_s": round(ds.n_users / t_lists, 1),
            "list_length": int(samples["cands"].shape[1]),
            "full_rank_users_per_s": round(n_full / t_full, 1), "full_rank_users_timed": n_full,
            "full_rank_all_users_s_estimate": round(ds.n_users * t_full / n_full, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="synthetic-small")
    p.add_argument("--config", type=Path, default=CONFIGS / "mdr_synthetic.yaml")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--naive-steps", type=int, default=2, help="naive encoding is slow: fewer")
    p.add_argument("--full-users", type=int, default=300, help="users timed for full ranking")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--results", type=Path, default=RESULTS / "speed")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    proc = resolve(a.dataset, progress=False)
    short = dataset_name(a.dataset)
    ds = ProcessedDataset.open(proc)
    cfg = load_run_config(a.config, {"train.device": a.device})
    if a.batch_size:
        cfg = apply_overrides(cfg, {"train.batch_size": a.batch_size})
    feats = item_features(ds)
    unique = train_rate(cfg, ds, feats, device, a.steps, True, a.amp)
    naive = train_rate(cfg, ds, feats, device, a.naive_steps, False, a.amp)
    evals = eval_rate(cfg, ds, feats, device, a.amp, a.full_users)
    speedup = unique["samples_per_s"] / naive["samples_per_s"]
    name = device_name(a.device)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40]
    result = manifest(benchmark="speed_train", dataset=short, device=name, amp=a.amp,
                      threads=torch.get_num_threads(), config=str(a.config),
                      train_unique=unique, train_naive=naive,
                      unique_over_naive=round(speedup, 2), evaluation=evals)
    md = (f"# MDR training and evaluation speed ({short}, {name}{', bf16' if a.amp else ''})\n\n"
          f"Commit {result['git_commit']}, torch {result['versions'].get('torch')}, "
          f"{torch.get_num_threads()} CPU threads.\n\n"
          "| measure | value |\n|---|---|\n"
          f"| training, unique-item encoding | {unique['samples_per_s']} samples/s "
          f"(batch {unique['batch_size']}, {unique['unique_items_per_batch']} unique items "
          f"for {unique['positions_per_batch']} positions) |\n"
          f"| training, naive per-position encoding | {naive['samples_per_s']} samples/s |\n"
          f"| unique / naive | {speedup:.1f}x |\n"
          f"| evaluation, sampled lists (1+{evals['list_length'] - 1}) | "
          f"{evals['sampled_users_per_s']} users/s |\n"
          f"| evaluation, full ranking over {ds.n_items} items | "
          f"{evals['full_rank_users_per_s']} users/s "
          f"(all {ds.n_users} users: ~{evals['full_rank_all_users_s_estimate']} s) |\n")
    mio.write_json(a.results / f"train-{short}-{slug}.json", result)
    mio.write_text(a.results / f"train-{short}-{slug}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
