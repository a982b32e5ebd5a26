"""Smoke of the notebooks: each ``notebooks/*.py`` executes into HTML without an error.

A tiny results folder is made with the real table pipeline on the tiny shop
(Table 1; Tables 2 and 3 with one baseline, one seed and a 2-step epoch, to stay
fast; then the figure and disentanglement scripts), then ``python -m benchmarks.notebooks`` runs
every notebook on it. Also: the notebooks say what is missing instead of failing,
and a failing cell fails the command with the notebook's name and the error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("ipykernel", reason="the 'notebooks' dependency group is not installed")
pytest.importorskip("nbconvert", reason="the 'notebooks' dependency group is not installed")

REPO = Path(__file__).resolve().parent.parent
from tests.helpers import benchmark_command, benchmark_module  # noqa: E402

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.py"))
DATASET = "synthetic-tiny"
# what an error output, a traceback or anything written to stderr leaves in nbconvert's HTML
ERROR_MARKS = (
    "Traceback (most recent call last)",
    'data-mime-type="application/vnd.jupyter.stderr"',
)


def bench(name: str) -> ModuleType:
    return benchmark_module(name)


def run_notebooks(
    results: Path,
    out: Path,
    *notebooks: Path,
    dataset: str = DATASET,
    env: dict[str, str] | None = None,
    timeout: int = 300,
) -> subprocess.CompletedProcess:
    cmd = benchmark_command(
        "notebooks",
        "--results",
        str(results),
        "--dataset",
        dataset,
        "--out",
        str(out),
        "--timeout",
        str(timeout),
        *(str(n) for n in notebooks),
    )
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**(env or os.environ), "PYTHONHASHSEED": "0"},
    )


def make_tables(results: Path, proc: Path) -> None:
    """Tables 1-3 through the real pipeline (run folders, manifests, paired test)."""
    assert bench("table1").main(["--dataset", str(proc), "--results", str(results), "-q"]) == 0
    tables = bench("tables")
    opts = tables.Options(
        dataset=str(proc),
        seeds=1,
        epochs=1,
        max_steps=2,
        jobs=2,
        quiet=True,
        results=results,
        extra={"train.full_ranking": False},
    )
    tables.run_table(
        "table2", "Table 2: AUC and NDCG@10", ("din_pp", "mdr"), "table2.csv", opts, ours="mdr"
    )
    tables.run_table(
        "table3",
        "Table 3: effectiveness of the information constraint",
        ("mdr", "mdr_wo_ic"),
        "table3.csv",
        opts,
        ours="mdr",
    )


def make_figures(results: Path, proc: Path) -> None:
    """Figures 3, 4 (a short probe) and 5 and the disentanglement scores, from those runs."""
    args = ["--dataset", DATASET, "--results", str(results)]
    assert bench("figure3").main(args) == 0
    assert (
        bench("figure4").main(
            [
                *args,
                "--items",
                "1",
                "--effect-items",
                "8",
                "--steps",
                "4",
                "--probe-epochs",
                "1",
                "--no-compare",
            ]
        )
        == 0
    )
    assert bench("disentanglement").main([*args, "--threads", "1"]) == 0
    assert bench("figure5").main([*args, "--data", str(proc)]) == 0


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory, tiny_proc: Path) -> Path:
    results = tmp_path_factory.mktemp("results")
    shutil.copytree(REPO / "results" / "reported", results / "reported")
    make_tables(results, tiny_proc)
    make_figures(results, tiny_proc)
    return results


@pytest.fixture(scope="module")
def html(tiny_results: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("html")
    res = run_notebooks(tiny_results, out)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {p.stem: outputs(p.read_text(encoding="utf-8")) for p in out.glob("*.html")}


CODE = re.compile(r'<div class="highlight hl-ipython3"><pre>.*?</pre></div>', re.DOTALL)


def outputs(html: str) -> str:
    """The HTML without the cells' source code (what the notebook SAID, and its markdown)."""
    stripped = CODE.sub("", html)
    assert stripped != html, "no code cells found: has nbconvert's HTML layout changed?"
    return stripped


def assert_clean(name: str, text: str) -> None:
    for mark in ERROR_MARKS:
        assert mark not in text, f"{name}.html has an error output ({mark!r})"


def test_every_notebook_renders_without_errors(html: dict[str, str]) -> None:
    assert sorted(html) == [n.stem for n in NOTEBOOKS]
    for name, text in html.items():
        assert_clean(name, text)
        plots = re.search(r'<img [^>]*src="data:image/png;base64,', text)
        assert plots or name == "03_figures", name


def test_the_notebooks_show_the_tiny_results(html: dict[str, str], tiny_results: Path) -> None:
    t1 = html["01_dataset"]
    assert "Table 1: dataset statistics (synthetic-tiny)" in t1 and "39387" in t1
    assert "prepared data:" in t1 and "Missing" not in t1
    t2 = html["02_results"]
    assert "Table 2: AUC and NDCG@10 (synthetic-tiny)" in t2 and "DIN++" in t2
    assert "mdr_wo_ic" in t2 and "detectable_80" in t2  # the tables' comparisons
    gauc = json.loads(
        next((tiny_results / DATASET / "runs").glob("mdr-*-s0/test.json")).read_text()
    )["gauc"]
    assert f"{gauc:.4f}" in t2  # the per-seed table reads the run's own test.json
    t4 = html["04_explain"]
    assert re.search(r"run mdr-[0-9a-f]+-s0: best epoch", t4)
    assert "Missing" not in t4 and "not here" not in t4 and "Cannot" not in t4


def test_figures_notebook_shows_what_exists_and_names_the_sessions(
    html: dict[str, str], tiny_results: Path
) -> None:
    text = html["03_figures"]
    folder = tiny_results / DATASET
    pngs = sorted((folder / "figures").glob("*.png"))
    for png in pngs:
        assert f"{DATASET}/figures/{png.name}" in text
    shown = re.findall(r'<img [^>]*src="data:image/(?:png|jpeg);base64,', text)
    assert len(shown) == len(pngs)  # each one shown, once
    if not (folder / "figures" / "figure3.png").is_file():
        assert "figure3*.png` - make it with `nox -s figures`" in text
    if not (folder / "disentanglement.csv").is_file():
        assert "make it with `nox -s disentanglement`" in text
    if not (tiny_results / "fashion-images").is_dir():
        assert text.count("make it with `nox -s fashion`") == 3


def test_notebooks_say_what_is_missing(tiny_results: Path, tmp_path: Path) -> None:
    """No prepared data and no run folders (a fresh clone): the samples and the explanation
    are skipped with a line saying so and how to make them."""
    bare = tmp_path / "results"
    shutil.copytree(tiny_results, bare, ignore=shutil.ignore_patterns("runs"))
    manifest = bare / DATASET / "table1.manifest.json"
    manifest.write_text(
        json.dumps({**json.loads(manifest.read_text()), "data": str(tmp_path / "gone")})
    )
    nbs = [n for n in NOTEBOOKS if n.stem in ("01_dataset", "04_explain")]
    res = run_notebooks(bare, tmp_path / "html", *nbs)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    t1 = outputs((tmp_path / "html" / "01_dataset.html").read_text())
    assert "The prepared data is not here" in t1 and "Samples skipped" in t1
    t4 = outputs((tmp_path / "html" / "04_explain.html").read_text())
    assert "The run folder is not here" in t4 and "nox -s reproduce-table2" in t4
    for name, text in (("01_dataset", t1), ("04_explain", t4)):
        assert_clean(name, text)


def test_a_failing_cell_fails_the_command(tmp_path: Path) -> None:
    broken = tmp_path / "99_broken.py"
    broken.write_text('# %%\nprint("before")\n\n# %%\nraise ValueError("no such column: gauc")\n')
    res = run_notebooks(tmp_path, tmp_path / "html", broken)
    assert res.returncode == 1
    assert "99_broken.py: cell 1" in res.stderr and "ValueError: no such column: gauc" in res.stderr
    assert not (tmp_path / "html" / "99_broken.html").exists()
    partial = (tmp_path / "html" / "99_broken.failed.html").read_text()
    assert "before" in partial
    assert all(mark in partial for mark in ERROR_MARKS)  # the marks do catch an error


def test_a_cell_past_the_timeout_fails_the_command(tmp_path: Path) -> None:
    slow = tmp_path / "98_slow.py"
    slow.write_text(
        "# %%\nimport sys\nprint(sys.executable)\n\n# %%\nimport time\ntime.sleep(60)\n"
    )
    res = run_notebooks(tmp_path, tmp_path / "html", slow, timeout=2)
    assert res.returncode == 1
    assert "98_slow.py: cell 1 ('import time') failed: CellTimeoutError" in res.stderr
    partial = (tmp_path / "html" / "98_slow.failed.html").read_text()
    assert sys.executable in partial  # the kernel is this interpreter


def test_missing_ipykernel_is_a_clear_error(tmp_path: Path) -> None:
    hide = tmp_path / "sitecustomize.py"  # make ipykernel unimportable in the child only
    hide.write_text("import sys\nsys.modules['ipykernel'] = None\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    res = run_notebooks(tmp_path, tmp_path / "html", env=env)
    assert res.returncode == 2
    assert "ipykernel not importable" in res.stderr and "notebooks" in res.stderr
