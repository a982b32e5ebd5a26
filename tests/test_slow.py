"""Slow tests (``nox -s tests-slow``): the `small` shop end to end.

- generating and preparing the small shop twice gives identical files and arrays;
- MDR trained for a few epochs on it clearly beats chance (it learns from the content).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mdr.config import apply_overrides, load_run_config
from mdr.data.dataset import ProcessedDataset
from mdr.data.preprocess import PrepareConfig, prepare
from mdr.data.synthetic import generate
from mdr.train import train

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).resolve().parent.parent / "benchmarks" / "configs" / "mdr_synthetic.yaml"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small")
    generate("small", seed=0, out=root / "raw", progress=False)
    prepare(root / "raw", root / "proc", category="Synthetic",
            cfg=PrepareConfig(image_size=32), progress=False)
    return root


def test_small_shop_and_its_preparation_are_reproducible(small: Path, tmp_path: Path) -> None:
    generate("small", seed=0, out=tmp_path / "raw", progress=False)
    assert _digest(tmp_path / "raw") == _digest(small / "raw")
    prepare(tmp_path / "raw", tmp_path / "proc", category="Synthetic",
            cfg=PrepareConfig(image_size=32), progress=False)
    a, b = ProcessedDataset.open(small / "proc"), ProcessedDataset.open(tmp_path / "proc")
    assert np.array_equal(a.eval_lists["test"], b.eval_lists["test"])
    assert np.array_equal(a.text["tokens"], b.text["tokens"])
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images))
    assert np.array_equal(a.word_vectors, b.word_vectors)


def test_mdr_learns_on_the_small_shop(small: Path, tmp_path: Path) -> None:
    cfg = apply_overrides(load_run_config(CONFIG), {"train.epochs": 3, "train.patience": 3,
                                                    "train.full_rank_users": 300})
    result = train(cfg, small / "proc", tmp_path / "run", progress=False)
    assert result["gauc"] > 0.6, result
    assert result["ndcg@10"] > 0.07, result  # a random list of 101 gives ~0.045
