"""Figures 3 and 5: known-answer tests of the pieces, and both scripts end to end on the tiny
shop (MDR and ABAE x 2 seeds of short runs, plus a DeepFM run: every model, one layout)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.common import BenchmarkError
from mdr.data.parse import DataError
from mdr.explain.aspects import aspect_slot_shares, aspect_words, group_purity
from mdr.training.runs import RunError
from tests.helpers import benchmark_module, train_tiny

DATASET = "synthetic-tiny"


def bench(name: str) -> ModuleType:
    return benchmark_module(name)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_png(path: Path, max_kb: int = 200) -> None:
    assert path.is_file() and path.stat().st_size < max_kb * 1024
    with Image.open(path) as im:
        im.load()  # decodes every pixel
        assert im.format == "PNG" and im.width > 300 and im.height > 100


# --------------------------------------------------------------------------- aspect words


def test_aspect_words_returns_the_words_that_d_is_made_of() -> None:
    gen = np.random.default_rng(0)
    vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(30)]
    wv = gen.normal(size=(len(vocab), 8)).astype(np.float32)
    wv[:2] = 0.0  # padding and unknown rows are zeros, as in word_vector_table
    D = 3.0 * wv[[7, 20, 2]]  # cosine ignores the scale
    words = aspect_words(torch.from_numpy(D), wv, vocab, k=len(vocab))
    assert [row[0][0] for row in words] == ["w5", "w18", "w0"]
    assert all(row[0][1] == pytest.approx(1.0, abs=1e-6) for row in words)
    for row in words:  # never the special tokens, sorted by cosine, all real words
        assert len(row) == len(vocab) - 2 and {"<pad>", "<unk>"}.isdisjoint(w for w, _ in row)
        sims = [c for _, c in row]
        assert sims == sorted(sims, reverse=True) and sims[-1] >= -1.0 - 1e-9
    assert aspect_words(D, wv, vocab, k=3) == [row[:3] for row in words]  # ndarray == tensor


def test_aspect_words_rejects_bad_input() -> None:
    wv = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="vocab has 3 tokens"):
        aspect_words(wv[:2], wv, ["a", "b", "c"])
    with pytest.raises(ValueError, match="all zeros"):
        aspect_words(np.zeros((1, 4)), wv, list("abcd"))


# --------------------------------------------------------------------------- aspect slots


def test_aspect_slot_shares_known_answer() -> None:
    # aspect 0 reads slot a only, aspect 1 slot b only, aspect 2 nothing. Centred over the
    # aspects, aspect 0's weights are (10/3, 10/3) on a and (-5/3, -5/3) on b, so with
    # independent unit-variance columns slot a's share is 2*(10/3)^2 / (2*(10/3)^2 +
    # 2*(5/3)^2) = 0.8; aspect 2's centred weights are -5/3 everywhere: 0.5 / 0.5.
    W = np.array([[5.0, 5.0, 0.0, 0.0], [0.0, 0.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    r = np.random.default_rng(1).normal(size=(200_000, 4))
    cols = {"a": [0, 1], "b": [2, 3], "empty": []}
    names, shares = aspect_slot_shares(W, r, cols)
    assert names == ["a", "b"]  # slots without columns are dropped
    np.testing.assert_allclose(shares, [[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]], atol=0.01)
    # softmax ignores a shift shared by all aspects: adding the same row to W changes nothing
    _, shifted = aspect_slot_shares(W + np.array([1.0, -2.0, 3.0, 0.5]), r, cols)
    np.testing.assert_allclose(shifted, shares, atol=1e-9)
    with pytest.raises(ValueError, match="outside"):
        aspect_slot_shares(W, r, {"a": [0, 4]})


def test_group_purity_known_answer() -> None:
    group = {"navy": "colour", "cobalt": "colour", "merino": "material", "big": "size"}
    assert group_purity(["navy", "cobalt", "merino", "the"], group) == (
        "colour",
        0.5,
        {"colour": 2, "material": 1},
    )
    assert group_purity(["big", "merino"], group, order=["size", "material"])[0] == "size"
    assert group_purity(["the", "it"], group) == (None, 0.0, {})


def test_synthetic_word_factors_follow_the_generator_word_lists() -> None:
    table = bench("figure5").synthetic_word_factors()
    assert (table["navy"].factor, table["navy"].value, table["navy"].how) == (
        "colour",
        "blue",
        "value",
    )
    assert (table["merino"].factor, table["merino"].value) == ("material", "wool")
    assert table["roomy"].factor == "size" and table["hiking"].factor == "occasion"
    assert table["northwind"].factor == "brand"
    assert table["saturated"].how == "topic" and table["saturated"].factor == "colour"
    assert table["disgraceful"].factor == "quality"
    for filler in ("the", "it", "shipped", "grandma", "thrilled"):  # shared or non-factor
        assert filler not in table


# --------------------------------------------------------------------------- reading runs


def test_valid_curves_of_the_run_folder(tmp_path: Path) -> None:
    fig3 = bench("figure3")
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"epoch": 1, "valid/gauc": 0.6}\n{"epoch": 2, "valid/gauc": 0.7}\n'
        '{"epoch": 2, "valid/gauc": 0.65}\n'
    )  # a resumed epoch: the last wins
    assert fig3.read_valid_curve(path) == ((1, 2), (0.6, 0.65))
    path.write_text('{"epoch": 1, "valid/gauc": 0.6}\n{"epoch": 2,\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not valid JSON"):
        fig3.read_valid_curve(path)
    path.write_text('{"epoch": 1, "valid/auc": 0.6}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:1: no validation GAUC"):
        fig3.read_valid_curve(path)


def test_summary_means_and_stds_over_seeds() -> None:
    fig3 = bench("figure3")
    runs = [
        fig3.RunCurve("m-a-s0", "mdr", 0, (1, 2), (0.6, 0.7), 0.70),
        fig3.RunCurve("m-a-s1", "mdr", 1, (1,), (0.8,), 0.74),
    ]
    rows = fig3.summarise(runs, "d")
    valid = {r["epoch"]: r for r in rows if r["split"] == "valid"}
    assert valid[1]["gauc_mean"] == pytest.approx(0.7) and valid[1]["n"] == 2
    assert valid[1]["gauc_std"] == pytest.approx(math.sqrt(0.02))  # ddof=1
    assert valid[2]["gauc_mean"] == pytest.approx(0.7) and valid[2]["n"] == 1
    (test,) = [r for r in rows if r["split"] == "test"]
    assert test["gauc_mean"] == pytest.approx(0.72) and test["label"] == "MDR"


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, tiny_proc: Path, tiny_mdr_run: Path) -> Path:
    """results/synthetic-tiny/runs with MDR and ABAE x 2 seeds, a 3-epoch DeepFM run, and
    a table2.manifest.json listing them."""
    root = tmp_path_factory.mktemp("results")
    runs = root / DATASET / "runs"
    names = ["deepfm-000000000001-s0"]
    train_tiny(tiny_proc, runs / names[0], "deepfm", epochs=3, steps=2)
    for model in ("mdr", "abae"):
        for seed in (0, 1):
            name = f"{model}-00000000000{seed}-s{seed}"
            names.append(name)
            if model == "mdr" and seed == 0:  # the session's MDR run serves as seed 0
                shutil.copytree(tiny_mdr_run, runs / name)
                continue
            train_tiny(
                tiny_proc,
                runs / name,
                None if model == "mdr" else model,
                epochs=2,
                steps=1,
                seed=seed,
            )
    manifest = {"dataset": DATASET, "runs": {n: "config.yaml" for n in names}}
    (root / DATASET / "table2.manifest.json").write_text(json.dumps(manifest))
    return root


def test_figure3_end_to_end(results: Path) -> None:
    fig3 = bench("figure3")
    assert fig3.datasets_with_runs(results) == [DATASET]
    assert fig3.main(["--results", str(results)]) == 0  # default: every dataset with runs
    out = results / DATASET / "figures"
    assert_png(out / "figure3.png")
    rows = read_rows(out / "figure3.csv")
    assert {r["model"] for r in rows} == {"deepfm", "mdr", "abae"}
    assert all(
        math.isfinite(float(r["gauc_mean"]))
        and 0 <= float(r["gauc_mean"]) <= 1
        and math.isfinite(float(r["gauc_std"]))
        for r in rows
    )
    tests = {r["model"]: r for r in rows if r["split"] == "test"}
    assert {m: r["n"] for m, r in tests.items()} == {"deepfm": "1", "mdr": "2", "abae": "2"}
    deepfm_test = json.loads(
        (results / DATASET / "runs" / "deepfm-000000000001-s0" / "test.json").read_text()
    )["gauc"]
    assert float(tests["deepfm"]["gauc_mean"]) == pytest.approx(deepfm_test)
    mdr_test = [
        json.loads(
            (results / DATASET / "runs" / f"mdr-00000000000{s}-s{s}" / "test.json").read_text()
        )["gauc"]
        for s in (0, 1)
    ]
    assert float(tests["mdr"]["gauc_mean"]) == pytest.approx(np.mean(mdr_test))
    assert [r["epoch"] for r in rows if r["model"] == "deepfm"] == ["1", "2", "3", ""]
    assert json.loads((out / "figure3.manifest.json").read_text())["dataset"] == DATASET
    # another table's runs (the tuned ones) get their own figure beside the default one
    default = (out / "figure3.csv").read_bytes()
    manifest = results / DATASET / "table2.manifest.json"
    (results / DATASET / "table2_tuned.manifest.json").write_bytes(manifest.read_bytes())
    assert fig3.main(["--results", str(results), "--manifest", "table2_tuned"]) == 0
    assert_png(out / "figure3_tuned.png")
    assert (out / "figure3_tuned.csv").read_bytes() == default
    assert (out / "figure3.csv").read_bytes() == default
    source = json.loads((out / "figure3_tuned.manifest.json").read_text())["source"]
    assert source == "table2_tuned.manifest.json"
    assert fig3.figure_stem("table2") == "figure3" and fig3.figure_stem("table2_p3") == "figure3_p3"
    for path in [results / DATASET / "table2_tuned.manifest.json", *out.glob("figure3_tuned.*")]:
        path.unlink()  # the module's other tests see the results as they were


def test_figure3_errors_clearly_without_runs(tmp_path: Path) -> None:
    fig3 = bench("figure3")
    with pytest.raises(fig3.BenchmarkError, match=r"no dataset has a table2\.manifest\.json"):
        fig3.main(["--results", str(tmp_path)])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "table2.manifest.json").write_text('{"runs": {"mdr-0a-s0": "x"}}')
    with pytest.raises(fig3.BenchmarkError, match="none of the 1 runs"):
        fig3.main(["--results", str(tmp_path), "--dataset", "d"])


def test_figure5_end_to_end(results: Path) -> None:
    fig5 = bench("figure5")
    assert fig5.main(["--results", str(results), "--dataset", DATASET]) == 0
    out = results / DATASET
    assert_png(out / "figures" / "figure5.png")
    rows = read_rows(out / "figure5.csv")
    assert len(rows) >= 2 and [int(r["aspect"]) for r in rows] == list(range(len(rows)))
    slots = {"colour", "size", "material", "brand", "blackbox"}  # the text-related slots
    for r in rows:
        assert len(r["words"].split()) == 10 and r["slot"] in slots
        shares = [float(r[f"share_{s}"]) for s in sorted(slots)]
        assert all(math.isfinite(x) and 0 <= x <= 1 for x in shares)
        assert sum(shares) == pytest.approx(1.0) and float(r["slot_share"]) == max(shares)
        cos = [float(c) for c in r["cosines"].split()]
        assert cos == sorted(cos, reverse=True) and all(-1 <= c <= 1 for c in cos)
        assert 0 <= float(r["value_purity"]) <= float(r["purity"]) <= 1  # synthetic shop
    manifest = json.loads((out / "figure5.manifest.json").read_text())
    assert manifest["run"].endswith("mdr-000000000000-s0")  # the seed-0 MDR run
    assert "| aspect | slot |" in (out / "figure5.md").read_text()


def test_figure5_any_text_run_and_clear_errors(results: Path, tmp_path: Path) -> None:
    fig5 = bench("figure5")
    abae = results / DATASET / "runs" / "abae-000000000001-s1"
    folder = fig5.figure5(abae, tmp_path)  # ABAE: text only, r = z
    rows = read_rows(folder / "figure5.csv")
    assert rows and all(len(r["words"].split()) == 10 for r in rows)
    with pytest.raises(
        RunError,
        match="deepfm-000000000001-s0: model 'deepfm' has no text "
        "aspects; Figure 5 reads the aspects of a text side",
    ):
        fig5.figure5(results / DATASET / "runs" / "deepfm-000000000001-s0", tmp_path)
    with pytest.raises(BenchmarkError, match="no finished 'mdr' run with seed 5"):
        fig5.default_run(results, DATASET, seed=5)


def test_figure5_table_without_ground_truth(tmp_path: Path) -> None:
    """Real data has no word factors: the table keeps aspect, slot and words only."""
    fig5 = bench("figure5")
    rows = [
        {"aspect": j, "slot": "brand", "slot_share": 0.7, "words": "zip strap buckle"}
        for j in range(3)
    ]
    md = fig5.markdown(rows, ["brand"], Path("run-s0"), "cloth", synthetic=False, k=3)
    assert "| 0 | brand | 0.7 | zip strap buckle |" in md and "purity" not in md
    assert_png(fig5.draw(rows, "cloth", "run-s0", tmp_path / "f5.png", synthetic=False))
