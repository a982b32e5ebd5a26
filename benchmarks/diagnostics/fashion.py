"""Figure 4 and the image disentanglement scores on REAL product photos.

    python -m benchmarks.fashion [--dir DIR] [--config benchmarks/configs/fashion.yaml]
        [--variants image,image_wo_ws] [--epochs N] [--limit N] [--results DIR] [--quiet]

One command, resumable (rerunning it skips what is done):

1. prepare the Fashion Product Images (small) corpus (``--dir``, ``$MDR_FASHION_DIR``
   or ``../shared/data/fashion-product-images-small``) into
   ``$MDR_DATA/proc/fashion-images`` unless it is there with the same settings
   (:func:`mdr.data.fashion.prepare_fashion`);
2. train the image side of MDR (model ``image_factors``, :mod:`mdr.models.image_factors`)
   with the one trainer (:mod:`mdr.training.train`, the ``images`` task of :mod:`mdr.training.tasks`) for
   each variant: ``image`` (weak colour/article labels on 10 % of the items, Eq. 12-13)
   and ``image_wo_ws`` (the same VAE without them), into
   ``results/fashion-images/runs/<variant>-<hash>-s<seed>``;
3. score each variant's codes (posterior means of every photo) against the ground-truth
   colour and article type with DCI, MIG and the slot probe
   (:func:`mdr.explain.disentanglement.score_codes`);
4. Figure 4 on real photos: traversals of the colour and shape slots of a few held-out
   photos (:func:`mdr.explain.traversal.traverse`), and the measured effect of each
   slot's traversal on the decoded colour and article
   (:func:`mdr.explain.effect.traversal_effect`, with a
   CNN probe trained on the model's reconstructions of the training photos, because it
   has to read decoded images).

Outputs under ``results/fashion-images/``: ``disentanglement.csv``/``.md`` (+ manifest),
``traversal_effect.csv``/``.md`` (+ manifest), ``figures/figure4-<variant>-<id>.png`` and
``fashion.manifest.json`` (config, dataset counts, wall times).

CPU budget (measured on the shared 2-core machine, one torch thread, other jobs
running): prepare ~40 s; training at 32x32 ~4-5 s an epoch (8,622 training photos, batch
512), 19 and 27 epochs to early stopping (80-130 s per variant); scores ~9 s and probe +
traversals 20-45 s per variant: about 6 min in all for both variants. Rerunning reuses the
prepared data and the finished runs. See the config for the choice of 32x32 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    CONFIGS,
    RESULTS,
    ROOT,
    BenchmarkError,
    run_script,
    to_csv,
    to_markdown,
    write_result,
)
from mdr import io as mio
from mdr.argtypes import Parser
from mdr.config import (
    PhotoCorpusConfig,
    RunConfig,
    apply_overrides,
    config_hash,
    load_prepare_config,
    load_run_config,
    to_dict,
)
from mdr.data.catalog import data_root
from mdr.data.fashion import FashionImages, default_fashion_dir, prepare_fashion
from mdr.data.parse import DataError
from mdr.explain.disentanglement import score_codes
from mdr.explain.drawing import draw_traversal
from mdr.explain.effect import describe_effect, traversal_effect
from mdr.explain.probe import as_images, fit_probe
from mdr.explain.traversal import image_decoder, traverse
from mdr.models.image_factors import ImageFactorModel
from mdr.provenance import manifest
from mdr.seeding import rng
from mdr.training.runs import load_run
from mdr.training.train import train

DATASET = "fashion-images"
MAIN = "image"
SLOT_FACTOR = {"colour": "colour", "shape": "article"}  # slot -> ground-truth factor
N_FIGURE_ITEMS = {"image": 4}  # photos drawn per variant (others: 2), to keep the PNGs few
FIGURE_DPI = 64  # photo tiles compress poorly: ~100-150 KB a figure at this size
N_EFFECT_ITEMS = 200
PROBE_ITEMS = 4000  # training photos whose reconstructions train the probe


# --------------------------------------------------------------------------- data and runs


def prepare_settings(cfg_path: Path, limit: int | None, seed: int) -> PhotoCorpusConfig:
    """The config file's ``prepare:`` section (how the corpus is prepared), with ``limit``
    and the runs' ``seed`` (it also seeds the labelled fraction)."""
    extra: dict[str, Any] = {"seed": seed} | ({} if limit is None else {"limit": limit})
    return load_prepare_config(cfg_path, PhotoCorpusConfig, **extra)


def proc_folder(settings: PhotoCorpusConfig, root: Path) -> Path:
    """``<root>/proc/fashion-images`` at 32x32 without a limit, else a suffixed name."""
    suffix = "" if settings.image_size == 32 else f"-{settings.image_size}"
    suffix += "" if settings.limit is None else f"-limit{settings.limit}"
    return root / "proc" / f"{DATASET}{suffix}"


def ensure_prepared(src: Path, proc: Path, settings: PhotoCorpusConfig, progress: bool) -> Path:
    """Prepare unless ``proc`` already holds the corpus with the same settings."""
    want = to_dict(settings)
    if (proc / "dataset.json").is_file():
        have = FashionImages.open(proc).manifest["config"]
        if all(have.get(k) == v for k, v in want.items()):
            return proc
    prepare_fashion(src, proc, **want, progress=progress)
    return proc


def variant_config(cfg_path: Path, name: str, epochs: int | None) -> RunConfig:
    overrides: dict[str, Any] = {} if epochs is None else {"train.epochs": epochs}
    return load_run_config(cfg_path, overrides, model=None if name == MAIN else name)


def run_dir(results: Path, name: str, cfg: RunConfig) -> Path:
    # the epoch budget may grow on resume: it is not part of the run's identity
    key = config_hash(apply_overrides(cfg, {"train.epochs": 1}))
    return results / DATASET / "runs" / f"{name}-{key}-s{cfg.seed}"


# --------------------------------------------------------------------------- scores


def codes_of(model: ImageFactorModel, ds: FashionImages) -> np.ndarray:
    """Posterior means f of every photo: (n, N)."""
    items = torch.arange(ds.n_items, device=model.images.device)
    with torch.no_grad():
        return model.encode_items(items).cpu().numpy()


def score_variant(
    name: str,
    model: ImageFactorModel,
    ds: FashionImages,
    codes: np.ndarray,
    result: dict[str, Any],
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One row of disentanglement.csv, and the full score_codes output."""
    factors = {f: ds.factors[f] for f in ("colour", "article")}
    s = score_codes(codes, factors, model.r_columns(), SLOT_FACTOR, seed=seed)
    row: dict[str, Any] = {
        "variant": name,
        "dci_disentanglement": s["dci"]["disentanglement"],
        "dci_completeness": s["dci"]["completeness"],
        "dci_informativeness": s["dci"]["informativeness_test"],
        "mig": s["mig"]["mig"],
    }
    for p in s["slot_probe"]:
        slot = p["slot"]
        row[f"{slot}_probe_acc"] = p["accuracy"]
        row[f"{slot}_best_other"] = f"{p['best_other_slot']} {p['best_other_accuracy']:.3f}"
        row[f"{slot}_margin"] = p["margin"]
        row[f"{slot}_chance"] = p["chance"]
    for slot in SLOT_FACTOR:
        row[f"{slot}_heldout_clf_acc"] = result.get(f"acc_{slot}")
    row["valid_rec"] = result.get("rec")
    return row, s


SCORE_COLUMNS = [
    "variant",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "mig",
    "colour_probe_acc",
    "colour_best_other",
    "colour_margin",
    "colour_chance",
    "shape_probe_acc",
    "shape_best_other",
    "shape_margin",
    "shape_chance",
    "colour_heldout_clf_acc",
    "shape_heldout_clf_acc",
    "valid_rec",
]


def scores_markdown(rows: list[dict[str, Any]], ds: FashionImages, method: str) -> str:
    c = ds.manifest["counts"]
    lines = [
        "# Image disentanglement on real product photos (fashion-images)",
        "",
        f"{c['items']} photos at {ds.image_size}x{ds.image_size}; factors: colour "
        f"({len(ds.factor_names['colour'])} classes) and article type "
        f"({len(ds.factor_names['article'])} classes), rare classes merged into 'other'. "
        f"Codes: posterior means of every photo. DCI ({method} importance), MIG (20 bins) "
        "and the slot probe use one seeded 80/20 split; `*_probe_acc` is a logistic probe "
        "on the slot's own 4 dims, `*_best_other` the best other single slot, `*_chance` "
        "the majority class. `*_heldout_clf_acc`: the model's own Eq. 12 classifier on the "
        "held-out photos (whose labels it never saw).",
        "",
        to_markdown(rows, SCORE_COLUMNS),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- Figure 4


def figure_items(ds: FashionImages, valid: np.ndarray, k: int) -> list[int]:
    """``k`` held-out photos of the k most frequent article types, distinct colours."""
    art, col = ds.factors["article"], ds.factors["colour"]
    chosen: list[int] = []
    used_colours: set[int] = set()
    for a in range(len(ds.factor_names["article"])):
        for i in valid:
            if art[i] == a and col[i] not in used_colours:
                chosen.append(int(i))
                used_colours.add(int(col[i]))
                break
        if len(chosen) == k:
            break
    return chosen


def draw_figure4(
    name: str,
    model: ImageFactorModel,
    ds: FashionImages,
    codes: np.ndarray,
    items: list[int],
    folder: Path,
) -> list[str]:
    """One PNG per item: the colour slot's dims, then the shape slot's, 10 steps each."""
    cols = model.r_columns()
    ref = torch.from_numpy(codes)
    paths = []
    for i in items:
        grids, labels = [], []
        for slot in SLOT_FACTOR:
            grids.append(
                traverse(image_decoder(model), ref[i], cols[slot], n_steps=10, reference=ref)
            )
            labels += [f"{slot} dim {j + 1}" for j in range(len(cols[slot]))]
        it = ds.items[i]
        title = (
            f"{name}: photo {it['id']} ({it['baseColour']} {it['articleType']}); "
            "each row sweeps one dim from its 5% to its 95% quantile"
        )
        original = torch.from_numpy(np.array(ds.images[i])).permute(2, 0, 1).float() / 255.0
        path = folder / f"figure4-{name}-{it['id']}.png"
        draw_traversal(
            torch.cat(grids), path, title, row_labels=labels, original=original, dpi=FIGURE_DPI
        )
        paths.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    return paths


def measure_effect(
    name: str,
    model: ImageFactorModel,
    ds: FashionImages,
    codes: np.ndarray,
    train: np.ndarray,
    valid: np.ndarray,
    seed: int,
) -> tuple[list[dict], str]:
    """traversal_effect of every slot on held-out photos, with a probe fit on reconstructions."""
    factors = {f: ds.factors[f] for f in ("colour", "article")}
    probe_idx = np.sort(rng(seed, "fashion-probe-items").permutation(train)[:PROBE_ITEMS])
    decode = image_decoder(model)
    recon = decode(torch.from_numpy(codes[probe_idx]))  # (m, 3, S, S)
    probe = fit_probe(recon, {f: y[probe_idx] for f, y in factors.items()}, epochs=8, seed=seed)
    items = np.sort(rng(seed, "fashion-effect-items").permutation(valid)[:N_EFFECT_ITEMS])
    # the probe's accuracy on REAL held-out photos (what describe_effect calls "real images"),
    # in place of fit_probe's own figure, which here is on held-out reconstructions
    real = probe.predict_proba(as_images(np.array(ds.images[valid])))
    probe.holdout_accuracy = {
        f: float((real[f].argmax(1) == y[valid]).mean()) for f, y in factors.items()
    }
    effect = traversal_effect(
        decode, torch.from_numpy(codes), items, model.r_columns(), probe, labels=factors
    )
    rows = [
        {
            "variant": name,
            **r,
            **{f"recon_acc_{f}": effect.recon_accuracy[f] for f in effect.factors},
            **{f"recon_majority_{f}": effect.recon_baseline[f] for f in effect.factors},
        }
        for r in effect.rows()
    ]
    return rows, describe_effect(effect)


EFFECT_COLUMNS = [
    "variant",
    "slot",
    "colour_flip",
    "colour_tv",
    "article_flip",
    "article_tv",
    "pixel_change",
    "recon_acc_colour",
    "recon_majority_colour",
    "recon_acc_article",
    "recon_majority_article",
]


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=None, help="the corpus folder")
    p.add_argument("--config", type=Path, default=CONFIGS / "fashion.yaml")
    p.add_argument("--variants", default="image,image_wo_ws")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--limit", type=int, default=None, help="first N photos only (smoke runs)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    t_start = time.perf_counter()
    progress = not args.quiet
    src = args.dir or default_fashion_dir(ROOT)
    if not (src / "styles.csv").is_file():
        raise DataError(f"fashion corpus not found at {src}: pass --dir or set MDR_FASHION_DIR")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    cfgs = {n: variant_config(args.config, n, args.epochs) for n in names}
    base = cfgs[names[0]]
    if any(c.seed != base.seed for c in cfgs.values()):
        raise BenchmarkError(
            "--variants: the variants must share the seed (it also seeds the labelled fraction)"
        )
    settings = prepare_settings(args.config, args.limit, base.seed)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    proc = ensure_prepared(src, proc_folder(settings, data_root()), settings, progress)
    timings["prepare_s"] = time.perf_counter() - t
    out = args.results / DATASET
    figures = out / "figures"
    score_rows, effect_rows, details, notes, figs = [], [], {}, {}, {}
    for name, cfg in cfgs.items():
        run = run_dir(args.results, name, cfg)
        t = time.perf_counter()
        result = train(cfg, proc, run, resume=(run / "checkpoint.pt").is_file(), progress=progress)
        timings[f"train_{name}_s"] = time.perf_counter() - t
        t = time.perf_counter()
        loaded = load_run(run, proc)
        model, ds = loaded.model, loaded.ds
        codes = codes_of(model, ds)
        train_items, valid = loaded.task.train_items, loaded.task.valid_items
        row, details[name] = score_variant(name, model, ds, codes, result, cfg.seed)
        score_rows.append(
            {**row, "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run)}
        )
        timings[f"scores_{name}_s"] = time.perf_counter() - t
        t = time.perf_counter()
        figs[name] = draw_figure4(
            name, model, ds, codes, figure_items(ds, valid, N_FIGURE_ITEMS.get(name, 2)), figures
        )
        rows, notes[name] = measure_effect(name, model, ds, codes, train_items, valid, cfg.seed)
        effect_rows += rows
        timings[f"figure4_{name}_s"] = time.perf_counter() - t
        if progress:
            print(
                json.dumps(
                    {k: v for k, v in row.items() if not isinstance(v, str)},
                    indent=None,
                    default=float,
                )
            )
    ds = FashionImages.open(proc)
    common = {
        "data": str(proc),
        "config": to_dict(base),
        "config_path": str(args.config),
        "prepare": to_dict(settings),
    }
    write_result(
        DATASET,
        "disentanglement",
        to_csv(score_rows, [*SCORE_COLUMNS, "run"]),
        scores_markdown(score_rows, ds, details[names[0]]["dci"]["importance_method"]),
        results_dir=args.results,
        **common,
        details=details,
    )
    effect_md = [
        "# Figure 4 on real photos: what each slot's traversal changes",
        "",
        "Each slot's dims are swept from the 5% to the 95% quantile of the codes for "
        f"{N_EFFECT_ITEMS} held-out photos; a CNN probe trained on the model's "
        f"reconstructions of {PROBE_ITEMS} training photos reads the decoded colour "
        "and article type. flip: share of steps whose predicted class changes; tv: "
        "total variation from the first step; recon_acc: the probe on the "
        "reconstructions of the traversed (held-out) photos, beside the majority "
        "class. Figures: `figures/figure4-<variant>-<photo id>.png`.",
        "",
        to_markdown(effect_rows, EFFECT_COLUMNS),
        "",
        *[f"- **{n}**: {text}" for n, text in notes.items()],
        "",
    ]
    write_result(
        DATASET,
        "traversal_effect",
        to_csv(effect_rows, EFFECT_COLUMNS),
        "\n".join(effect_md),
        results_dir=args.results,
        **common,
    )
    timings["total_s"] = time.perf_counter() - t_start
    mio.write_json(
        out / "fashion.manifest.json",
        manifest(
            dataset=DATASET,
            **common,
            variants=names,
            figures=figs,
            timings=timings,
            counts=ds.manifest["counts"],
            skips=ds.manifest["skips"],
        ),
    )
    print(f"wrote {out} in {timings['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    run_script("fashion", main)
