"""Where readers (the notebooks) find results/: $MDR_RESULTS, else the nearest results/reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdr.results import results_dataset, results_dir


def test_env_wins_then_nearest_results_with_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo" / "results" / "reported").mkdir(parents=True)
    deep = tmp_path / "repo" / "notebooks" / "sub"
    deep.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MDR_RESULTS", raising=False)
    assert results_dir([deep]) == (tmp_path / "repo" / "results").resolve()
    assert results_dir() == Path("results")  # nothing above the cwd: the relative default
    monkeypatch.setenv("MDR_RESULTS", str(tmp_path / "mine"))
    assert results_dir([deep]) == tmp_path / "mine"


def test_results_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MDR_DATASET", raising=False)
    assert results_dataset() == "synthetic-small"
    monkeypatch.setenv("MDR_DATASET", "cloth")
    assert results_dataset() == "cloth"
