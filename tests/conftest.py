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
