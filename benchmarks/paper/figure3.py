"""Figure 3: the AUC of every model, per validation epoch and on the test set.

    python -m benchmarks.figure3 [--dataset NAME ...] [--manifest table2] [--results DIR]

For each dataset, the runs of its Table 2 (``results/<dataset>/table2.manifest.json``,
``"runs"``: name -> config; folders ``results/<dataset>/runs/<name>/``) are read back,
never retrained:

- (a) validation GAUC per epoch from each run's ``metrics.jsonl``: mean over seeds,
  band = std over seeds (where at least 2 seeds reached that epoch; early stopping
  ends runs at different epochs, so the CSV gives n per epoch);
- (b) the final test GAUC (``test.json``, read at the best validation epoch) with
  error bars = std over seeds (ddof=1, as in the tables).

AUC is DIN's user-weighted AUC, our GAUC (the paper's "AUC"). The paper draws
Cloth and Toys; by default every dataset under ``results/`` whose Table 2 runs
exist gets its figure. Output per dataset: ``results/<dataset>/figures/figure3.png``,
``figure3.csv`` (the plotted numbers) and ``figure3.manifest.json``; with ``--manifest
table2_tuned`` (the tuned runs) ``figure3_tuned.*`` beside them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.aggregate import RUN_NAME, manifest_runs, mean_std, read_test
from benchmarks.common import RESULTS, BenchmarkError, run_script, to_csv
from benchmarks.plotting import model_colour, model_label, new_figure, save_figure, style
from mdr import io as mio
from mdr.argtypes import Parser
from mdr.data.parse import DataError
from mdr.provenance import manifest

CSV_COLUMNS = ("dataset", "model", "label", "split", "epoch", "gauc_mean", "gauc_std", "n")


@dataclass(frozen=True)
class RunCurve:
    """What Figure 3 needs of one finished run."""

    name: str
    model: str
    seed: int
    epochs: tuple[int, ...]  # validation epochs, ascending
    valid_gauc: tuple[float, ...]  # (len(epochs),)
    test_gauc: float


# --------------------------------------------------------------------------- reading runs


def _valid_gauc(record: dict, where: str) -> float:
    """The validation GAUC (``"valid/gauc"``) of one metrics.jsonl line."""
    if "valid/gauc" not in record:
        raise DataError(f"{where}: no validation GAUC ('valid/gauc')")
    return float(record["valid/gauc"])


def read_valid_curve(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Epochs and validation GAUC of a ``metrics.jsonl`` (a repeated epoch: the last wins)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    by_epoch: dict[int, float] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg})") from e
        if not isinstance(record, dict) or "epoch" not in record:
            raise DataError(f"{where}: expected an object with an 'epoch'")
        by_epoch[int(record["epoch"])] = _valid_gauc(record, where)
    if not by_epoch:
        raise DataError(f"{path}: no epochs")
    epochs = tuple(sorted(by_epoch))
    return epochs, tuple(by_epoch[e] for e in epochs)


def read_run(run_dir: Path) -> RunCurve:
    """One finished run: its model and seed (``test.json``, else the folder name), curve, test
    GAUC."""
    if not (run_dir / "test.json").is_file():
        raise BenchmarkError(f"{run_dir}: no test.json (the run is not finished)")
    test = read_test(run_dir)
    m = RUN_NAME.match(run_dir.name)
    model = test.get("model") or (m.group("model") if m else None)
    seed = test.get("seed", int(m.group("seed")) if m else None)
    if model is None or seed is None or "gauc" not in test:
        raise DataError(
            f"{run_dir / 'test.json'}: needs 'model', 'seed' and 'gauc' "
            "(or a folder named MODEL-HASH-sSEED)"
        )
    epochs, valid = read_valid_curve(run_dir / "metrics.jsonl")
    return RunCurve(run_dir.name, str(model), int(seed), epochs, valid, float(test["gauc"]))


def load_curves(results: Path, dataset: str, name: str = "table2") -> list[RunCurve]:
    """Every finished run of a dataset's table; a clear error when none exists."""
    names, folder = manifest_runs(results, dataset, name)
    present = [folder / n for n in names if (folder / n / "test.json").is_file()]
    if not present:
        raise BenchmarkError(
            f"{folder}: none of the {len(names)} runs of {name}.manifest.json "
            f"is finished (e.g. {names[0]}); run benchmarks/{name}.py first"
        )
    missing = len(names) - len(present)
    if missing:
        print(f"{dataset}: {missing} of {len(names)} runs unfinished, drawn without them")
    return [read_run(p) for p in present]


def datasets_with_runs(results: Path, name: str = "table2") -> list[str]:
    """Datasets under ``results/`` with a ``<name>.manifest.json`` whose runs exist."""
    out = []
    for path in sorted(results.glob(f"*/{name}.manifest.json")):
        try:
            names, folder = manifest_runs(results, path.parent.name, name)
        except (BenchmarkError, DataError):
            continue
        if any((folder / n / "test.json").is_file() for n in names):
            out.append(path.parent.name)
    return out


# --------------------------------------------------------------------------- aggregation


def model_order(curves: Sequence[RunCurve]) -> list[str]:
    """Models in the order their runs are listed (the table's order)."""
    return list(dict.fromkeys(c.model for c in curves))


def summarise(curves: Sequence[RunCurve], dataset: str) -> list[dict]:
    """The plotted numbers: per model, the validation curve (mean, std, n per epoch) and the
    test GAUC (mean, std, n over seeds)."""
    rows = []
    for model in model_order(curves):
        runs = [c for c in curves if c.model == model]
        base = {"dataset": dataset, "model": model, "label": model_label(model)}
        epochs = sorted({e for c in runs for e in c.epochs})
        for e in epochs:
            vals = [v for c in runs for ce, v in zip(c.epochs, c.valid_gauc) if ce == e]
            mean, std = mean_std(vals)
            rows.append(
                {
                    **base,
                    "split": "valid",
                    "epoch": e,
                    "gauc_mean": mean,
                    "gauc_std": std,
                    "n": len(vals),
                }
            )
        mean, std = mean_std([c.test_gauc for c in runs])
        rows.append(
            {
                **base,
                "split": "test",
                "epoch": "",
                "gauc_mean": mean,
                "gauc_std": std,
                "n": len(runs),
            }
        )
    return rows


# --------------------------------------------------------------------------- drawing


def draw(rows: Sequence[dict], dataset: str, path: Path) -> Path:
    """(a) validation GAUC per epoch, mean +- std band; (b) test GAUC with error bars."""
    with style():
        fig, (ax_a, ax_b) = new_figure(1, 2, size=(9.0, 3.5), width_ratios=(1.6, 1.0))
        models = list(dict.fromkeys(r["model"] for r in rows))
        for model in models:
            valid = [r for r in rows if r["model"] == model and r["split"] == "valid"]
            x = np.array([r["epoch"] for r in valid])
            y = np.array([r["gauc_mean"] for r in valid])
            s = np.array([r["gauc_std"] if r["n"] > 1 else 0.0 for r in valid])
            colour = model_colour(model)
            ax_a.plot(
                x,
                y,
                marker="o",
                color=colour,
                label=model_label(model),
                lw=2.4 if model == "mdr" else 1.4,
                zorder=3 if model == "mdr" else 2,
            )
            ax_a.fill_between(x, y - s, y + s, color=colour, alpha=0.15, lw=0)
        ax_a.set(
            xlabel="epoch",
            ylabel="validation AUC (GAUC)",
            title=f"(a) validation AUC per epoch - {dataset}",
        )
        ax_a.xaxis.get_major_locator().set_params(integer=True)
        ax_a.legend(loc="lower right", ncol=2, frameon=False)
        ax_a.annotate(
            "band: ± std over the seeds that reached the epoch (n in figure3.csv)",
            (0.0, -0.2),
            xycoords="axes fraction",
            fontsize=7,
            color="0.4",
        )

        test = [r for r in rows if r["split"] == "test"]
        pos = np.arange(len(test))
        for p, r in zip(pos, test):  # points, not bars: the axis does not start at 0
            colour = model_colour(r["model"])
            ax_b.errorbar(
                p,
                r["gauc_mean"],
                yerr=r["gauc_std"],
                fmt="o",
                color=colour,
                ms=7 if r["model"] == "mdr" else 5,
                capsize=4,
                elinewidth=1.4,
            )
            ax_b.annotate(
                f"{r['gauc_mean']:.3f}",
                (p, r["gauc_mean"]),
                xytext=(7, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        lo = min(r["gauc_mean"] - r["gauc_std"] for r in test)
        hi = max(r["gauc_mean"] + r["gauc_std"] for r in test)
        pad = max(0.01, 0.15 * (hi - lo))
        ax_b.set_ylim(max(0.0, lo - pad), min(1.0, hi + 2 * pad))
        ax_b.set_xticks(pos, [r["label"] for r in test], rotation=40, ha="right")
        n_seeds = sorted({r["n"] for r in test})
        seeds = "/".join(map(str, n_seeds))
        ax_b.set(ylabel="test AUC (GAUC)", title=f"(b) test AUC, mean ± std over {seeds} seed(s)")
        ax_b.set_xlim(-0.6, len(test) - 0.2)
        ax_b.grid(axis="x", visible=False)
        return save_figure(fig, path)


# --------------------------------------------------------------------------- main


def figure_stem(manifest_name: str) -> str:
    """``figure3`` for Table 2's runs, ``figure3_<tag>`` for ``table2_<tag>``'s (the tuned
    runs: ``figure3_tuned``), so that another table's figure never replaces the default."""
    tag = manifest_name.removeprefix("table2").lstrip("_")
    return f"figure3_{tag}" if tag else "figure3"


def figure3(results: Path, dataset: str, manifest_name: str = "table2") -> Path:
    """Write ``results/<dataset>/figures/<stem>.{png,csv,manifest.json}`` (stem:
    :func:`figure_stem`); returns the PNG."""
    curves = load_curves(results, dataset, manifest_name)
    rows = summarise(curves, dataset)
    out = results / dataset / "figures"
    stem = figure_stem(manifest_name)
    mio.write_text(out / f"{stem}.csv", to_csv(rows, CSV_COLUMNS))
    png = draw(rows, dataset, out / f"{stem}.png")
    mio.write_json(
        out / f"{stem}.manifest.json",
        manifest(
            dataset=dataset,
            source=f"{manifest_name}.manifest.json",
            runs=[c.name for c in curves],
            metric="gauc",
        ),
    )
    return png


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        action="append",
        default=None,
        help="a dataset folder under --results (repeatable; default: every dataset "
        "whose table runs exist)",
    )
    p.add_argument(
        "--manifest",
        default="table2",
        help="whose runs to draw: <results>/<dataset>/<NAME>.manifest.json (default table2)",
    )
    p.add_argument("--results", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datasets = args.dataset or datasets_with_runs(args.results, args.manifest)
    if not datasets:
        raise BenchmarkError(
            f"{args.results}: no dataset has a {args.manifest}.manifest.json "
            f"with finished runs; run benchmarks/{args.manifest}.py first"
        )
    for dataset in datasets:
        png = figure3(args.results, dataset, args.manifest)
        print(f"wrote {png} ({png.stat().st_size // 1024} KB) and {png.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    run_script("figure3", main)
