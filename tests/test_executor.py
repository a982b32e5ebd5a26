"""The executor interface without a cluster: the local pool, its one error for failed tasks,
the one line for a missing Ray, and what a Ray task asks for (``tests/test_cluster.py`` runs
a real local Ray in the slow session)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks.common import BenchmarkError
from benchmarks.executor import LocalExecutor, RayExecutor, Task, make_executor


def _task(tmp_path: Path, name: str, code: str) -> Task:
    return Task(name, (sys.executable, "-c", code), tmp_path / f"{name}.log")


def test_the_local_pool_runs_every_task_and_names_the_failed_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok = _task(tmp_path, "ok", f"open({str(out)!r}, 'w').write('done')")
    bad = _task(tmp_path, "bad", "import sys; print('boom'); sys.exit(3)")
    with pytest.raises(BenchmarkError, match=r"1 task\(s\) failed: bad \(exit 3, see .*bad\.log"):
        LocalExecutor(jobs=2).run([bad, ok])
    assert out.read_text() == "done"  # a failed task does not stop the others
    assert "boom" in (tmp_path / "bad.log").read_text()


def test_a_missing_ray_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(BenchmarkError, match=r"Ray is not installed.*pip install '\.\[cluster\]'"):
        make_executor("ray", jobs=2)
    with pytest.raises(BenchmarkError, match="--ray-address goes with --executor ray"):
        make_executor("local", jobs=2, address="auto")


@pytest.mark.parametrize(
    ("device", "cluster_gpus", "asked"),
    [
        ("cpu", 4, 0),
        ("cuda", 0, 1),
        ("cuda:1", 4, 1),
        ("auto", 4, 1),
        ("auto", 0, 0),
    ],
)
def test_a_ray_task_asks_for_a_gpu_when_its_runs_train_on_cuda(
    device: str, cluster_gpus: int, asked: int
) -> None:
    executor = RayExecutor.__new__(RayExecutor)  # no cluster: only the resource rule
    resources = {"CPU": 8.0, **({"GPU": float(cluster_gpus)} if cluster_gpus else {})}
    executor.ray = SimpleNamespace(cluster_resources=lambda: resources)
    assert executor.gpus(device) == asked
