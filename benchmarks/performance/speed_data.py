"""Data-pipeline speed: synth and prepare of the Cloth-sized shop, wall time and peak memory.

    python -m benchmarks.speed_data [--size cloth] [--work DIR] [--image-size 64]

Each step runs in its own process (the ``mdr`` command), so its peak resident
memory is measured alone (``getrusage(RUSAGE_CHILDREN).ru_maxrss``). Targets
on the 2-core development machine: prepare at most 3 minutes and 4 GB.
Writes ``results/speed/data-<size>.json`` and ``.md``.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, run_script
from mdr import io as mio
from mdr.argtypes import Parser
from mdr.provenance import manifest


def measure_step(cmd: list[str]) -> dict:
    """Run ``cmd`` in a child process; return wall seconds and its peak RSS in MB."""
    t0 = time.perf_counter()
    # ru_maxrss of RUSAGE_CHILDREN is a maximum over all children so far, so each step runs
    # under its own small intermediate interpreter, which reports its child's peak alone
    wrapper = [sys.executable, "-c",
               "import resource,subprocess,sys;"
               "r=subprocess.run(sys.argv[1:]);"
               "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
               " file=sys.stderr); sys.exit(r.returncode)", *cmd]
    proc = subprocess.run(wrapper, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"step failed: {' '.join(cmd)}")
    kb = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")]
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(kb[-1] / 1024, 1) if kb else None}


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="cloth", choices=["tiny", "small", "cloth"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated data")
    p.add_argument("--results", type=Path, default=RESULTS / "speed")
    a = p.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="mdr-speed-data-"))
    mdr = [sys.executable, "-P", "-m", "mdr.cli"]  # -P: the installed mdr, not ./mdr
    raw, proc = work / "raw", work / "proc"
    try:
        # --overwrite: a reused --work folder holds this benchmark's own earlier outputs
        synth = measure_step([*mdr, "data", "synth", "-q", "--size", a.size, "--seed", "0",
                              "--out", str(raw), "--overwrite"])
        prep = measure_step([*mdr, "data", "prepare", "-q", "--raw", str(raw), "--category",
                             "Synthetic", "--out", str(proc), "--overwrite", "--image-size",
                             str(a.image_size), "--n-neg", "50" if a.size == "tiny" else "100"])
        from mdr.data.dataset import ProcessedDataset

        stats = ProcessedDataset.open(proc).stats()
    finally:
        if not a.keep and a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = manifest(
        benchmark="speed_data", size=a.size, image_size=a.image_size,
        machine={"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        synth=synth, prepare=prep,
        dataset={k: stats[k] for k in ("users", "items", "behaviors")},
        targets={"prepare_wall_s": 180, "prepare_peak_rss_mb": 4096},
    )
    mio.write_json(a.results / f"data-{a.size}.json", result)
    md = (f"# Data pipeline speed ({a.size} shop, {a.image_size}x{a.image_size} images)\n\n"
          f"Machine: {result['machine']['cpus']} CPUs, {result['platform']}; "
          f"commit {result['git_commit']}\n\n"
          "| step | wall (s) | peak RSS (MB) | target |\n|---|---|---|---|\n"
          f"| synth | {synth['wall_s']} | {synth['peak_rss_mb']} | - |\n"
          f"| prepare | {prep['wall_s']} | {prep['peak_rss_mb']} | <= 180 s, <= 4096 MB |\n\n"
          f"Dataset: {stats['users']} users, {stats['items']} items, "
          f"{stats['behaviors']} behaviours.\n")
    mio.write_text(a.results / f"data-{a.size}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    run_script("speed_data", main)
