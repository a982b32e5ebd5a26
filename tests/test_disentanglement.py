"""Disentanglement scores (mdr.explain.disentanglement) and benchmarks/disentanglement.py.

Known answers: hand-computed importance matrices and mutual information; a code equal to
the factors scores DCI disentanglement/completeness and MIG near 1, a random code near 0;
a slot probe on swapped slot columns shows the wrong slot winning. End to end: two tiny
runs (MDR and beta-VAE) scored by the benchmark script into a CSV of finite, in-range cells.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mdr.explain.disentanglement import (
    _compute_dci,
    _compute_mig,
    _discretise,
    _mutual_info,
    dci,
    mig,
    score_codes,
    slot_probe,
)

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"

KS = (10, 4, 8, 4)  # classes of each synthetic factor


def factors(n: int = 1200, seed: int = 0) -> np.ndarray:
    """Independent uniform factors, int (n, 4)."""
    g = np.random.default_rng(seed)
    return np.stack([g.integers(0, k, n) for k in KS], axis=1)


# --------------------------------------------------------------------------- pure cores


def test_dci_core_hand_computed() -> None:
    assert _compute_dci(np.eye(3)) == pytest.approx((1.0, 1.0))
    assert _compute_dci(np.ones((3, 3))) == pytest.approx((0.0, 0.0), abs=1e-12)
    # one code matters equally to both factors: not disentangled (H_2(.5, .5) = 1), but
    # each factor lives in a single code: complete
    assert _compute_dci(np.array([[1.0, 1.0], [0.0, 0.0]])) == pytest.approx((0.0, 1.0))
    # importance all zero: disentanglement_lib's uniform fallback
    assert _compute_dci(np.zeros((2, 2))) == pytest.approx((0.0, 0.0), abs=1e-12)
    # a code with 3/4 of the weight on factor 0: 1 - H_2(.75, .25) = 0.18872...
    d, _ = _compute_dci(np.array([[3.0, 1.0], [0.0, 0.0]]))
    assert d == pytest.approx(1 + 0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))


def test_mutual_information_and_mig_core_hand_computed() -> None:
    a = np.array([0, 0, 1, 1])
    assert _mutual_info(a, a) == pytest.approx(math.log(2))
    assert _mutual_info(a, np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    # both factors equal code 0, code 1 is independent of them: each gap is
    # (log 2 - 0) / log 2 = 1
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    ys = np.array([[0, 0], [0, 0], [1, 1], [1, 1]])
    out = _compute_mig(codes, ys)
    assert out["mig_per_factor"] == pytest.approx([1.0, 1.0])
    ys = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])  # factor 1 = XOR: no single code knows it
    out = _compute_mig(codes, ys)
    assert out["mig_per_factor"] == pytest.approx([1.0, 0.0])
    assert out["mig"] == pytest.approx(0.5)
    assert out["entropy"] == pytest.approx([math.log(2)] * 2)


def test_discretise_uses_equal_width_bins_over_the_range() -> None:
    x = np.array([[0.0], [0.49], [0.51], [1.0]])
    assert _discretise(x, 2)[:, 0].tolist() == [1, 1, 2, 2]
    assert len(set(_discretise(np.zeros((3, 1)), 5)[:, 0].tolist())) == 1  # constant: one bin


# --------------------------------------------------------------------------- known answers


def test_identity_code_scores_near_one() -> None:
    y = factors()
    codes = 0.5 * y.astype(float)  # one ordinal dimension per factor
    r = dci(codes, y)
    assert r["disentanglement"] > 0.95 and r["completeness"] > 0.95
    assert r["informativeness_test"] > 0.9  # a linear, L1-penalised probe of ordinal codes
    assert mig(codes, y)["mig"] > 0.95
    imp = np.asarray(r["importance"])
    assert imp.shape == (4, 4) and (np.argmax(imp, axis=0) == np.arange(4)).all()


def test_one_hot_code_is_disentangled_but_not_complete() -> None:
    """One-hot blocks: each column serves one factor (D ~ 1), but each factor is spread
    over its k columns (C well below 1), and no single column carries a whole factor."""
    y = factors()
    codes = np.concatenate([np.eye(k)[y[:, j]] for j, k in enumerate(KS)], axis=1)  # (n, 26)
    r = dci(codes, y)
    assert r["disentanglement"] > 0.95
    assert r["completeness"] < 0.75
    assert r["informativeness_test"] > 0.95


def test_random_code_scores_near_zero() -> None:
    y = factors()
    codes = np.random.default_rng(1).normal(size=(y.shape[0], 12))
    r = dci(codes, y)
    assert r["disentanglement"] < 0.2 and r["completeness"] < 0.2
    assert mig(codes, y)["mig"] < 0.05
    chance = np.mean([np.bincount(y[:, j]).max() / len(y) for j in range(4)])
    assert r["informativeness_test"] < chance + 0.1


def test_gbt_importance_gives_the_same_known_answers() -> None:
    y = factors(200)[:, :2] % 3  # small: GBT fits (classes x 100) trees per factor
    ident = dci(y.astype(float), y, importance="gbt")
    assert ident["disentanglement"] > 0.95 and ident["completeness"] > 0.95
    rand = dci(np.random.default_rng(2).normal(size=(200, 4)), y, importance="gbt")
    assert rand["disentanglement"] < 0.3
    assert ident["importance_method"] == "gbt"


def slot_codes(n: int = 1500) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Slot "colour" (cols 0-1) clusters by colour, slot "shape" (cols 2-3) by shape,
    "blackbox" (cols 4-5) noise."""
    g = np.random.default_rng(3)
    ys = {"colour": g.integers(0, 5, n), "shape": g.integers(0, 4, n)}
    colour = g.normal(size=(5, 2))[ys["colour"]] * 3 + 0.3 * g.normal(size=(n, 2))
    shape = g.normal(size=(4, 2))[ys["shape"]] * 3 + 0.3 * g.normal(size=(n, 2))
    return np.concatenate([colour, shape, g.normal(size=(n, 2))], axis=1), ys


SLOTS = {"colour": [0, 1], "shape": [2, 3], "blackbox": [4, 5]}
SLOT_FACTOR = {"colour": "colour", "shape": "shape"}


def test_slot_probe_own_slot_wins() -> None:
    codes, ys = slot_codes()
    rows = slot_probe(codes, ys, SLOTS, SLOT_FACTOR)
    assert [r["slot"] for r in rows] == ["colour", "shape"]  # blackbox: a competitor only
    for r in rows:
        assert r["wins"] and r["accuracy"] > 0.8
        assert r["margin"] == pytest.approx(r["accuracy"] - r["best_other_accuracy"])
        assert r["best_other_accuracy"] < 0.5 and 0.15 < r["chance"] < 0.45


def test_slot_probe_shows_the_wrong_slot_winning_on_permuted_slots() -> None:
    codes, ys = slot_codes()
    swapped = {"colour": [2, 3], "shape": [0, 1], "blackbox": [4, 5]}
    rows = {r["slot"]: r for r in slot_probe(codes, ys, swapped, SLOT_FACTOR)}
    assert rows["colour"]["best_other_slot"] == "shape" and not rows["colour"]["wins"]
    assert rows["shape"]["best_other_slot"] == "colour" and not rows["shape"]["wins"]
    assert rows["colour"]["accuracy"] < rows["colour"]["chance"] + 0.1
    assert rows["colour"]["margin"] < -0.5


def test_slot_probe_with_a_single_slot_has_no_competitor() -> None:
    codes, ys = slot_codes(300)
    (row,) = slot_probe(codes, ys, {"colour": [0, 1]}, {"colour": "colour"})
    assert row["best_other_slot"] is None and row["margin"] is None and row["wins"]


def test_score_codes_is_deterministic_and_json_able() -> None:
    codes, ys = slot_codes(600)
    a = score_codes(codes, ys, SLOTS, SLOT_FACTOR, seed=5)
    b = score_codes(codes, ys, SLOTS, SLOT_FACTOR, seed=5)
    assert json.dumps(a) == json.dumps(b)  # identical numbers, and plain JSON values
    assert a["factors"] == ["colour", "shape"] and (a["n_items"], a["dims"]) == (600, 6)
    assert set(a) == {"factors", "n_items", "dims", "dci", "mig", "slot_probe"}
    c = score_codes(codes, ys, SLOTS, SLOT_FACTOR, seed=6)  # another split
    assert json.dumps(a["dci"]) != json.dumps(c["dci"])
    assert a["mig"] == c["mig"]  # MIG uses every item: no split


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c, y: (c[:-1], y), "items"),
        (
            lambda c, y: (np.where(np.arange(c.size).reshape(c.shape) == 7, np.nan, c), y),
            "NaN/inf value.*item 3, dim 1",
        ),
        (lambda c, y: (c, np.column_stack([y[:, 0], np.zeros(len(y), int)])), "constant"),
        (lambda c, y: (c, y - 1), "negative"),
        (lambda c, y: (c, y.astype(float)), "integer class indices"),
        (lambda c, y: (c[:, :1], y), "at least 2 code dims"),
        (lambda c, y: (c[:0], y[:0]), "non-empty"),
    ],
)
def test_bad_input_raises_a_clear_value_error(mutate, message) -> None:
    y = factors(40)[:, :2]
    codes, bad_y = mutate(np.random.default_rng(0).normal(size=(40, 2)), y)
    with pytest.raises(ValueError, match=message):
        dci(codes, bad_y)
    with pytest.raises(ValueError, match=message):
        mig(codes, bad_y)


def test_bad_slots_and_options_raise() -> None:
    codes, ys = slot_codes(100)
    with pytest.raises(ValueError, match="outside the code's 6 dims"):
        slot_probe(codes, ys, {"colour": [0, 9]}, {})
    with pytest.raises(ValueError, match="slot_columns lacks"):
        slot_probe(codes, ys, SLOTS, {"size": "colour"})
    with pytest.raises(ValueError, match="factors lacks"):
        slot_probe(codes, ys, SLOTS, {"colour": "hue"})
    with pytest.raises(ValueError, match="non-empty list of ints"):
        slot_probe(codes, ys, {"colour": []}, {})
    with pytest.raises(ValueError, match="importance must be one of"):
        dci(codes, np.column_stack([ys["colour"], ys["shape"]]), importance="forest")
    with pytest.raises(ValueError, match="train_frac"):
        dci(codes, np.column_stack([ys["colour"], ys["shape"]]), train_frac=1.0)
    with pytest.raises(ValueError, match="n_bins"):
        mig(codes, np.column_stack([ys["colour"], ys["shape"]]), n_bins=1)
    with pytest.raises(ValueError, match="has 99 items"):
        score_codes(codes, {"colour": ys["colour"][:99]}, SLOTS, {})


# --------------------------------------------------------------------------- the benchmark


def load_bench():
    """benchmarks/diagnostics/disentanglement.py."""
    from benchmarks.diagnostics import disentanglement

    return disentanglement


@pytest.fixture(scope="module")
def tiny_results(tiny_proc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/synthetic-tiny/ with two finished runs (MDR, beta-VAE) and a Table 2
    manifest that also lists a deepctr and a DIN run (never trained: they are skipped)."""
    from tests.helpers import train_tiny

    results = tmp_path_factory.mktemp("results")
    runs = results / "synthetic-tiny" / "runs"
    names = {"mdr": "mdr-0123456789ab-s0", "beta_vae": "beta_vae-ba9876543210-s0"}
    for variant, name in names.items():
        train_tiny(
            tiny_proc, runs / name, variant=None if variant == "mdr" else variant, epochs=1, steps=4
        )
    listed = [*names.values(), "deepfm-00000000000f-s0", "din-0000000000ff-s0"]
    (results / "synthetic-tiny" / "table2.manifest.json").write_text(
        json.dumps({"dataset": "synthetic-tiny", "runs": {n: "config.yaml" for n in listed}})
    )
    return results


def test_benchmark_scores_the_runs_into_a_csv_of_finite_in_range_numbers(
    tiny_results: Path,
) -> None:
    bench = load_bench()
    args = ["--dataset", "synthetic-tiny", "--results", str(tiny_results), "--threads", "1"]
    assert bench.main(args) == 0
    out = tiny_results / "synthetic-tiny"
    first = (out / "disentanglement.csv").read_text()
    with (out / "disentanglement.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["mdr", "beta_vae"]
    assert all(r["seeds"] == "1" for r in rows)
    for col in (
        "dci_disentanglement",
        "dci_completeness",
        "dci_informativeness_test",
        "mig",
        "probe_accuracy",
        "probe_colour_accuracy",
        "probe_shape_accuracy",
    ):
        assert f"{col}_mean" in rows[0] and f"{col}_std" in rows[0]
    assert rows[0]["probe_material_accuracy_mean"]  # MDR has text slots ...
    assert not rows[1]["probe_material_accuracy_mean"]  # ... beta-VAE (image only) not
    for r in rows:
        for col, cell in r.items():
            if col in ("model", "label", "seeds") or cell == "":
                continue
            v = float(cell)
            assert math.isfinite(v), (r["model"], col)
            lo = -1.0 if "margin" in col else 0.0
            assert lo <= v <= 1.0, (r["model"], col, v)
            if col.endswith("_std"):
                assert v == 0.0  # one seed each
    md = (out / "disentanglement.md").read_text()
    assert "Synthetic ground truth" in md and "| MDR | 1 |" in md
    assert "deepfm-00000000000f-s0" in md and "din-0000000000ff-s0" in md  # said so
    manifest = json.loads((out / "disentanglement.manifest.json").read_text())
    assert manifest["dataset"] == "synthetic-tiny" and "git_commit" in manifest
    assert set(manifest["runs"]) == {"mdr-0123456789ab-s0", "beta_vae-ba9876543210-s0"}
    assert set(manifest["skipped"]) == {"deepfm-00000000000f-s0", "din-0000000000ff-s0"}
    assert "background" not in manifest["factors"]  # nuisance factors are left out
    # the same runs and seed give the same table
    assert bench.main(args) == 0
    assert (out / "disentanglement.csv").read_text() == first
    # a seeded sample of items, two named factors
    assert bench.main([*args, "--max-items", "60", "--factors", "colour,shape"]) == 0
    manifest = json.loads((out / "disentanglement.manifest.json").read_text())
    assert manifest["n_items"] == 60 and manifest["factors"] == ["colour", "shape"]
    with pytest.raises(SystemExit, match="2"):  # an unknown factor: one clear line
        bench.run_script("disentanglement", lambda: bench.main([*args, "--factors", "hue"]))


def test_benchmark_without_runs_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bench = load_bench()
    args = ["--dataset", "synthetic-tiny", "--results", str(tmp_path)]
    with pytest.raises(SystemExit, match="2"):
        bench.run_script("disentanglement", lambda: bench.main(args))
    err = capsys.readouterr().err
    assert err.startswith("disentanglement: error: ") and err.count("\n") == 1
    assert "run nox -s reproduce-table2 first" in err


def test_runs_without_content_slots_are_skipped_with_the_reason(
    tiny_proc: Path, tmp_path: Path
) -> None:
    """What a run's model declares decides it (mdr.models.capabilities): a CTR baseline has
    no item representation, DIN's id embeddings no content slots."""
    from tests.helpers import train_tiny

    bench = load_bench()
    deepfm = train_tiny(tiny_proc, tmp_path / "deepfm-s0", "deepfm", epochs=1, steps=1)
    din = train_tiny(tiny_proc, tmp_path / "din-s0", "din", epochs=1, steps=1)
    assert bench.score_run(deepfm, None, None, 20, 0) == (
        "deepfm: a CTR baseline on id features, no item representation to score"
    )
    assert bench.score_run(din, None, None, 20, 0) == (
        "id embeddings: no content representation to score"
    )


def test_input_probe_known_answers() -> None:
    from mdr.explain.disentanglement import input_probe

    gen = np.random.default_rng(0)
    y = gen.integers(0, 4, 400)
    onehot = np.eye(4)[y] + gen.normal(0, 0.05, (400, 4))
    noise = gen.normal(0, 1, (400, 6))
    rows = {r["input"]: r for r in input_probe({"carries": onehot, "noise": noise}, {"f": y})}
    assert rows["carries"]["accuracy"] > 0.95
    assert rows["noise"]["accuracy"] < rows["noise"]["chance"] + 0.15
    assert rows["carries"]["chance"] == rows["noise"]["chance"]  # the same split


def test_the_benchmark_writes_the_input_ceiling(tiny_results: Path) -> None:
    bench = load_bench()
    assert (
        bench.main(
            ["--dataset", "synthetic-tiny", "--results", str(tiny_results), "--threads", "1"]
        )
        == 0
    )
    with (tiny_results / "synthetic-tiny" / "input_probe.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["input"] for r in rows} == {"pixels", "text_tfidf"}
    by = {(r["input"], r["factor"]): float(r["accuracy"]) - float(r["chance"]) for r in rows}
    assert by["pixels", "colour"] >= 0.2  # a flat fill colour: the pixels carry it
