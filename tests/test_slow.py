"""Slow tests (``nox -s tests-slow``): the `small` shop end to end.

- generating and preparing the small shop twice gives identical files and arrays;
- MDR and every representation baseline, trained as Table 2 trains them, beat a fixed GAUC.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mdr.config import PrepareConfig
from mdr.data.catalog import SYNTHETIC_IMAGE_SIZE, resolve
from mdr.data.dataset import ProcessedDataset
from mdr.data.preprocess import prepare
from mdr.data.shop import generate

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).resolve().parent.parent / "benchmarks" / "configs" / "mdr_synthetic.yaml"


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding the small shop as every table prepares it (raw/ and proc/)."""
    root = tmp_path_factory.mktemp("data")
    resolve("synthetic-small", root=root, progress=False)
    return root


def test_small_shop_and_its_preparation_are_reproducible(data_root: Path, tmp_path: Path) -> None:
    small = data_root / "raw" / "synthetic-small"
    generate("small", seed=0, out=tmp_path / "raw", progress=False)
    assert _digest(tmp_path / "raw") == _digest(small)
    prepare(
        tmp_path / "raw",
        tmp_path / "proc",
        category="Synthetic",
        cfg=PrepareConfig(image_size=SYNTHETIC_IMAGE_SIZE),
        progress=False,
    )
    a = ProcessedDataset.open(data_root / "proc" / "synthetic-small")
    b = ProcessedDataset.open(tmp_path / "proc")
    assert np.array_equal(a.eval_lists["test"], b.eval_lists["test"])
    assert np.array_equal(a.text["tokens"], b.text["tokens"])
    assert np.array_equal(np.asarray(a.images), np.asarray(b.images))
    assert np.array_equal(a.word_vectors, b.word_vectors)


# seed 0's test GAUC in the runs behind the committed results/synthetic-small/table2.csv,
# on the development machine's CPU (mdr 0.7480, beta_vae 0.6351, abae 0.6799, din_pp 0.7301,
# din 0.7362), less a margin of about 0.02 for other CPUs' arithmetic. Patience 3 makes
# these CPU-dependent: on an earlier CPU the same code gave beta_vae 0.7116 (best epoch 32,
# not 5) and mdr 0.7537, because a noisy validation curve is stopped early or late by
# chance; each floor is the lower of the two CPUs' values less the margin. Each
# representation model, trained as the table trains it, must learn this much (chance:
# 0.5; the CTR baselines reach 0.69-0.74)
LEARNS = {"mdr": 0.72, "beta_vae": 0.61, "abae": 0.66, "din_pp": 0.71, "din": 0.71}
MAX_EPOCHS = 60  # train.epochs of mdr_synthetic.yaml


def test_every_representation_model_learns_with_its_default_training(
    data_root: Path, tmp_path: Path
) -> None:
    """The table's own runs (default config, early stopping) on the small shop, seed 0:
    each beats its floor, and early stopping fired before the epoch budget ran out."""
    import csv
    import os

    from tests.helpers import run_benchmark

    env = {**os.environ, "MDR_DATA": str(data_root), "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    res = run_benchmark(
        "table2",
        "--seeds",
        "1",
        "--models",
        *LEARNS,
        "--tag",
        "learns",
        "--jobs",
        "2",
        "-q",
        "--results",
        str(tmp_path / "results"),
        env=env,
        timeout=3000,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    with (tmp_path / "results" / "synthetic-small" / "table2_learns.csv").open() as fh:
        table = {r["model"]: r for r in csv.DictReader(fh)}
    for model, floor in LEARNS.items():
        got = float(table[model]["gauc_mean"])
        assert got > floor, (model, got, floor)
        assert int(table[model]["best_epochs"]) < int(table[model]["epochs_run"]) < MAX_EPOCHS
