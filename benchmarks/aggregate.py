"""Reading finished runs and aggregating them over seeds: one place for every script.

A table's manifest (``results/<dataset>/<table>.manifest.json``) lists its runs by
folder name, ``<model>-<config hash>-s<seed>``, under ``results/<dataset>/runs/``.
Everything here reads those files with one-line errors naming the file (and the line)
on damaged JSON; nothing here trains.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import BenchmarkError
from mdr.data.parse import DataError

RUN_NAME = re.compile(r"^(?P<model>.+)-(?P<hash>[0-9a-f]+)-s(?P<seed>\d+)$")


def read_json(path: Path) -> Any:
    """A JSON file; a missing or damaged one is one line naming it (and the line)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    except ValueError as e:  # json refuses some literals with a plain ValueError
        raise DataError(f"{path}: not valid JSON ({str(e)[:200]})") from e


def parse_run_name(name: str) -> tuple[str, int]:
    """``MODEL-HASH-sSEED`` -> (model or variant name, seed)."""
    m = RUN_NAME.match(name)
    if m is None:
        raise BenchmarkError(f"run folder {name!r} is not named MODEL-HASH-sSEED")
    return m["model"], int(m["seed"])


def manifest_runs(results: Path, dataset: str, name: str = "table2") -> tuple[list[str], Path]:
    """The run names listed by ``results/<dataset>/<name>.manifest.json`` and their folder."""
    path = results / dataset / f"{name}.manifest.json"
    if not path.is_file():
        raise BenchmarkError(
            f"{path}: not found - run `python -m benchmarks.{name.split('_')[0]} "
            f"--dataset {dataset}` first"
        )
    doc = read_json(path)
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not isinstance(runs, dict) or not runs:
        raise BenchmarkError(f"{path}: no 'runs' listed")
    return list(runs), results / dataset / "runs"


def default_run(
    results: Path, dataset: str, manifest: str = "table2", model: str = "mdr", seed: int = 0
) -> Path:
    """The finished ``model`` run with ``seed`` listed in ``<dataset>/<manifest>.manifest.json``."""
    names, folder = manifest_runs(results, dataset, manifest)
    for name in names:
        if (
            RUN_NAME.match(name)
            and parse_run_name(name) == (model, seed)
            and (folder / name / "test.json").is_file()
        ):
            return folder / name
    raise BenchmarkError(
        f"{results / dataset / f'{manifest}.manifest.json'}: no finished "
        f"{model!r} run with seed {seed} under {folder}; give --run DIR"
    )


def read_test(run_dir: Path) -> dict[str, Any]:
    """A finished run's ``test.json``."""
    doc = read_json(run_dir / "test.json")
    if not isinstance(doc, dict):
        raise DataError(f"{run_dir / 'test.json'}: expected a JSON object")
    return doc


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def aggregate(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """``<key>_mean`` and ``<key>_std`` over the rows (seeds) that have each key."""
    out: dict[str, Any] = {}
    for key in keys:
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            out[f"{key}_mean"], out[f"{key}_std"] = mean_std(vals)
    return out


__all__ = [
    "RUN_NAME",
    "aggregate",
    "default_run",
    "manifest_runs",
    "mean_std",
    "parse_run_name",
    "read_json",
    "read_test",
]
