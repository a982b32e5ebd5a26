"""Execute the companion notebooks into HTML with their outputs (``nox -s notebooks``).

    python -m benchmarks.notebooks [--results DIR] [--dataset NAME] [--out results/notebooks]
                                   [--timeout S] [NOTEBOOK ...]

Each ``notebooks/*.py`` (jupytext percent format) is converted to a notebook,
executed by a ``python3`` kernel of THIS interpreter (``sys.executable``, so the
notebooks import the same ``mdr`` as the command), with ``MDR_RESULTS`` and
``MDR_DATASET`` set from ``--results``/``--dataset``, and written as
``<out>/<name>.html`` (atomically). The notebooks only read ``results/``; they
never train. A failing cell fails the command, naming the notebook, the cell and
its error; the partial output goes to ``<out>/<name>.failed.html``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import run_script
from mdr.argtypes import Parser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "results"
REQUIRED = ("ipykernel", "nbconvert", "nbformat", "jupytext")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes of IPython's tracebacks


class NotebookError(RuntimeError):
    """A notebook cell failed (or the notebook could not be run at all)."""


@dataclass(frozen=True)
class Outcome:
    name: str
    html: Path
    seconds: float
    size: int


def check_requirements() -> None:
    """Fail clearly when the packages that execute notebooks are not importable here."""
    absent = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if absent:
        raise NotebookError(
            f"{', '.join(absent)} not importable by {sys.executable}: install the 'notebooks' "
            "dependency group (`pip install --group notebooks .`, i.e. nbconvert and ipykernel)"
        )


def kernel_manager_class(spec_dir: Path) -> type:
    """A KernelManager whose ``python3`` kernel runs ``sys.executable`` (not whatever
    ``python3`` kernelspec happens to be installed)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets import default

    spec = spec_dir / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (mdr)",
                "language": "python",
            }
        )
    )

    class ThisPython(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return KernelSpecManager(kernel_dirs=[str(spec_dir)])

    return ThisPython


def _executor(timeout: int, spec_dir: Path):  # -> ExecutePreprocessor remembering its cell
    from nbconvert.preprocessors import ExecutePreprocessor

    class Tracking(ExecutePreprocessor):
        current: int = -1

        def preprocess_cell(self, cell, resources, index):  # type: ignore[no-untyped-def]
            self.current = index
            return super().preprocess_cell(cell, resources, index)

    # the kernel's own log (e.g. its "running over TCP" notice) is noise here: errors in the
    # notebook arrive as cell errors
    return Tracking(
        timeout=timeout,
        kernel_name="python3",
        kernel_manager_class=kernel_manager_class(spec_dir),
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )


def _first_line(cell_source: str) -> str:
    lines = [ln for ln in cell_source.splitlines() if ln.strip() and not ln.startswith("#")]
    return lines[0][:80] if lines else "(comment only)"


def _to_html(nb) -> str:  # nb: nbformat.NotebookNode
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def run_notebook(path: Path, out: Path, timeout: int, spec_dir: Path) -> Outcome:
    """Execute one jupytext notebook in ``notebooks/`` and write ``out/<name>.html``."""
    import jupytext
    from nbconvert.preprocessors import CellExecutionError

    from mdr import io as mio

    t0 = time.perf_counter()
    nb = jupytext.read(path)
    ep = _executor(timeout, spec_dir)
    html = out / f"{path.stem}.html"
    failed = out / f"{path.stem}.failed.html"
    try:
        ep.preprocess(nb, {"metadata": {"path": str(path.parent)}})
    except Exception as e:  # a cell's error, a cell past --timeout, a dead kernel
        html.unlink(missing_ok=True)
        mio.write_text(failed, _to_html(nb))
        cell = nb.cells[ep.current] if 0 <= ep.current < len(nb.cells) else None
        where = f"cell {ep.current} ({_first_line(cell.source)!r})" if cell else "a cell"
        if isinstance(e, CellExecutionError):
            error = f"{e.ename}: {e.evalue}\n{ANSI.sub('', e.traceback)}"
        else:
            error = f"{type(e).__name__}: {e}"
        raise NotebookError(
            f"{path.name}: {where} failed: {error}\npartial output in {failed}"
        ) from None
    text = _to_html(nb)
    mio.write_text(html, text)
    failed.unlink(missing_ok=True)
    return Outcome(path.stem, html, time.perf_counter() - t0, len(text.encode()))


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to run (default: every notebooks/*.py)"
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="the results folder to read")
    p.add_argument(
        "--dataset",
        default="synthetic-small",
        help="the dataset folder under --results (default synthetic-small)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "notebooks",
        help="where the HTML goes (default results/notebooks)",
    )
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    a = p.parse_args(argv)
    try:
        check_requirements()
    except NotebookError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = [q.resolve() for q in a.notebooks] or sorted(NOTEBOOKS.glob("[0-9]*.py"))
    absent = [str(q) for q in paths if not q.is_file()]
    if not paths or absent:
        print(f"error: notebook(s) not found: {', '.join(absent) or NOTEBOOKS}", file=sys.stderr)
        return 2
    # the kernels inherit this environment: the notebooks read MDR_RESULTS and MDR_DATASET
    os.environ.update(
        {"MDR_RESULTS": str(a.results.resolve()), "MDR_DATASET": a.dataset, "MPLBACKEND": "Agg"}
    )
    os.environ.setdefault("PYTHONHASHSEED", "0")
    failures = []
    with tempfile.TemporaryDirectory(prefix="mdr-kernels-") as spec_dir:
        for path in paths:
            try:
                o = run_notebook(path, a.out, a.timeout, Path(spec_dir))
            except NotebookError as e:
                failures.append(str(e))
                print(f"FAILED {e}", file=sys.stderr, flush=True)
                continue
            print(f"{o.name}: {o.seconds:.1f} s -> {o.html} ({o.size / 1024:.0f} KiB)", flush=True)
    if failures:
        print(
            f"error: {len(failures)} of {len(paths)} notebook(s) failed: "
            + ", ".join(f.split(":")[0] for f in failures),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    run_script("notebooks", main)
