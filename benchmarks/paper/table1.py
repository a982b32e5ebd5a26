"""Table 1: dataset statistics, beside the paper's.

    python -m benchmarks.table1 [--dataset NAME_OR_PROC ...] [--results DIR]

Default: the embedded ``synthetic-small`` shop (generated and prepared on first
use). ``--dataset cloth toys office`` downloads and prepares the Amazon 2014
categories, and must then reproduce the paper's users, items, behaviours and
sparsity exactly. Output: ``results/<dataset>/table1.csv`` and ``.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import (
    PAPER_NAME,
    REPORTED,
    RESULTS,
    read_csv,
    run_script,
    to_csv,
    to_markdown,
    write_result,
)
from mdr.argtypes import Parser
from mdr.data.catalog import DEFAULT_DATASET, dataset_name, resolve
from mdr.data.dataset import ProcessedDataset

COLUMNS = ["source", "dataset", "users", "items", "categories", "behaviors", "sparsity_percent"]


def table1_rows(ds: ProcessedDataset, short_name: str) -> list[dict]:
    """Our row, plus the paper's row for the same dataset when there is one."""
    stats = ds.stats()
    ours = {
        "source": "reproduced",
        **stats,
        "dataset": short_name,
        "sparsity_percent": round(stats["sparsity_percent"], 3),
    }
    rows = [ours]
    paper = PAPER_NAME.get(short_name)
    for r in read_csv(REPORTED / "table1.csv"):
        if r["dataset"] == paper:
            rows.append({"source": "paper", **r})
    return rows


def markdown(rows: list[dict], short_name: str, skips: dict, synthetic: bool) -> str:
    md = [f"# Table 1: dataset statistics ({short_name})", ""]
    if short_name not in PAPER_NAME:
        md += (
            [
                "Synthetic data: the paper's datasets are shown for scale only; the embedded",
                "shop has no counterpart in the paper.",
                "",
            ]
            if synthetic
            else [
                "Not one of the paper's categories: the paper's datasets are shown for scale",
                "only.",
                "",
            ]
        )
        paper_rows = [{"source": "paper", **r} for r in read_csv(REPORTED / "table1.csv")]
        rows = rows + paper_rows
    md.append(
        to_markdown(
            rows,
            COLUMNS,
            [
                "source",
                "dataset",
                "users",
                "items (goods)",
                "categories",
                "behaviors",
                "sparsity (%)",
            ],
        )
    )
    if len(rows) == 2 and rows[1]["source"] == "paper":
        same = all(str(rows[0][k]) == str(rows[1][k]) for k in ("users", "items", "behaviors"))
        md.append(
            f"\nMatches the paper's users/items/behaviours exactly: {'yes' if same else 'NO'}\n"
        )
    if skips:
        md.append(
            "\nSkipped while preparing: " + ", ".join(f"{k}: {v}" for k, v in skips.items()) + "\n"
        )
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        nargs="+",
        default=[DEFAULT_DATASET],
        help="catalog names (synthetic-small, cloth, ...) or prepared folders",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="results folder")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    for spec in a.dataset:
        t0 = time.perf_counter()
        proc = resolve(spec, progress=not a.quiet)
        short = dataset_name(spec)
        ds = ProcessedDataset.open(proc)
        rows = table1_rows(ds, short)
        skips = rows[0].pop("skips", {})
        md = markdown(rows, short, skips, ds.is_synthetic)
        folder = write_result(
            short,
            "table1",
            to_csv(rows, COLUMNS),
            md,
            results_dir=a.results,
            data=str(proc),
            wall_time_s=round(time.perf_counter() - t0, 2),
        )
        print(md)
        print(f"wrote {folder}/table1.csv and .md")
    return 0


if __name__ == "__main__":
    run_script("table1", main)
