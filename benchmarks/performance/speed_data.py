"""The paper's scale on this machine: synth, prepare, one MDR epoch and full ranking of the
Cloth-sized shop, wall time and peak memory.

    python -m benchmarks.speed_data [--size cloth] [--work DIR] [--image-size 64]
                                    [--train] [--rank-users 1000]

Each step runs in its own process (the ``mdr`` command), so its peak resident
memory is measured alone (``getrusage(RUSAGE_CHILDREN).ru_maxrss``). Targets
on the 2-core development machine: prepare at most 3 minutes and 4 GB. With
``--train`` two more steps: one MDR epoch of ``benchmarks/configs/mdr_amazon.yaml``
(the real-data config: 64x64 images, the image cache) on the CPU with every core, and
the full ranking of a fixed subset of ``--rank-users`` users over all items, from which
the time to rank every user is extrapolated (it is linear in the users). Memory target
for the Cloth-sized shop on the CPU: 16 GB.
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
from mdr.argtypes import Parser, int_range
from mdr.provenance import manifest


def measure_step(cmd: list[str]) -> dict:
    """Run ``cmd`` in a child process; return wall seconds and its peak RSS in MB."""
    t0 = time.perf_counter()
    # ru_maxrss of RUSAGE_CHILDREN is a maximum over all children so far, so each step runs
    # under its own small intermediate interpreter, which reports its child's peak alone
    wrapper = [
        sys.executable,
        "-c",
        "import resource,subprocess,sys;"
        "r=subprocess.run(sys.argv[1:]);"
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
        " file=sys.stderr); sys.exit(r.returncode)",
        *cmd,
    ]
    proc = subprocess.run(wrapper, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"step failed: {' '.join(cmd)}")
    kb = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")]
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(kb[-1] / 1024, 1) if kb else None}


def train_steps(mdr: list[str], proc: Path, work: Path, rank_users: int, n_users: int) -> dict:
    """One MDR epoch (no test) and a full-ranking evaluation of ``rank_users`` users."""
    import json

    from benchmarks.common import CONFIGS

    run = work / "run"
    threads = str(os.cpu_count() or 1)
    common = [
        "--config",
        str(CONFIGS / "mdr_amazon.yaml"),
        "--data",
        str(proc),
        "--device",
        "cpu",
        "--threads",
        threads,
    ]
    train = measure_step(
        [
            *mdr,
            "train",
            "-q",
            *common,
            "--out",
            str(run),
            "--epochs",
            "1",
            "--overwrite",
            "--set",
            "train.full_ranking=false",
            "--set",
            f"train.full_rank_users={rank_users}",
        ]
    )
    lists = measure_step([*mdr, "evaluate", str(run), "--split", "test", "--json", "-q"])
    rank = measure_step(
        [*mdr, "evaluate", str(run), "--split", "test", "--full-ranking", "--json", "-q"]
    )
    epoch = json.loads((run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
    ranked = min(rank_users, n_users)
    per_user = max(rank["wall_s"] - lists["wall_s"], 0.0) / ranked  # ranking alone
    return {
        "train": train,
        "lists": lists,
        "rank": rank,
        "rank_users": ranked,
        "threads": int(threads),
        "epoch": {
            k: epoch[k] for k in ("train_samples", "train_s", "valid_s", "epoch_s", "samples_per_s")
        },
        "full_ranking_all_users_s_estimate": round(per_user * n_users, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="cloth", choices=["tiny", "small", "cloth"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated data")
    p.add_argument("--results", type=Path, default=RESULTS / "speed")
    p.add_argument(
        "--train",
        action="store_true",
        help="also time one MDR epoch and full ranking (the paper's scale)",
    )
    p.add_argument(
        "--rank-users",
        type=int_range(1, 10**7),
        default=1000,
        help="users ranked over all items with --train (default 1000)",
    )
    a = p.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="mdr-speed-data-"))
    mdr = [sys.executable, "-P", "-m", "mdr.cli"]  # -P: the installed mdr, not ./mdr
    raw, proc = work / "raw", work / "proc"
    try:
        # --overwrite: a reused --work folder holds this benchmark's own earlier outputs
        synth = measure_step(
            [
                *mdr,
                "data",
                "synth",
                "-q",
                "--size",
                a.size,
                "--seed",
                "0",
                "--out",
                str(raw),
                "--overwrite",
            ]
        )
        prep = measure_step(
            [
                *mdr,
                "data",
                "prepare",
                "-q",
                "--raw",
                str(raw),
                "--category",
                "Synthetic",
                "--out",
                str(proc),
                "--overwrite",
                "--image-size",
                str(a.image_size),
                "--n-neg",
                "50" if a.size == "tiny" else "100",
            ]
        )
        from mdr.data.dataset import ProcessedDataset

        stats = ProcessedDataset.open(proc).stats()
        training = train_steps(mdr, proc, work, a.rank_users, stats["users"]) if a.train else None
    finally:
        if not a.keep and a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = manifest(
        benchmark="speed_data",
        size=a.size,
        image_size=a.image_size,
        machine={"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        synth=synth,
        prepare=prep,
        training=training,
        dataset={k: stats[k] for k in ("users", "items", "behaviors")},
        targets={"prepare_wall_s": 180, "prepare_peak_rss_mb": 4096, "train_peak_rss_mb": 16384},
    )
    mio.write_json(a.results / f"data-{a.size}.json", result)
    md = (
        f"# Data pipeline speed ({a.size} shop, {a.image_size}x{a.image_size} images)\n\n"
        f"Machine: {result['machine']['cpus']} CPUs, {result['platform']}; "
        f"commit {result['git_commit']}\n\n"
        "| step | wall (s) | peak RSS (MB) | target |\n|---|---|---|---|\n"
        f"| synth | {synth['wall_s']} | {synth['peak_rss_mb']} | - |\n"
        f"| prepare | {prep['wall_s']} | {prep['peak_rss_mb']} | <= 180 s, <= 4096 MB |\n\n"
        f"Dataset: {stats['users']} users, {stats['items']} items, "
        f"{stats['behaviors']} behaviours.\n"
    )
    if training is not None:
        t, e = training, training["epoch"]
        md += (
            "\n## One MDR epoch and full ranking (mdr_amazon.yaml, CPU)\n\n"
            "| step | wall (s) | peak RSS (MB) | figures |\n|---|---|---|---|\n"
            f"| train 1 epoch | {t['train']['wall_s']} | {t['train']['peak_rss_mb']} | "
            f"{e['train_samples']} samples, train {e['train_s']:.0f} s "
            f"({e['samples_per_s']:.0f} samples/s), validation {e['valid_s']:.0f} s |\n"
            f"| evaluate the 1+100 lists of every user | {t['lists']['wall_s']} | "
            f"{t['lists']['peak_rss_mb']} | - |\n"
            f"| the same plus full ranking of {t['rank_users']} users | "
            f"{t['rank']['wall_s']} | {t['rank']['peak_rss_mb']} | ranking every user "
            f"({stats['users']}): ~{t['full_ranking_all_users_s_estimate']:.0f} s "
            "(the difference, per user, times the users) |\n"
        )
    mio.write_text(a.results / f"data-{a.size}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    run_script("speed_data", main)
