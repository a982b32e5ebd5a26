"""One executor interface for every grid of runs: the tables' runs, the ablations, the tuner's
study workers.

A :class:`Task` is a command line (``mdr train ...``, ``mdr tune ...``) with its log file
and the CPUs (and GPUs) it needs. Every command is idempotent: a run folder resumes its
checkpoint (``--resume``), a study worker continues its study, so a task that is started
again after its worker died continues instead of starting over.

- ``local`` (default): ``--jobs N`` subprocesses at a time on this machine.
- ``ray``: every task is a Ray task that asks for its CPUs (and a GPU when the runs train
  on CUDA) and runs the same command on whichever node Ray places it; a task whose worker
  dies is retried (Ray's ``max_retries``) and resumes. Ray is an optional extra
  (``pip install '.[cluster]'``), imported only here and only when asked for. Requirements
  of a cluster: every node sees the same paths (the repository, the Python environment at
  the same path, ``$MDR_DATA`` and the results folder: a shared filesystem), and the
  driver's ``MDR_*`` and ``PYTHON*`` environment variables are passed to every task.

Tasks start in the order given (callers put the longest first) and are reported as they
end: ``[i/n] NAME: S s``. A failed task does not stop the others; after all have ended,
the failures are one :class:`~benchmarks.common.BenchmarkError` naming each task's log.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from benchmarks.common import ROOT, BenchmarkError

EXECUTORS = ("local", "ray")
_ENV_PREFIXES = ("MDR_", "PYTHON", "OMP_", "MKL_", "CUDA_", "NCCL_", "GLOO_")


@dataclass(frozen=True)
class Task:
    name: str  # shown in progress lines and errors
    argv: tuple[str, ...]  # the command
    log: Path  # its stdout and stderr
    cpus: int = 1
    device: str = "cpu"  # the runs' train.device: with Ray, cuda asks for a GPU
    env: dict[str, str] = field(default_factory=dict)  # set on top of the driver's


class Executor(Protocol):
    def run(self, tasks: Sequence[Task]) -> None:
        """Run every task; raise one BenchmarkError naming the failed ones at the end."""
        ...


def task_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment a task's command gets: the driver's own variables of this project,
    Python and the numeric libraries, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    env.setdefault("PYTHONHASHSEED", "0")
    return {**env, **extra}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the command is killed when the process that started it dies (a killed Ray
    worker must not leave a run training on that its retry would collide with)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_command(argv: Sequence[str], log: str, env: dict[str, str]) -> int:
    """Run one command with its output in ``log``; its exit status."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    full = {**os.environ, **env}
    with open(log, "w", encoding="utf-8") as fh:
        return subprocess.run(
            list(argv),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=full,
            cwd=ROOT,
            preexec_fn=_die_with_parent,
        ).returncode


def _failures(failed: list[tuple[Task, int]]) -> None:
    if failed:
        lines = "; ".join(f"{t.name} (exit {rc}, see {t.log})" for t, rc in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise BenchmarkError(f"{len(failed)} task(s) failed: {lines}{more}")


class LocalExecutor:
    """``jobs`` commands at a time as subprocesses of this machine."""

    def __init__(self, jobs: int = 2) -> None:
        self.jobs = jobs

    def run(self, tasks: Sequence[Task]) -> None:
        failed: list[tuple[Task, int]] = []
        done = [0]

        def one(task: Task) -> None:
            t0 = time.perf_counter()
            rc = run_command(task.argv, str(task.log), task_env(task.env))
            done[0] += 1
            if rc != 0:
                failed.append((task, rc))
            print(
                f"[{done[0]}/{len(tasks)}] {task.name}: {time.perf_counter() - t0:.0f} s"
                + ("" if rc == 0 else f" FAILED (exit {rc})"),
                flush=True,
            )

        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            list(pool.map(one, tasks))
        _failures(failed)


class RayExecutor:
    """Every task a Ray task on the cluster at ``address`` (None: a local Ray started here
    with ``num_cpus``)."""

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, max_retries: int = 2
    ) -> None:
        try:
            import ray
        except ImportError:
            raise BenchmarkError(
                "--executor ray: Ray is not installed; install the cluster "
                "extra: pip install '.[cluster]'"
            ) from None
        self.ray = ray
        self.max_retries = max_retries
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": num_cpus}
            try:
                ray.init(
                    **kwargs, include_dashboard=False, log_to_driver=False, configure_logging=False
                )
            except ConnectionError as e:
                raise BenchmarkError(
                    f"--ray-address {address}: no Ray cluster there "
                    f"({str(e).splitlines()[0][:200]})"
                ) from None

    def gpus(self, device: str) -> int:
        """GPUs a task of runs on ``device`` asks for: one on ``cuda``/``cuda:N``, one on
        ``auto`` when the cluster has GPUs (``auto`` trains on CUDA where there is one),
        none on the CPU. Ray then places the task on a node with a GPU free and sets its
        ``CUDA_VISIBLE_DEVICES``."""
        if device.startswith("cuda"):
            return 1
        if device == "auto":
            return int(self.ray.cluster_resources().get("GPU", 0) > 0)
        return 0

    def run(self, tasks: Sequence[Task]) -> None:
        ray = self.ray
        remote = ray.remote(run_command)
        pending = {}
        for task in tasks:
            ref = remote.options(
                num_cpus=task.cpus, num_gpus=self.gpus(task.device), max_retries=self.max_retries
            ).remote(task.argv, str(task.log), task_env(task.env))
            pending[ref] = (task, time.perf_counter())
        failed: list[tuple[Task, int]] = []
        n = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task, t0 = pending.pop(ready[0])
            n += 1
            try:
                rc = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died more often than retried
                print(f"{task.name}: {type(e).__name__}", file=sys.stderr)
                rc = -1
            if rc != 0:
                failed.append((task, rc))
            print(
                f"[{n}/{len(tasks)}] {task.name}: {time.perf_counter() - t0:.0f} s"
                + ("" if rc == 0 else f" FAILED (exit {rc})"),
                flush=True,
            )
        _failures(failed)


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--ray-address`` (every table and tuning script has them)."""
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where the runs execute: local subprocesses (--jobs at a time, the "
        "default) or a Ray cluster (pip install '.[cluster]')",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="with --executor ray: the cluster to join (e.g. ray://head:10001 or "
        "auto); default: start a local Ray of --jobs CPUs",
    )


def make_executor(kind: str, jobs: int, address: str | None = None) -> Executor:
    """The executor of ``--executor`` (``local`` with ``--jobs``, ``ray`` at ``--ray-address``
    or a local Ray of ``--jobs`` CPUs)."""
    if kind == "local":
        if address:
            raise BenchmarkError("--ray-address goes with --executor ray")
        return LocalExecutor(jobs)
    if kind == "ray":
        return RayExecutor(address, num_cpus=None if address else jobs)
    raise BenchmarkError(f"--executor {kind!r}: one of {', '.join(EXECUTORS)}")


__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "Task",
    "add_executor_options",
    "make_executor",
    "run_command",
    "task_env",
]
