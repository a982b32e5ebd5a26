"""Beyond one machine (``nox -s tests-slow``): the grid on a local Ray cluster, the same
table as the local executor byte for byte, tuning through it, a killed worker's run
resumed; and the GPU check's CPU dry run, so that a config rename cannot break it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import CONFIG, REPO

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the cluster extra (pip install '.[cluster]') is absent")
SMOKE = ["--dataset", "synthetic-tiny", "--quick", "--max-steps", "2", "--jobs", "2", "-q"]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray of 2 CPUs, shared by the module's tests."""
    from benchmarks.executor import RayExecutor

    RayExecutor(None, num_cpus=2)
    yield
    ray.shutdown()


def test_a_quick_table_on_ray_is_the_local_table_byte_for_byte(
    cluster, tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.paper import table2

    monkeypatch.setenv("MDR_DATA", str(data_root))
    for executor in ("local", "ray"):
        assert (
            table2.main([*SMOKE, "--executor", executor, "--results", str(tmp_path / executor)])
            == 0
        )
    for ext in ("csv", "md", "comparisons.csv", "tex"):
        name = f"table2_quick.{ext}"
        local = tmp_path / "local" / "synthetic-tiny" / name
        assert (tmp_path / "ray" / "synthetic-tiny" / name).read_bytes() == local.read_bytes()


def test_a_two_trial_tuning_through_ray(
    cluster, tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.paper import tune

    monkeypatch.setenv("MDR_DATA", str(data_root))
    for executor in ("local", "ray"):
        assert (
            tune.main(
                [
                    "--dataset",
                    "synthetic-tiny",
                    "--quick",
                    "-q",
                    "--models",
                    "pnn",
                    "abae",
                    "--executor",
                    executor,
                    "--results",
                    str(tmp_path / executor),
                ]
            )
            == 0
        )
    for model in ("pnn", "abae"):
        local = tmp_path / "local" / "synthetic-tiny" / "tuning_quick" / f"{model}.csv"
        on_ray = tmp_path / "ray" / "synthetic-tiny" / "tuning_quick" / f"{model}.csv"
        assert on_ray.read_bytes() == local.read_bytes()


def _train_argv(tiny_proc: Path, run: Path) -> tuple[str, ...]:
    return (
        sys.executable,
        "-P",
        "-m",
        "mdr.cli",
        "train",
        "-q",
        "--config",
        str(CONFIG),
        "--data",
        str(tiny_proc),
        "--out",
        str(run),
        "--epochs",
        "4",
        "--max-steps",
        "6",
        "--set",
        "train.batch_size=128",
        "--set",
        "train.full_ranking=false",
        "--threads",
        "1",
        "--resume",
    )


def _parent_of_training(run: Path) -> int | None:
    """The pid of the Ray worker whose child trains into ``run``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().split()
        except OSError:
            continue
        if b"train" in cmd and str(run).encode() in cmd:
            return int(stat[3])
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_worker_s_run_is_resumed_not_lost(
    cluster, tmp_path: Path, tiny_proc: Path
) -> None:
    from benchmarks.executor import RayExecutor, Task

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(_train_argv(tiny_proc, whole), check=True, capture_output=True)
    executor = RayExecutor(None)
    task = Task("train", _train_argv(tiny_proc, cut), tmp_path / "cut.log")
    done = threading.Thread(target=executor.run, args=([task],))
    done.start()
    deadline = time.monotonic() + 600  # a hang guard only: a loaded machine starts slowly
    while not (cut / "checkpoint.pt").is_file():  # the first epoch is on disk
        assert time.monotonic() < deadline, "the run never wrote its first checkpoint"
        time.sleep(0.2)
    worker = _parent_of_training(cut)
    assert worker is not None
    os.kill(worker, signal.SIGKILL)  # the Ray worker dies; Ray retries its task
    done.join(timeout=600)
    assert not done.is_alive()
    assert (cut / "test.json").read_bytes() == (whole / "test.json").read_bytes()
    assert "resumed_from_epoch: null" not in (cut / "config.yaml").read_text()


def test_the_gpu_check_dry_run_passes_on_the_cpu(tmp_path: Path) -> None:
    """``MDR_GPU_SIZE=tiny MDR_DEVICE=cpu bash benchmarks/performance/gpu_check.sh``: every
    step of the H200 check on the tiny shop, so a renamed config cannot break it silently."""
    env = {
        **os.environ,
        "MDR_GPU_SIZE": "tiny",
        "MDR_DEVICE": "cpu",
        "PYTHON": sys.executable,
        "MDR_GPU_WORK": str(tmp_path / "work"),
    }
    res = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "performance" / "gpu_check.sh"), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summaries = list((tmp_path / "out").glob("gpu-check-*.json"))
    assert len(summaries) == 1 and '"epoch"' in summaries[0].read_text()
