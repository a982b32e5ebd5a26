"""Shared fixtures: the tiny synthetic shop, generated and prepared once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The test modules import their helpers (tests.helpers, tests.fixtures_*) and the benchmark
# scripts (benchmarks.*) as packages of the checkout. The root is APPENDED, so that `mdr`
# and `baselines` still come from the installed package, never from the working tree.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from tests.helpers import train_tiny  # noqa: E402


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


@pytest.fixture(scope="session")
def tiny_mdr_run(tiny_proc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished (short) MDR run on the tiny shop, shared by the explanation tests."""
    return train_tiny(tiny_proc, tmp_path_factory.mktemp("runs") / "mdr-s0")
