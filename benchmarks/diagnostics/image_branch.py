"""Is the image branch learning? Diagnostics of a run's image decoder beside a VAE trained alone.

    python -m benchmarks.image_branch [--dataset NAME] [--run DIR ...] [--vae-epochs 100]
                                      [--batch 128] [--threads N] [--results DIR]

For each run (default: the seed-0 ``mdr`` and ``beta_vae`` runs of
``results/<dataset>/table2.manifest.json``) it decodes every item's posterior-mean
code and reports: the squared error per pixel of the reconstructions, the same for the
mean image (what a decoder that ignores its input can at best reach), how much the
decoded images vary across items, and the fraction of the decoder's hidden ReLU units
that are zero for every item (dead units pass no gradient). Then, as the reference,
the same image branch is trained ALONE on the same images (model ``image_factors``
without weak labels: Eq. 9-11 only, the run's learning rate and beta) by the one
trainer, for ``--vae-epochs`` epochs into ``results/<dataset>/runs/vae-alone-*``
(reused on a rerun); its held-out reconstruction error is reported by epoch, and the
same diagnostics for its best epoch. The defaults give it about as many optimiser steps
as MDR's image branch gets in a Table 2 run (the shop's 1,350 training images at batch
128: 11 steps an epoch, 1,100 in all; MDR: ~50 steps an epoch for ~20 epochs), so that
the reference is not stopped while still improving.

Output: ``results/<dataset>/image_branch.csv``, ``.md`` and ``.manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from benchmarks.aggregate import default_run
from benchmarks.common import (
    RESULTS,
    run_script,
    to_csv,
    to_markdown,
    write_result,
)
from mdr.argtypes import Parser, int_range
from mdr.config import apply_overrides, config_hash
from mdr.data.catalog import DEFAULT_DATASET
from mdr.models.capabilities import ImageDecoding
from mdr.training.runs import LoadedRun, load_run
from mdr.training.train import train

COLUMNS = (
    "source",
    "model",
    "epoch",
    "heldout_rec",
    "mse_per_pixel",
    "mean_image_mse_per_pixel",
    "across_item_std",
    "dead_relu_fraction",
)


def _relu_outputs(decoder: nn.Module, r_visual: Tensor) -> list[Tensor]:
    """Outputs of every ReLU of the decoder for the codes ``r_visual`` (n, Dv)."""
    outs: list[Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: outs.append(o.detach()))
        for m in decoder.modules()
        if isinstance(m, nn.ReLU)
    ]
    try:
        decoder(r_visual)
    finally:
        for h in hooks:
            h.remove()
    return outs


def dead_fraction(decoder: nn.Module, r_visual: Tensor) -> float:
    """Share of the decoder's ReLU units (channels for conv layers) that are 0 for all items."""
    dead = total = 0
    for o in _relu_outputs(decoder, r_visual):
        per_unit = o.transpose(0, 1).reshape(o.shape[1], -1)  # (units, n * spatial)
        dead += int((per_unit.amax(dim=1) <= 0).sum())
        total += per_unit.shape[0]
    return dead / max(total, 1)


def reconstruction_stats(x: Tensor, x_rec: Tensor) -> dict[str, float]:
    """Squared error per pixel of ``x_rec`` and of the mean image, and the std across items."""
    mean_img = x.mean(dim=0, keepdim=True)
    return {
        "mse_per_pixel": float((x_rec - x).pow(2).mean()),
        "mean_image_mse_per_pixel": float((mean_img - x).pow(2).mean()),
        "across_item_std": float(x_rec.std(dim=0).mean()),
    }


@torch.no_grad()
def decoder_diagnostics(run: LoadedRun) -> dict[str, Any]:
    """Reconstructions of every item with an image by the run's decoder (posterior means)."""
    run.require(
        "image_decoder",
        purpose="the image-branch diagnostics decode every item's "
        "code: give an mdr, beta_vae, din_pp or image-side run",
    )
    model = cast(ImageDecoding, run.model)  # what require checked
    items = model.image_items()
    codes = model.encode_items(items)  # (n, D), posterior means
    x = model.item_images(items)  # (n, 3, S, S)
    stats = reconstruction_stats(x, model.decode_images(codes))
    stats["dead_relu_fraction"] = dead_fraction(
        model.decoder_network, codes[:, model.image_columns]
    )
    return stats


def train_vae_alone(
    run: LoadedRun, results: Path, epochs: int, batch: int, threads: int | None
) -> tuple[LoadedRun, list[dict[str, Any]]]:
    """The run's image branch trained alone (Eq. 9-11) on its images by the one trainer;
    the finished run and its per-epoch held-out reconstruction error."""
    cfg = apply_overrides(
        run.cfg,
        {
            "model.name": "image_factors",
            "model.use_text": False,
            "model.weak_supervision": False,
            "loss.mu": 0.0,
            "seed": 0,
            "train.batch_size": batch,
            "train.epochs": epochs,
            "train.patience": 0,
            "train.num_threads": threads,
        },
    )
    out = results / run.ds.name / "runs" / f"vae-alone-{config_hash(cfg)}-s0"
    train(cfg, run.task.root, out, resume=(out / "checkpoint.pt").is_file(), progress=False)
    rows = []
    for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        rows.append({"epoch": m["epoch"], "heldout_rec": m["valid/rec"]})
    return load_run(out), rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument(
        "--run",
        type=Path,
        action="append",
        default=None,
        help="run folder(s) (default: the seed-0 mdr and beta_vae runs of Table 2)",
    )
    p.add_argument(
        "--vae-epochs",
        type=int_range(0, 10_000),
        default=100,
        help="epochs of the image branch trained alone (0: skip; default 100)",
    )
    p.add_argument(
        "--batch", type=int_range(1, 1_000_000), default=128, help="its batch size (default 128)"
    )
    p.add_argument("--threads", type=int_range(1, 1024), default=None)
    p.add_argument("--results", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    runs = a.run or [default_run(a.results, a.dataset, model=m) for m in ("mdr", "beta_vae")]
    loaded = [load_run(r) for r in runs]
    rows: list[dict[str, Any]] = []
    for run in loaded:
        rows.append(
            {
                "source": "run",
                "model": run.folder.root.name,
                "epoch": run.best["epoch"],
                **decoder_diagnostics(run),
            }
        )
    best = 0
    if a.vae_epochs > 0:
        alone, by_epoch = train_vae_alone(loaded[0], a.results, a.vae_epochs, a.batch, a.threads)
        rows += [
            {"source": "vae alone (held out)", "model": alone.folder.root.name, **r}
            for r in by_epoch
        ]
        best = alone.best["epoch"]
        rows.append(
            {
                "source": "vae alone",
                "model": alone.folder.root.name,
                "epoch": best,
                **decoder_diagnostics(alone),
            }
        )
    short = loaded[0].ds.name
    md = (
        f"# Image branch diagnostics ({short})\n\n"
        "`run` rows: each run's decoder on every item's posterior-mean code (epoch = best "
        "epoch). `vae alone` rows: the same image branch trained alone on the same images "
        "(model image_factors without weak labels: Eq. 9-11, the run's learning rate and "
        "beta) by the one trainer: its held-out reconstruction loss (heldout_rec, Eq. 9 on "
        "the per-value scale of the loss) by epoch, then the diagnostics of its best epoch "
        "on every item. mse_per_pixel: squared error per "
        "pixel value; mean_image_mse_per_pixel: the same for the mean image, the best a "
        "decoder that ignores its input can do; across_item_std: how much the decoded "
        "images differ between items; dead_relu_fraction: the decoder's ReLU units that are "
        "zero for every item (they pass no gradient). The held-out loss is shown every 10 "
        "epochs and at the best (the CSV has every epoch).\n\n"
        + to_markdown(
            [
                r
                for r in rows
                if r["source"] != "vae alone (held out)"
                or r["epoch"] in (1, best)
                or r["epoch"] % 10 == 0
            ],
            COLUMNS,
        )
    )
    write_result(
        short,
        "image_branch",
        to_csv(rows, COLUMNS),
        md,
        results_dir=a.results,
        runs=[str(r) for r in runs],
        vae_epochs=a.vae_epochs,
        batch=a.batch,
        wall_time_s=round(time.perf_counter() - t0, 1),
    )
    print(md)
    return 0


if __name__ == "__main__":
    run_script("image_branch", main)
