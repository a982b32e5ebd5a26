"""Shared plumbing of the benchmark scripts: datasets, result folders, manifests, tables.

Benchmarks live beside the package (they import :mod:`mdr`, never the reverse).
Each writes ``results/<dataset>/<name>.csv`` and ``.md`` plus a manifest
``<name>.manifest.json`` (git commit, versions, config, wall time), atomically.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mdr import io as mio
from mdr.provenance import manifest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
REPORTED = RESULTS / "reported"
CONFIGS = Path(__file__).resolve().parent / "configs"

# the paper's dataset names for our catalog names
PAPER_NAME = {"cloth": "Cloth", "toys": "Toys", "office": "Office"}
# how every table and figure names a model or ablation: one source
LABELS = {
    "wide_deep": "Wide&Deep",
    "pnn": "PNN",
    "deepfm": "DeepFM",
    "beta_vae": "beta-VAE",
    "abae": "ABAE",
    "din_pp": "DIN++",
    "din": "DIN (ids)",
    "mdr": "MDR",
    "mdr_wo_ic": "w/o IC",
    "mdr_wo_ws": "w/o weak labels",
    "mdr_no_fusion": "no fusion (r = [s, z])",
    "mdr_image_only": "image only",
    "mdr_text_only": "text only",
    "mdr_dense_aspects": "dense Eq. 14 (one fc)",
}


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


def to_markdown(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None
) -> str:
    headers = list(headers or columns)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")
    return str(v)


def write_result(
    dataset: str,
    name: str,
    csv_text: str,
    md_text: str,
    results_dir: Path = RESULTS,
    **manifest_extra: Any,
) -> Path:
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


def run_module(name: str, target: str) -> None:
    """The body of a short entry point (``python -m benchmarks.table2``): when ``name`` is
    ``"__main__"``, run ``main()`` of the module ``target`` under :func:`run_script`."""
    if name != "__main__":
        return
    import importlib

    short = target.rsplit(".", 1)[-1]
    sys.argv[0] = short  # what --help and every error line call the script
    run_script(short, importlib.import_module(target).main)
