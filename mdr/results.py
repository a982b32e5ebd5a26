"""Where a reader finds the results: one rule for the notebooks and anything else that reads them.

``results_dir()`` is ``$MDR_RESULTS`` when set, else the nearest ``results/`` folder holding
``reported/`` (the paper's transcribed tables) above the given start folders or the current
directory, else ``results`` relative to the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from mdr.data.catalog import DEFAULT_DATASET


def results_dir(start: Iterable[Path] = ()) -> Path:
    """The results folder to read (see the module docstring)."""
    env = os.environ.get("MDR_RESULTS")
    if env:
        return Path(env)
    cwd = Path.cwd().resolve()
    for first in (*(Path(p).resolve() for p in start), cwd):
        for base in (first, *first.parents):
            if (base / "results" / "reported").is_dir():
                return base / "results"
    return Path("results")


def results_dataset() -> str:
    """The dataset whose results to read: ``$MDR_DATASET``, else the embedded default."""
    return os.environ.get("MDR_DATASET") or DEFAULT_DATASET
