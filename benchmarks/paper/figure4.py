"""Figure 4: latent traversals, and how much each one changes the decoded colour and shape.

    python -m benchmarks.figure4 [--dataset NAME] [--run DIR] [--compare DIR ... | --no-compare]
                                 [--data PROC] [--items 3] [--effect-items 100]
                                 [--slots colour,shape] [--factors colour,shape] [--steps 10]
                                 [--seed 0] [--probe-epochs 15] [--results DIR]

Reads finished runs, never trains a recommender. The main run (default: the seed-0
``mdr`` run listed in ``results/<dataset>/table2.manifest.json``; ``--run`` for any run
with an image decoder) gets the paper's picture: for ``--items`` seeded items, each
dimension of the colour slot, then of the shape slot, is swept from its 5 % to its 95 %
quantile over all items while the rest of r stays fixed, and decoded (Eq. 9) into a row
of 10 images: ``results/<dataset>/figures/figure4-<slot>-item<id>.png`` (the item's
input image on the left).

Beside the picture, the measured effect (:func:`mdr.explain.effect.traversal_effect`):
a CNN probe trained on the shop's real images with their ground-truth factors reads
each decoded traversal image; per (slot traversed, factor) the fraction of steps at
which its predicted class differs from the first step's (``flip``) and the total
variation of its predicted distribution (``tv``), averaged over ``--effect-items``
seeded items (drawn among the probe's held-out images) and the slot's dimensions. The
probe's accuracy on held-out real images and on the same items' plain reconstructions
says how far to trust it. The comparison runs
(default: the seed-0 ``beta_vae`` run of the same manifest, whose slots are unsupervised
column groups) add rows on the same items with the same probe.

Output: ``results/<dataset>/figure4.csv``, ``figure4.md``, ``figure4.manifest.json`` and
the PNGs. Datasets without ground-truth factors get the pictures only.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from benchmarks.aggregate import default_run
from benchmarks.common import (
    RESULTS,
    BenchmarkError,
    run_script,
    to_csv,
    to_markdown,
    write_result,
)
from benchmarks.plotting import save_figure, style
from mdr.argtypes import Parser
from mdr.config import ConfigError
from mdr.data.catalog import DEFAULT_DATASET, PHOTO, resolve
from mdr.data.dataset import ProcessedDataset
from mdr.explain.drawing import traversal_figure
from mdr.explain.effect import TraversalEffect, describe_effect, traversal_effect
from mdr.explain.probe import CNNProbe, as_images, fit_probe
from mdr.explain.traversal import image_decoder, item_codes, slot_columns, traverse
from mdr.models.capabilities import ImageDecoding
from mdr.seeding import rng
from mdr.training.runs import LoadedRun, RunFolder, load_run


@dataclass(frozen=True)
class Options:
    dataset: str | None
    run: Path | None
    compare: list[Path] | None  # None: the default comparison runs
    data: Path | None
    items: int
    effect_items: int
    slots: list[str]
    factors: list[str]
    steps: int
    seed: int
    probe_epochs: int
    results: Path
    threads: int


# --------------------------------------------------------------------------- runs


def run_data(run_dir: Path, data: Path | None, dataset: str | None) -> Path:
    """The prepared data of a run: ``--data``, else the folder its config recorded, else the
    catalog dataset (under $MDR_DATA)."""
    if data is not None:
        return data
    try:
        _, provenance = RunFolder(run_dir).read_config()
    except ConfigError as e:
        raise BenchmarkError(f"{run_dir}: not a run folder this version can read ({e})") from e
    recorded = Path(provenance["data"])
    if (recorded / "dataset.json").is_file():
        return recorded
    if dataset is None:
        raise BenchmarkError(f"{run_dir}: its data {recorded} is gone; give --data or --dataset")
    return resolve(dataset, progress=False)


NEEDS = "image_decoder"  # what Figure 4 reads off a run's model
PURPOSE = (
    "Figure 4 traverses the image decoder: give an mdr, beta_vae, din_pp or image ablation run"
)


def open_run(run_dir: Path, opts: Options) -> LoadedRun:
    """A finished run whose model has an image decoder (Figure 4 traverses it)."""
    lr = load_run(run_dir, run_data(run_dir, opts.data, opts.dataset))
    return lr.require(NEEDS, purpose=PURPOSE)


# --------------------------------------------------------------------------- items and probe


def pick_items(
    ds: ProcessedDataset, n: int, seed: int, stream: str, among: np.ndarray | None = None
) -> list[int]:
    """``n`` seeded items with an image (sorted; of ``among`` when given), the same for every
    run on ``ds``."""
    candidates = np.flatnonzero(ds.image_mask) if among is None else np.asarray(among)
    if len(candidates) == 0:
        raise BenchmarkError(f"{ds.root}: no item has an image")
    chosen = rng(seed, "figure4", stream).choice(candidates, min(n, len(candidates)), replace=False)
    return sorted(int(i) for i in chosen)


def ground_truth(ds: ProcessedDataset, factors: list[str]) -> dict[str, np.ndarray] | None:
    """Factor -> class per item from the shop's factors.npz; None without ground truth."""
    truth = ds.factors
    if not truth:
        return None
    missing = [f for f in factors if f not in truth]
    if missing:
        raise BenchmarkError(
            f"{ds.root}: no ground-truth factor(s) {missing}; known: {sorted(truth)}"
        )
    return {f: np.asarray(truth[f]) for f in factors}


def train_probe(ds: ProcessedDataset, labels: dict[str, np.ndarray], opts: Options) -> CNNProbe:
    """The CNN probe on the dataset's real images (items without an image left out)."""
    keep = np.flatnonzero(ds.image_mask)
    images = np.asarray(ds.images)[keep]
    return fit_probe(
        images, {f: y[keep] for f, y in labels.items()}, epochs=opts.probe_epochs, seed=opts.seed
    )


def effect_items(ds: ProcessedDataset, probe: CNNProbe, opts: Options) -> list[int]:
    """The items the effect is measured on: seeded, among the probe's held-out images, so
    that its accuracy on their reconstructions compares with its accuracy on real images
    it never saw (not with what it memorised of its training images)."""
    held_out = np.flatnonzero(ds.image_mask)[probe.holdout_index]
    return pick_items(ds, opts.effect_items, opts.seed, "effect", among=held_out)


def measure(
    lr: LoadedRun, probe: CNNProbe, labels: dict[str, np.ndarray], items: list[int], opts: Options
) -> tuple[TraversalEffect, dict[str, list[int]]]:
    """Figure 4's measured effect of one run on ``items``, and the slots' columns."""
    model = cast(ImageDecoding, lr.model)
    slots = _slot_columns(model, opts.slots)
    effect = traversal_effect(
        image_decoder(model), item_codes(model), items, slots, probe, labels, n_steps=opts.steps
    )
    return effect, slots


# --------------------------------------------------------------------------- figures


def draw_items(
    lr: LoadedRun,
    codes: torch.Tensor,
    items: list[int],
    slots: dict[str, list[int]],
    opts: Options,
    folder: Path,
) -> list[Path]:
    """One PNG per (slot, item): rows = the slot's dims, columns = traversal steps."""
    decode = image_decoder(lr.model)
    images = np.asarray(lr.ds.images)
    paths = []
    for slot, cols in slots.items():
        for item in items:
            grid = traverse(decode, codes[item], cols, opts.steps, reference=codes)
            lo = torch.quantile(codes[:, cols], 0.05, dim=0)
            hi = torch.quantile(codes[:, cols], 0.95, dim=0)
            labels = [f"r[{c}]: {a:+.1f} .. {b:+.1f}" for c, a, b in zip(cols, lo, hi)]
            original = as_images(images[item : item + 1])[0]  # (3, S, S)
            title = (
                f"{lr.cfg.model.name}, {slot} slot, item {item} ({lr.ds.name}, seed {lr.cfg.seed})"
            )
            with style():
                fig = traversal_figure(grid, title, labels, original)
                paths.append(save_figure(fig, folder / f"figure4-{slot}-item{item}.png", dpi=80))
    return paths


# --------------------------------------------------------------------------- outputs


def effect_rows(
    lr: LoadedRun, effect: TraversalEffect, slots: dict[str, list[int]], role: str
) -> list[dict[str, Any]]:
    """One CSV row per slot traversed."""
    rows = []
    for measured in effect.rows():
        cols = slots[measured["slot"]]
        row = {
            "role": role,
            "model": lr.cfg.model.name,
            "run": lr.folder.root.name,
            "seed": lr.cfg.seed,
            "dims": " ".join(map(str, cols)),
            **measured,
            "n_items": effect.n_items,
            "n_steps": effect.n_steps,
        }
        for f in effect.factors:
            row[f"recon_acc_{f}"] = effect.recon_accuracy.get(f, float("nan"))
            row[f"recon_majority_{f}"] = effect.recon_baseline.get(f, float("nan"))
            row[f"probe_acc_{f}"] = effect.probe_accuracy.get(f, float("nan"))
        rows.append(row)
    return rows


def columns(factors: list[str]) -> list[str]:
    return (
        ["role", "model", "run", "seed", "slot", "dims"]
        + [f"{f}_flip" for f in factors]
        + [f"{f}_tv" for f in factors]
        + ["pixel_change", "n_items", "n_steps"]
        + [f"{k}_{f}" for f in factors for k in ("recon_acc", "recon_majority", "probe_acc")]
    )


def markdown(
    dataset: str,
    rows: list[dict[str, Any]],
    sentences: dict[str, str],
    factors: list[str],
    figures: list[Path],
    opts: Options,
    ds_name: str = "",
) -> str:
    """The effect matrix per run, the probe's trust, the reading and the figures."""
    fl = [f"{f}_flip" for f in factors]
    tv = [f"{f}_tv" for f in factors]
    heads = (
        ["model", "slot traversed"]
        + [f"{f} changed (flip)" for f in factors]
        + [f"{f} changed (TV)" for f in factors]
        + ["pixel change"]
    )
    out = [
        f"# Figure 4: latent traversals ({dataset})",
        "",
        "Rows: the slot whose dimensions are traversed (5 % to 95 % quantile over all items, "
        f"{opts.steps} steps, every other dimension fixed). Columns: how often a CNN probe "
        "trained on the real images with their ground-truth factors predicts a different "
        "class than at the first step (flip), and the total variation of its predicted "
        "distribution (TV), averaged over the slot's dimensions and "
        f"{rows[0]['n_items'] if rows else 0} seeded items among the probe's held-out "
        "images. A slot that controls its own "
        "factor shows a large diagonal and a small off-diagonal.",
        "",
    ]
    if rows:
        out.append(to_markdown(rows, ["model", "slot", *fl, *tv, "pixel_change"], heads))
        out += [
            "Probe accuracy (how far to trust the matrix): on held-out real images, on "
            "the plain reconstructions of the held-out items above, and the majority-class "
            "rate of those items.",
            "",
        ]
        trust = []
        first = {r["run"]: r for r in reversed(rows)}  # the first row of each run
        for r in sorted(first.values(), key=rows.index):
            for f in factors:
                trust.append(
                    {
                        "model": r["model"],
                        "factor": f,
                        "real": r[f"probe_acc_{f}"],
                        "recon": r[f"recon_acc_{f}"],
                        "majority": r[f"recon_majority_{f}"],
                    }
                )
        out.append(
            to_markdown(
                trust,
                ["model", "factor", "real", "recon", "majority"],
                [
                    "model",
                    "factor",
                    "probe on real images",
                    "probe on reconstructions",
                    "majority class",
                ],
            )
        )
        out += ["## Reading", ""]
        out += [f"- **{run}**: {text}" for run, text in sentences.items()]
        out.append("")
    else:
        out += ["No ground-truth factors in this dataset: pictures only.", ""]
    out += ["## Figures", ""]
    out += [f"- `figures/{p.name}`" for p in figures]
    if dataset in PHOTO or ds_name in PHOTO:
        out += [
            "",
            "Photo shop: every item is a real product photo with its real colour and article "
            "type (the probe is trained on these photos); the users and their behaviour are "
            "synthetic.",
        ]
    else:
        out += ["", "Synthetic shop: an illustration of the method, not evidence about real shops."]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> Options:
    p = Parser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dataset",
        default=None,
        help=f"results folder name (default {DEFAULT_DATASET}, or the run's dataset)",
    )
    p.add_argument("--run", type=Path, default=None, help="a run folder with an image decoder")
    p.add_argument(
        "--compare",
        type=Path,
        nargs="*",
        default=None,
        help="extra runs measured on the same items (default: the seed-0 beta_vae)",
    )
    p.add_argument("--no-compare", action="store_true", help="no comparison runs")
    p.add_argument("--data", type=Path, default=None, help="prepared dataset folder")
    p.add_argument("--items", type=int, default=3, help="items drawn (default 3)")
    p.add_argument(
        "--effect-items",
        type=int,
        default=100,
        help="items the effect is averaged over (default 100)",
    )
    p.add_argument("--slots", default="colour,shape", help="slots to traverse, in order")
    p.add_argument("--factors", default=None, help="factors the probe reads (default: --slots)")
    p.add_argument("--steps", type=int, default=10, help="traversal steps (default 10)")
    p.add_argument("--seed", type=int, default=0, help="items and probe seed")
    p.add_argument("--probe-epochs", type=int, default=15)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--results", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    slots = [s for s in a.slots.split(",") if s]
    factors = [f for f in (a.factors or a.slots).split(",") if f]
    if a.items < 1 or a.effect_items < 1 or a.steps < 2:
        p.error("--items and --effect-items must be positive, --steps at least 2")
    compare = [] if a.no_compare else a.compare
    return Options(
        a.dataset,
        a.run,
        compare,
        a.data,
        a.items,
        a.effect_items,
        slots,
        factors,
        a.steps,
        a.seed,
        a.probe_epochs,
        a.results,
        a.threads,
    )


def resolve_runs(opts: Options) -> tuple[str | None, Path, list[Path]]:
    """The results folder name, the main run and the comparison runs."""
    dataset = opts.dataset
    if opts.run is not None:
        main_run = opts.run
    else:
        dataset = dataset or DEFAULT_DATASET
        main_run = default_run(opts.results, dataset)
    if opts.compare is not None:
        compare = list(opts.compare)
    elif opts.run is None:
        try:
            compare = [default_run(opts.results, dataset or DEFAULT_DATASET, model="beta_vae")]
        except BenchmarkError:
            compare = []
    else:
        compare = []
    return dataset, main_run, compare


def _slot_columns(model: ImageDecoding, slots: list[str]) -> dict[str, list[int]]:
    """The slots asked for (--slots), or one line saying which the model lacks."""
    try:
        return slot_columns(model, slots)
    except ValueError as e:
        raise BenchmarkError(f"--slots: {e}") from None


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    torch.set_num_threads(opts.threads)
    start = time.time()
    dataset, main_run, compare = resolve_runs(opts)
    lr = load_run(main_run, run_data(main_run, opts.data, opts.dataset))
    if opts.run is None and not lr.ds.image_mask.any():
        # a table's dataset without images (real review files): nothing to traverse, and
        # `nox -s figures` goes on to Figure 5
        print(
            f"figure4: {dataset} has no images: Figure 4 traverses the image decoder, "
            "so there is nothing to draw (skipped)"
        )
        return 0
    lr.require(NEEDS, purpose=PURPOSE)
    model = cast(ImageDecoding, lr.model)  # what require checked
    dataset = dataset or lr.ds.name
    slots = _slot_columns(model, opts.slots)
    codes = item_codes(model)
    folder = opts.results / dataset / "figures"
    figures = draw_items(
        lr, codes, pick_items(lr.ds, opts.items, opts.seed, "figure"), slots, opts, folder
    )
    labels = ground_truth(lr.ds, opts.factors)
    rows: list[dict[str, Any]] = []
    sentences: dict[str, str] = {}
    probe = None
    if labels is not None:
        probe = train_probe(lr.ds, labels, opts)
        items = effect_items(lr.ds, probe, opts)
        for role, run in [("main", lr), *(("compare", open_run(r, opts)) for r in compare)]:
            if run.ds.root.resolve() != lr.ds.root.resolve():
                raise BenchmarkError(
                    f"{run.folder.root}: trained on {run.ds.root}, not on "
                    f"{lr.ds.root}; compare runs of one dataset"
                )
            effect, run_slots = measure(run, probe, labels, items, opts)
            rows += effect_rows(run, effect, run_slots, role)
            sentences[f"{run.cfg.model.name} ({run.folder.root.name})"] = describe_effect(effect)
    cols = columns(opts.factors)
    write_result(
        dataset,
        "figure4",
        to_csv(rows, cols),
        markdown(dataset, rows, sentences, opts.factors, figures, opts, lr.ds.name),
        results_dir=opts.results,
        runs=[str(main_run), *map(str, compare)],
        slots=opts.slots,
        factors=opts.factors,
        items_seed=opts.seed,
        figure_items=opts.items,
        effect_items=opts.effect_items,
        steps=opts.steps,
        probe={
            "epochs": opts.probe_epochs,
            "holdout_accuracy": None if probe is None else probe.holdout_accuracy,
        },
        wall_s=round(time.time() - start, 1),
    )
    for text in sentences.values():
        print(text)
    print(f"figure4: wrote {opts.results / dataset}/figure4.csv/.md and {len(figures)} PNGs")
    return 0


if __name__ == "__main__":
    run_script("figure4", main)
