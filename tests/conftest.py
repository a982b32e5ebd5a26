"""Shared fixtures: the tiny synthetic shop, generated and prepared once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root (``$MDR_DATA``) holding the prepared tiny shop."""
    from mdr.data.catalog import resolve

    root = tmp_path_factory.mktemp("mdr-data")
    resolve("synthetic-tiny", root=root, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_proc(data_root: Path) -> Path:
    return data_root / "proc" / "synthetic-tiny"


@pytest.fixture()
def cli_env(data_root: Path) -> dict[str, str]:
    """Environment for subprocesses: the session's data root, no progress noise."""
    return {**os.environ, "MDR_DATA": str(data_root), "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}


CONFIG = REPO / "benchmarks" / "configs" / "mdr_synthetic.yaml"


def train_tiny(proc: Path, out: Path, variant: str | None = None, epochs: int = 2,
               steps: int = 6, seed: int = 0) -> Path:
    """Train ``variant`` (a baseline/ablation name of the synthetic config, or MDR) on the
    tiny shop for a few steps; returns the finished run folder."""
    from mdr.config import apply_overrides, load_run_config, variant_overrides
    from mdr.train import train

    cfg = load_run_config(CONFIG)
    overrides = dict(variant_overrides(CONFIG, variant)) if variant else {}
    overrides.update({"train.epochs": epochs, "train.max_steps_per_epoch": steps,
                      "train.batch_size": 256, "train.full_ranking": False,
                      "train.num_threads": 1, "seed": seed})
    train(apply_overrides(cfg, overrides), proc, out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_mdr_run(tiny_proc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished (short) MDR run on the tiny shop, shared by the explanation tests."""
    return train_tiny(tiny_proc, tmp_path_factory.mktemp("runs") / "mdr-s0")
