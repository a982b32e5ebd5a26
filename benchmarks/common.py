"""Shared plumbing of the benchmark scripts: datasets, result folders, manifests, tables.

Benchmarks live beside the package (they import :mod:`mdr`, never the reverse).
Each writes ``results/<dataset>/<name>.csv`` and ``.md`` plus a manifest
``<name>.manifest.json`` (git commit, versions, config, wall time), atomically.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mdr import io as mio
from mdr.data.parse import DataError
from mdr.provenance import manifest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
REPORTED = RESULTS / "reported"
CONFIGS = Path(__file__).resolve().parent / "configs"

# the paper's dataset names for our catalog names
PAPER_NAME = {"cloth": "Cloth", "toys": "Toys", "office": "Office"}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                headers: Sequence[str] | None = None) -> str:
    headers = list(headers or columns)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def write_result(dataset: str, name: str, csv_text: str, md_text: str,
                 results_dir: Path = RESULTS, **manifest_extra: Any) -> Path:
    """Write ``<results>/<dataset>/<name>.csv``/``.md``/``.manifest.json`` atomically."""
    folder = results_dir / dataset
    mio.write_text(folder / f"{name}.csv", csv_text)
    mio.write_text(folder / f"{name}.md", md_text)
    mio.write_json(folder / f"{name}.manifest.json", manifest(dataset=dataset, **manifest_extra))
    return folder


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run as asked: no runs to draw, a run folder or dataset that
    cannot serve the figure, a model the table does not have (exit status 2)."""


def run_script(prog: str, main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s status under the ``mdr`` command's error rule
    (:func:`mdr.cli.guarded`): bad input is one line and exit status 2."""
    from mdr.cli import guarded

    sys.exit(guarded(prog, main, user_errors=(BenchmarkError,)))


def default_run(results: Path, dataset: str, manifest: str = "table2", model: str = "mdr",
                seed: int = 0) -> Path:
    """The finished ``model`` run with ``seed`` listed in ``<dataset>/<manifest>.manifest.json``."""
    path = results / dataset / f"{manifest}.manifest.json"
    if not path.is_file():
        raise BenchmarkError(f"{path}: not found - run benchmarks/{manifest}.py --dataset {dataset} "
                          "first, or give --run DIR")
    try:
        runs = json.loads(path.read_text(encoding="utf-8")).get("runs") or {}
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    pattern = re.compile(rf"^{re.escape(model)}-[0-9a-f]+-s{seed}$")
    for name in runs:
        run_dir = results / dataset / "runs" / name
        if pattern.match(name) and (run_dir / "test.json").is_file():
            return run_dir
    raise BenchmarkError(f"{path}: no finished {model!r} run with seed {seed} under "
                      f"{results / dataset / 'runs'}; give --run DIR")
