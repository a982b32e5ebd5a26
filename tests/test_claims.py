"""The claims page (benchmarks.claims): verdicts from comparison rows, known answers."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import to_csv
from benchmarks.paper import claims
from benchmarks.paper.tables import COMPARISON_COLUMNS


def row(b: str, diff: float, p: float, low: float, high: float, metric: str = "gauc") -> dict:
    return {
        "a": "mdr",
        "b": b,
        "metric": metric,
        "seeds": "5",
        "mean_diff": str(diff),
        "p_t": str(p),
        "p_t_holm": str(p),
        "p_wilcoxon": "0.06",
        "ci_low": str(low),
        "ci_high": str(high),
        "users": "3000",
        "detectable_80": "0.01",
    }


def test_a_comparison_decides_only_when_seeds_and_users_agree() -> None:
    assert claims.decision(row("pnn", 0.02, 0.01, 0.01, 0.03)) == 1
    assert claims.decision(row("pnn", -0.02, 0.01, -0.03, -0.01)) == -1
    assert claims.decision(row("pnn", 0.02, 0.20, 0.01, 0.03)) == 0  # seeds undecided
    assert claims.decision(row("pnn", 0.02, 0.01, -0.01, 0.03)) == 0  # users undecided


def test_a_claim_needs_every_comparison() -> None:
    good = [row("pnn", 0.02, 0.01, 0.01, 0.03), row("deepfm", 0.03, 0.001, 0.02, 0.04)]
    assert claims.combine(good, "x").word == "supported"
    one_open = [*good, row("din", 0.001, 0.5, -0.01, 0.01)]
    verdict = claims.combine(one_open, "x")
    assert verdict.word == "inconclusive" and "undecided vs DIN (ids)" in verdict.evidence
    assert "detectable 0.0100" in verdict.evidence
    against = [*good, row("din", -0.02, 0.01, -0.03, -0.01)]
    assert claims.combine(against, "x").word == "contradicted"
    assert claims.combine([], "x").word == "not testable"
    # an ablation that changes nothing in this data (w/o IC without images) tests nothing
    same = claims.combine([{**row("mdr_wo_ic", 0.0, 1.0, 0.0, 0.0), "detectable_80": "0.0"}], "x")
    assert same.word == "not testable" and "MDR and w/o IC are the same model" in same.evidence


def test_the_page_is_generated_from_the_results_folders(tmp_path: Path) -> None:
    shop = tmp_path / "synthetic-small"
    shop.mkdir()
    rows = [row(b, 0.02, 0.01, 0.01, 0.03) for b in claims.BASELINES]
    rows += [row(b, 0.02, 0.01, 0.01, 0.03, "ndcg@10") for b in claims.BASELINES]
    (shop / "table2_tuned.comparisons.csv").write_text(to_csv(rows, COMPARISON_COLUMNS))
    (shop / "table3.comparisons.csv").write_text(
        to_csv([row("mdr_wo_ic", 0.004, 0.2, -0.001, 0.009)], COMPARISON_COLUMNS)
    )
    assert claims.main(["--results", str(tmp_path), "--datasets", "synthetic-small"]) == 0
    md = (tmp_path / "claims.md").read_text()
    assert "| synthetic-small | **supported** |" in md  # C1 from the tuned table
    assert "table2_tuned (tuned)" in md and "table3 (one rule)" in md
    assert "| synthetic-small | **inconclusive** | undecided vs w/o IC" in md
    assert "Cloth 0.8070 vs DIN++ 0.7938" in md  # the paper's numbers beside
    assert "**not testable**" in md  # no ablations, no figures here
