"""CI smoke of the table scripts: Tables 1, 2 and 3 on the tiny shop, one seed, a short epoch.

Checks the outputs' structure and that every reproduced cell is a real measured number
(finite, in range), that finished runs are reused, and that the reported numbers sit beside.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import pytest

from tests.helpers import run_benchmark

# --quick (1 seed, 1 epoch, no full ranking) on the tiny shop, 2 steps an epoch
SMOKE = ["--dataset", "synthetic-tiny", "--quick", "--max-steps", "2", "--jobs", "2", "-q"]


def script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    res = run_benchmark(name, *args, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_table1_on_the_tiny_shop(tmp_path: Path, cli_env: dict[str, str]) -> None:
    script("table1", "--dataset", "synthetic-tiny", "--results", str(tmp_path), env=cli_env)
    out = tmp_path / "synthetic-tiny"
    (ours,) = rows(out / "table1.csv")
    assert ours["source"] == "reproduced"
    assert (ours["users"], ours["items"], ours["behaviors"]) == ("150", "100", "1050")
    assert float(ours["sparsity_percent"]) == pytest.approx(7.0)
    md = (out / "table1.md").read_text()
    assert "| paper | Cloth | 39387 | 23033 | 484 | 278677 | 0.031 |" in md
    manifest = json.loads((out / "table1.manifest.json").read_text())
    assert manifest["dataset"] == "synthetic-tiny" and "versions" in manifest
    assert "Synthetic data" in md


def test_table1_of_real_data_outside_the_paper_is_not_called_synthetic() -> None:
    from benchmarks.paper.table1 import markdown

    ours = [
        {
            "source": "reproduced",
            "dataset": "magazine",
            "users": 326,
            "items": 138,
            "categories": 61,
            "behaviors": 2236,
            "sparsity_percent": 4.97,
        }
    ]
    md = markdown(ours, "magazine", {}, synthetic=False)
    assert "Synthetic" not in md and "Not one of the paper's categories" in md
    assert "| paper | Office | 4905 | 2420 | 279 | 53258 | 0.449 |" in md


@pytest.fixture(scope="module")
def table_results(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    import os

    env = {**os.environ, "MDR_DATA": str(data_root), "PYTHONHASHSEED": "0"}
    results = tmp_path_factory.mktemp("results")
    script("table2", *SMOKE, "--results", str(results), env=env)
    third = script("table3", *SMOKE, "--results", str(results), env=env)
    assert "1 run(s) reused, 6 to run" in third.stdout  # MDR's run is shared with Table 2
    return results / "synthetic-tiny"


def test_table2_every_cell_is_measured(table_results: Path) -> None:
    table = rows(table_results / "table2_quick.csv")
    assert [r["model"] for r in table] == [
        "wide_deep",
        "pnn",
        "deepfm",
        "beta_vae",
        "abae",
        "din_pp",
        "din",
        "mdr",
    ]
    for r in table:
        for m in ("gauc", "auc", "ndcg@10", "hr@10"):
            value = float(r[f"{m}_mean"])
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (r["model"], m)
        # one epoch of a 1-epoch budget: the cap ended every run, and the table says so
        assert r["seeds"] == "1" and r["best_epochs"] == "1" and r["epochs_run"] == "1*"
        assert r["capped"] == "1" and r["inputs"]
        assert float(r["rank"]) >= 1
    paper = {r["model"]: float(r["paper_rank"]) for r in table if r["paper_rank"]}
    assert paper["mdr"] == 1.0 and set(paper) == set(m for m in paper if m != "din")
    md = (table_results / "table2_quick.md").read_text()
    assert "ORDERING" in md and "MDR" in md and "DeepFM" in md
    assert "rank (paper, mean)" in md and "Kendall's tau" in md
    tex = (table_results / "table2_quick.tex").read_text()
    assert tex.count("\\textbf{") == 2 and "\\begin{tabular}" in tex
    manifest = json.loads((table_results / "table2_quick.manifest.json").read_text())
    assert len(manifest["runs"]) == 8 and manifest["git_commit"] is not None
    assert manifest["rank_agreement"]["n"] == 7


def test_table3_pairs_mdr_with_its_ablation(table_results: Path) -> None:
    table = {r["model"]: r for r in rows(table_results / "table3_quick.csv")}
    assert set(table) == {"mdr", "mdr_wo_ic"}
    ablations = [r["model"] for r in rows(table_results / "ablations_quick.csv")]
    assert ablations == [
        "mdr",
        "mdr_wo_ws",
        "mdr_no_fusion",
        "mdr_image_only",
        "mdr_text_only",
        "mdr_dense_aspects",
    ]
    md = (table_results / "ablations_quick.md").read_text()
    assert (
        md.count("| MDR vs ") == 5 * 2
    )  # each ablation on GAUC and NDCG@10 (--quick ranks no items)
    comparisons = rows(table_results / "ablations_quick.comparisons.csv")
    assert {r["b"] for r in comparisons} == set(ablations[1:])
    assert all(
        r["ci_low"] and float(r["ci_low"]) <= float(r["ci_high"])
        for r in comparisons
        if r["metric"] != "full_ndcg@10"
    )
    for r in table.values():
        assert math.isfinite(float(r["gauc_mean"]))
    run_cfgs = sorted((table_results / "runs").glob("mdr_wo_ic-*/config.yaml"))
    assert run_cfgs and "eta: 0.0" in run_cfgs[0].read_text()


def test_finished_runs_are_reused(table_results: Path, data_root: Path) -> None:
    import os

    env = {**os.environ, "MDR_DATA": str(data_root)}
    again = script("table3", *SMOKE, "--results", str(table_results.parent), env=env)
    assert "7 run(s) reused, 0 to run" in again.stdout


def test_the_quick_table_is_the_same_bytes_twice(
    table_results: Path, data_root: Path, tmp_path: Path
) -> None:
    """The same code, data and seeds write the same table: nothing depends on timing, the
    order the runs finish in, or the machine's number of cores."""
    import os

    env = {**os.environ, "MDR_DATA": str(data_root), "PYTHONHASHSEED": "0"}
    script("table2", *SMOKE, "--results", str(tmp_path), env=env)
    again = tmp_path / "synthetic-tiny" / "table2_quick.csv"
    assert again.read_bytes() == (table_results / "table2_quick.csv").read_bytes()


def test_tag_and_quick_suffixes_never_overwrite_the_default_table() -> None:
    from benchmarks.paper.tables import parse_options

    assert parse_options([], "doc").suffix == ""
    equal = parse_options(["--epochs", "6", "--tag", "e6"], "doc")
    assert (equal.suffix, equal.epochs) == ("_e6", 6)
    assert parse_options(["--quick", "--tag", "x"], "doc").suffix == "_quick_x"
    budget = parse_options(
        ["--models", "pnn", "mdr", "--epochs", "20", "--patience", "3", "--tag", "e20"], "doc"
    )
    assert (budget.models, budget.patience, budget.suffix) == (("pnn", "mdr"), 3, "_e20")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--seeds", "0"], "argument --seeds: must be from 1 to 100, got 0"),
        (["--jobs", "-1"], "argument --jobs: must be from 1 to 256, got -1"),
        (["--set", "train.lr"], "--set 'train.lr': expected KEY=VALUE"),
        (["--models", "transformer"], "--models ['transformer']: not in table2"),
        (["--dataset", "nowhere"], "unknown dataset 'nowhere'"),
    ],
)
def test_a_bad_table_argument_is_one_line(
    args: list[str], says: str, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    env = {**cli_env, "MDR_DATA": str(tmp_path / "data")}
    res = run_benchmark(
        "table2", *args, "--results", str(tmp_path / "results"), env=env, timeout=300
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("table2") and says in res.stderr, res.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()
