"""Disentanglement of finished runs, scored against the synthetic shop's ground-truth factors.

    python -m benchmarks.disentanglement [--dataset synthetic-small] [--results results]
                                         [--runs-dir DIR] [--data PROC] [--max-items N]
                                         [--factors a,b,...] [--seed 0] [--threads N]

For every representation-model run of Tables 2 and 3 (the ``runs`` of
``results/<dataset>/table2.manifest.json`` and ``table3.manifest.json``; when
neither exists, every finished run folder ``NAME-HASH-sSEED`` under the runs
folder), the codes are the model's deterministic item representation r
(``load_run(RUN).model.encode_items``, posterior means), the slots are
``model.r_columns()``, and a slot stands for the factor of the same name
(colour, size, shape, pattern, material, brand). The ground truth is the
prepared dataset's ``factors.npz`` (one value per prepared item id, so row i of
the codes is item i). :func:`mdr.explain.disentanglement.score_codes` gives DCI,
MIG and the slot probe of each run; the tables give mean ± std over seeds per
model. Skipped, and said so: the deepctr-torch runs (no item representation)
and ``din`` (id embeddings: nothing content-based to score).

Output: ``results/<dataset>/disentanglement.csv`` and ``.md`` plus a manifest
with every run's numbers. Needs the runs: ``nox -s reproduce-table2`` first.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from benchmarks.aggregate import RUN_NAME, mean_std, parse_run_name, read_json
from benchmarks.common import (
    LABELS,
    RESULTS,
    BenchmarkError,
    run_script,
    to_csv,
    to_markdown,
    write_result,
)
from mdr.argtypes import Parser
from mdr.data.catalog import DEFAULT_DATASET, PHOTO, dataset_name
from mdr.seeding import rng

TABLES = ("table2", "table3")
SUMMARY = (
    ("dci_disentanglement", "DCI D"),
    ("dci_completeness", "DCI C"),
    ("dci_informativeness_test", "DCI I (test)"),
    ("mig", "MIG"),
    ("probe_accuracy", "probe own"),
    ("probe_best_other", "probe best other"),
    ("probe_margin", "probe margin"),
    ("probe_wins", "slots won"),
)


# --------------------------------------------------------------------------- finding runs


def find_runs(results: Path, short: str, runs_dir: Path) -> tuple[list[str], str]:
    """Run folder names to score, and where the list came from."""
    names: list[str] = []
    sources = []
    for table in TABLES:
        path = results / short / f"{table}.manifest.json"
        if path.is_file():
            runs = read_json(path).get("runs") or {}
            names += [n for n in runs if n not in names]
            sources.append(path.name)
    if names:
        return names, " + ".join(sources)
    if runs_dir.is_dir():
        names = sorted(p.name for p in runs_dir.iterdir() if p.is_dir() and RUN_NAME.match(p.name))
    return names, str(runs_dir)


# --------------------------------------------------------------------------- one run


def item_subset(n_items: int, max_items: int | None, seed: int) -> np.ndarray:
    """All item ids, or a seeded sorted sample of ``max_items`` of them."""
    if max_items is None or max_items >= n_items:
        return np.arange(n_items)
    return np.sort(rng(seed, "disentanglement-items").choice(n_items, max_items, replace=False))


def ground_truth(ds: Any, names: list[str] | None) -> dict[str, np.ndarray]:
    """The dataset's factors (item id order): ``names``, or every non-nuisance factor."""
    factors = ds.factors
    if not factors:
        raise BenchmarkError(
            f"{ds.root}: no factors.npz - disentanglement needs a synthetic shop "
            "with ground truth (real photos: call score_codes with their labels)"
        )
    if names is None:
        kinds = {k: v.get("kind") for k, v in (ds.manifest.get("factors") or {}).items()}
        names = [f for f in factors if kinds.get(f) != "nuisance"]
    missing = [f for f in names if f not in factors]
    if missing:
        raise BenchmarkError(
            f"{ds.root}: no ground-truth factor(s) {missing}; known: {sorted(factors)}"
        )
    return {f: factors[f] for f in names}


def score_run(
    run_dir: Path,
    data: Path | None,
    factor_names: list[str] | None,
    max_items: int | None,
    seed: int,
) -> dict[str, Any] | str:
    """score_codes of one run; a string (the reason) when the run has nothing to score."""
    import torch

    from mdr.explain.disentanglement import score_codes
    from mdr.models.capabilities import SlotCodes
    from mdr.training.evaluate import eval_mode
    from mdr.training.runs import load_run

    lr = load_run(run_dir, data)
    mcfg = lr.cfg.model
    if not lr.capabilities.codes:
        return f"{mcfg.name}: a CTR baseline on id features, no item representation to score"
    if mcfg.use_id_embedding or not lr.capabilities.slots:
        return "id embeddings: no content representation to score"
    model = cast(SlotCodes, lr.model)  # what the capabilities promise
    items = item_subset(lr.ds.n_items, max_items, seed)
    with eval_mode(lr.model):
        reps = model.encode_items(torch.from_numpy(items).to(lr.device))  # (n, D)
    codes = reps.float().cpu().double().numpy()  # row i = item items[i]
    truth = ground_truth(lr.ds, factor_names)
    ys = {f: v[items] for f, v in truth.items()}
    constant = [f for f, y in ys.items() if np.unique(y).size < 2]
    ys = {f: y for f, y in ys.items() if f not in constant}
    slot_columns = model.r_columns()
    slot_factor = {s: s for s in slot_columns if s in ys}
    out = score_codes(codes, ys, slot_columns, slot_factor, seed=seed)
    out["constant_factors_dropped"] = constant
    out["best_epoch"] = lr.best.get("epoch")
    out["data"] = str(lr.ds.root)
    return out


def run_summary(scores: dict[str, Any]) -> dict[str, Any]:
    """The scalar numbers of one run (the CSV's columns, before the mean over seeds)."""
    d, probe = scores["dci"], scores["slot_probe"]
    row: dict[str, Any] = {
        "dci_disentanglement": d["disentanglement"],
        "dci_completeness": d["completeness"],
        "dci_informativeness_train": d["informativeness_train"],
        "dci_informativeness_test": d["informativeness_test"],
        "mig": scores["mig"]["mig"],
    }
    scored = [p for p in probe if p["best_other_accuracy"] is not None]
    if scored:
        row["probe_accuracy"] = float(np.mean([p["accuracy"] for p in scored]))
        row["probe_best_other"] = float(np.mean([p["best_other_accuracy"] for p in scored]))
        row["probe_margin"] = float(np.mean([p["margin"] for p in scored]))
        row["probe_wins"] = float(np.mean([p["wins"] for p in scored]))
    for p in probe:
        row[f"probe_{p['slot']}_accuracy"] = p["accuracy"]
        if p["best_other_accuracy"] is not None:
            row[f"probe_{p['slot']}_best_other"] = p["best_other_accuracy"]
        row[f"probe_{p['slot']}_chance"] = p["chance"]
    return row


# --------------------------------------------------------------------------- tables


def model_order(models: list[str]) -> list[str]:
    """MDR, its ablations, then the baselines in Table 2's order, then anything else."""
    rank = {"mdr": 0, "beta_vae": 2, "abae": 3, "din_pp": 4}
    return sorted(models, key=lambda m: (rank.get(m, 1 if m.startswith("mdr") else 5), m))


def aggregate(per_run: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of mean/std over seeds per model, and the metric names that appear."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for name, row in per_run.items():
        by_model.setdefault(parse_run_name(name)[0], []).append(row)
    metrics: list[str] = []
    for rows in by_model.values():
        for r in rows:
            metrics += [k for k in r if k not in metrics]
    out = []
    for model in model_order(list(by_model)):
        rows = by_model[model]
        agg: dict[str, Any] = {
            "model": model,
            "label": LABELS.get(model, model),
            "seeds": len(rows),
        }
        for m in metrics:
            vals = [r[m] for r in rows if r.get(m) is not None]
            if vals:
                agg[f"{m}_mean"], agg[f"{m}_std"] = mean_std(vals)
        out.append(agg)
    return out, metrics


def _cell(row: dict[str, Any], metric: str) -> str:
    mean = row.get(f"{metric}_mean")
    return "-" if mean is None else f"{mean:.3f} ± {row[f'{metric}_std']:.3f}"


def slot_names(metrics: list[str]) -> list[str]:
    out: list[str] = []
    for m in metrics:
        hit = re.match(r"^probe_(.+)_accuracy$", m)
        if hit and hit[1] not in out:
            out.append(hit[1])
    return out


def render(rows: list[dict[str, Any]], metrics: list[str], info: dict[str, Any]) -> str:
    """The Markdown report: what was scored, what each column means, the two tables."""
    md = [
        f"# Disentanglement against ground truth ({info['dataset']})",
        "",
        (
            "**Ground truth of a photo shop**: colour and shape are each photo's own labels "
            "(baseColour and articleType, grouped; `factors.npz` of the prepared dataset), "
            "the other factors the shop's generating factors; the users are synthetic."
            if info["dataset"] in PHOTO
            else "**Synthetic ground truth**: the factors are the synthetic shop's generating "
            "factors (`factors.npz` of the prepared dataset), known exactly only because the "
            "data is synthetic; these are illustrations, not claims about real products."
        ),
        "",
        f"Codes: each run's deterministic item representation r (posterior means) of "
        f"{info['n_items']} item(s); factors: {', '.join(info['factors'])}. Mean ± std over "
        f"seeds (runs from {info['source']}); metric split seed {info['seed']} (80 % of the "
        "items to fit the probes, 20 % to score them).",
        "",
        "Columns:",
        "",
        "- **DCI D / C** (Eastwood & Williams 2018, as in disentanglement_lib): from an "
        "importance matrix R (code dims x factors) of per-factor L1-penalised multinomial "
        "logistic regressions; D = importance-weighted mean over dims of 1 - entropy of a "
        "dim's importance across factors (1: each dim serves one factor); C = the same per "
        "factor across dims (1: each factor lives in one dim). Both in [0, 1].",
        "- **DCI I (test)**: those classifiers' mean held-out accuracy over factors "
        "(informativeness; the CSV has the training accuracy too).",
        "- **MIG** (Chen et al. 2018): per factor, the gap in mutual information between the "
        "two most informative dims (20-bin histograms), divided by the factor's entropy; "
        "mean over factors, in [0, 1].",
        "- **probe own**: mean over named slots of the held-out accuracy of a logistic "
        "probe predicting the slot's own factor from the slot's columns of r; **probe best "
        "other**: the best accuracy any other single slot (black box included) reaches on "
        "that factor; **probe margin** = own - best other; **slots won**: the fraction of "
        "slots whose own probe beats every other slot.",
        "",
        "| model | seeds | " + " | ".join(h for _, h in SUMMARY) + " |",
        "|---|---|" + "---|" * len(SUMMARY),
    ]
    for r in rows:
        md.append(
            f"| {r['label']} | {r['seeds']} | " + " | ".join(_cell(r, m) for m, _ in SUMMARY) + " |"
        )
    slots = slot_names(metrics)
    if slots:
        md += [
            "",
            "## Slot probe per slot",
            "",
            "Held-out accuracy of the slot's own columns on its factor / the best other "
            "single slot (mean over seeds); chance = the majority class's rate.",
            "",
            "| model | " + " | ".join(slots) + " |",
            "|---|" + "---|" * len(slots),
        ]
        for r in rows:
            cells = []
            for s in slots:
                own, other = r.get(f"probe_{s}_accuracy_mean"), r.get(f"probe_{s}_best_other_mean")
                cells.append(
                    "-"
                    if own is None
                    else f"{own:.3f} / " + ("-" if other is None else f"{other:.3f}")
                )
            md.append(f"| {r['label']} | " + " | ".join(cells) + " |")
        chance = [
            next((r[f"probe_{s}_chance_mean"] for r in rows if f"probe_{s}_chance_mean" in r), None)
            for s in slots
        ]
        md.append(
            "| chance | " + " | ".join("-" if c is None else f"{c:.3f}" for c in chance) + " |"
        )
    if info["skipped"]:
        by_reason: dict[str, list[str]] = {}
        for name, why in info["skipped"].items():
            by_reason.setdefault(why, []).append(name)
        md += ["", "Not scored:", ""]
        md += [f"- {why}: {', '.join(names)}" for why, names in by_reason.items()]
    return "\n".join(md) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help="dataset name (results/<dataset>/), default synthetic-small",
    )
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument(
        "--runs-dir", type=Path, default=None, help="run folders (default results/<dataset>/runs)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="prepared dataset (default: the folder each run recorded)",
    )
    p.add_argument(
        "--max-items", type=int, default=None, help="score a seeded sample of N items (default all)"
    )
    p.add_argument(
        "--factors",
        default=None,
        help="comma-separated ground-truth factors (default every non-nuisance one)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the probes' train/test split")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    return p.parse_args(argv)


def _short_name(dataset: str) -> str:
    return dataset if not Path(dataset).is_dir() else dataset_name(dataset)


def score_all(
    args: argparse.Namespace,
) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, Any], str]:
    """Score every run: (per-run scores, skipped run -> reason, info, short dataset name)."""
    short = _short_name(args.dataset)
    runs_dir = args.runs_dir or args.results / short / "runs"
    names, source = find_runs(args.results, short, runs_dir)
    factor_names = args.factors.split(",") if args.factors else None
    scores: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        run_dir = runs_dir / name
        if not (run_dir / "test.json").is_file() or not (run_dir / "best.pt").is_file():
            skipped[name] = f"not a finished run ({run_dir} has no test.json/best.pt)"
            continue
        t0 = time.perf_counter()
        res = score_run(run_dir, args.data, factor_names, args.max_items, args.seed)
        if isinstance(res, str):
            skipped[name] = res
            continue
        scores[name] = res
        d = res["dci"]
        print(
            f"{name}: D {d['disentanglement']:.3f} C {d['completeness']:.3f} "
            f"I {d['informativeness_test']:.3f} MIG {res['mig']['mig']:.3f} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    if not scores:
        raise BenchmarkError(
            f"no finished representation-model run to score for {short!r} (looked in {source}"
            f"{'; skipped ' + ', '.join(sorted(skipped)) if skipped else ''}): "
            "run nox -s reproduce-table2 first"
        )
    first = next(iter(scores.values()))
    info = {
        "dataset": short,
        "source": source,
        "data": first["data"],
        "seed": args.seed,
        "n_items": first["n_items"],
        "factors": first["factors"],
        "skipped": skipped,
    }
    return scores, skipped, info, short


def raw_inputs(ds: Any, items: np.ndarray) -> dict[str, np.ndarray]:
    """The items' raw inputs as features: every pixel value (items with an image), and the
    sublinear TF-IDF of the item text's tokens."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    out: dict[str, np.ndarray] = {}
    if bool(np.asarray(ds.image_mask).any()):
        out["pixels"] = np.asarray(ds.images)[items].reshape(len(items), -1) / 255.0
    tokens = np.asarray(ds.text["tokens"])[items]
    rows = np.repeat(np.arange(len(items)), tokens.shape[1])
    real = tokens.ravel() != 0  # 0 pads
    counts = sparse.csr_matrix(
        (np.ones(int(real.sum())), (rows[real], tokens.ravel()[real])),
        shape=(len(items), int(tokens.max()) + 1),
    )
    out["text_tfidf"] = TfidfTransformer(sublinear_tf=True).fit_transform(counts).toarray()
    return out


def ceiling(
    data: Path | None,
    first_run: Path,
    factor_names: list[str] | None,
    max_items: int | None,
    seed: int,
) -> list[dict[str, Any]]:
    """:func:`mdr.explain.disentanglement.input_probe` on the runs' dataset."""
    from mdr.data.dataset import ProcessedDataset
    from mdr.explain.disentanglement import input_probe
    from mdr.training.runs import RunFolder

    ds = ProcessedDataset.open(data or RunFolder(first_run).read_config()[1]["data"])
    truth = ground_truth(ds, factor_names)
    items = item_subset(ds.n_items, max_items, seed)
    if bool(np.asarray(ds.image_mask).any()):
        items = items[np.asarray(ds.image_mask, bool)[items]]
    return input_probe(raw_inputs(ds, items), {f: y[items] for f, y in truth.items()}, seed)


INPUT_COLUMNS = ["input", "factor", "accuracy", "chance"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    scores, skipped, info, short = score_all(args)
    per_run = {name: run_summary(s) for name, s in scores.items()}
    rows, metrics = aggregate(per_run)
    columns = ["model", "label", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    md = render(rows, metrics, info)
    write_result(
        short,
        "disentanglement",
        to_csv(rows, columns),
        md,
        results_dir=args.results,
        data=info["data"],
        source=info["source"],
        factors=info["factors"],
        n_items=info["n_items"],
        max_items=args.max_items,
        split_seed=args.seed,
        importance="l1_logistic",
        skipped=skipped,
        runs={
            name: {
                **per_run[name],
                "slot_probe": s["slot_probe"],
                "constant_factors_dropped": s["constant_factors_dropped"],
                "best_epoch": s["best_epoch"],
            }
            for name, s in scores.items()
        },
        wall_time_s=round(time.perf_counter() - t0, 1),
    )
    first = args.runs_dir or args.results / short / "runs"
    probe = ceiling(
        args.data,
        first / next(iter(scores)),
        args.factors.split(",") if args.factors else None,
        args.max_items,
        args.seed,
    )
    probe_md = [
        "# The ceiling: factors read from the raw inputs (" + short + ")",
        "",
        "The slot probe's held-out accuracy with the same L2 logistic probe and split "
        "on the items' raw inputs: every pixel value, and the sublinear TF-IDF of the "
        "item text. A slot near chance on a factor the inputs carry lost it; one near "
        "chance on a factor the inputs do not carry had nothing to find.",
        "",
        to_markdown(probe, INPUT_COLUMNS),
    ]
    write_result(
        short,
        "input_probe",
        to_csv(probe, INPUT_COLUMNS),
        "\n".join(probe_md) + "\n",
        results_dir=args.results,
        data=info["data"],
        split_seed=args.seed,
        max_items=args.max_items,
    )
    print(md)
    print("\n".join(probe_md))
    return 0


if __name__ == "__main__":
    run_script("disentanglement", main)
