"""The `mdr` command end to end on the tiny shop: data, train (every model kind), evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdr.cli import main

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "benchmarks" / "configs" / "mdr_synthetic.yaml"


def mdr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mdr.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_stats_json_matches_the_prepared_counts(
    tiny_proc: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["data", "stats", str(tiny_proc), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["behaviors"]) == (150, 100, 1050)
    assert stats["sparsity_percent"] == pytest.approx(100 * 1050 / (150 * 100))


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "stats", "/nonexistent/proc"], "not found"),
        (
            ["data", "prepare", "--raw", "/nonexistent", "--category", "Toys", "--out", "/tmp/x"],
            "not found",
        ),
        (["train", "--data", "/nonexistent", "--out", "/tmp/x"], "unknown dataset"),
    ],
)
def test_bad_paths_give_one_clear_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mdr: error:") and message in err and "Traceback" not in err


def test_unknown_override_and_unknown_model_are_clear_errors(
    tiny_proc: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(
            [
                "train",
                "--config",
                str(CONFIG),
                "--data",
                str(tiny_proc),
                "--out",
                str(tmp_path / "r"),
                "--set",
                "loss.etaa=0",
            ]
        )
        == 2
    )
    assert "etaa" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data",
                str(tiny_proc),
                "--out",
                str(tmp_path / "r2"),
                "--model",
                "transformer",
            ]
        )
        == 2
    )
    assert "known" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["mdr", "mdr_wo_ic", "beta_vae", "din", "deepfm"])
def test_train_then_evaluate_each_model_kind(
    model: str, tiny_proc: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = tmp_path / model
    res = mdr(
        "train",
        "-q",
        "--config",
        str(CONFIG),
        "--data",
        str(tiny_proc),
        "--out",
        str(run),
        "--model",
        model,
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--seed",
        "1",
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr
    test = json.loads((run / "test.json").read_text())
    for key in ("gauc", "auc", "ndcg@10", "hr@10", "full_ndcg@10", "full_hr@10"):
        assert 0.0 <= test[key] <= 1.0, key
    assert test["seed"] == 1 and test["epochs_run"] == 1
    if model == "mdr_wo_ic":  # the ablation's override reached the run's resolved config
        assert "eta: 0.0" in (run / "config.yaml").read_text()
    again = mdr("evaluate", str(run), "--json", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["gauc"] == pytest.approx(test["gauc"])


def test_every_model_honours_the_seed_and_never_replaces_a_finished_run(
    tiny_proc: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = tmp_path / "run"
    common = [
        "train",
        "-q",
        "--config",
        str(CONFIG),
        "--data",
        str(tiny_proc),
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--set",
        "train.full_ranking=false",
    ]
    res = mdr(*common, "--out", str(run), "--model", "deepfm", "--set", "seed=5", env=cli_env)
    assert res.returncode == 0, res.stderr
    assert json.loads((run / "test.json").read_text())["seed"] == 5
    assert "seed: 5" in (run / "config.yaml").read_text()
    before = (run / "test.json").read_bytes()
    res = mdr(*common, "--out", str(run), "--model", "mdr", env=cli_env)
    assert res.returncode == 2 and "holds a finished run" in res.stderr
    assert "Traceback" not in res.stderr and (run / "test.json").read_bytes() == before


def test_non_zero_ranks_wait_for_rank_0_to_prepare_a_named_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun only rank 0 creates a named dataset; rank 1 waits, then gives up clearly."""
    from mdr.cli import _resolve_data
    from mdr.data.parse import DataError

    monkeypatch.setenv("MDR_DATA", str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("MDR_DIST_TIMEOUT_MIN", "0.001")
    with pytest.raises(DataError, match="rank 1: gave up waiting for rank 0"):
        _resolve_data("synthetic-tiny", quiet=True)
    assert not (tmp_path / "raw").exists()  # rank 1 never started a preparation of its own
