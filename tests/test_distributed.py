"""Multi-process training (mdr.training.distributed + the trainer under torchrun).

Fast tests: the sharding of each epoch's samples over ranks (known answers and
partition properties, on the trainer's own batch builder), the torchrun
environment, and one in-process run in a 1-process gloo group with DDP, which
must give exactly the numbers of a plain run. Slow tests: 2 CPU processes under
torchrun on the tiny shop (contract, exact resume) and a failing rank.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from mdr.config import RunConfig, apply_overrides
from mdr.data.batches import BatchIterator
from mdr.models.base import ItemFeatures
from mdr.training import distributed
from mdr.training.registry import register
from mdr.training.runs import RunError
from mdr.training.train import _epoch_batches, train
from tests.fixtures_proc import random_sequences, write_tiny_proc
from tests.helpers import CONFIG, REPO

TIME_KEYS = {"train_s", "valid_s", "epoch_s", "elapsed_s", "samples_per_s"}
ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lines(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def rank_batches(
    samples: dict[str, np.ndarray],
    batch_size: int,
    world: int,
    max_steps: int | None = None,
    seed: int = 5,
    epoch: int = 2,
) -> list[list[dict[str, Tensor]]]:
    """The trainer's batches (mdr.training.train._epoch_batches) of each rank; world 0: no torchrun."""
    cfg = apply_overrides(
        RunConfig(),
        {"train.batch_size": batch_size, "seed": seed, "train.max_steps_per_epoch": max_steps},
    )
    out = []
    for r in range(max(world, 1)):
        ctx = distributed.DistContext(r, world, r, "gloo") if world else distributed.DistContext()
        job = SimpleNamespace(cfg=cfg, ctx=ctx, device=torch.device("cpu"))
        out.append(list(_epoch_batches(samples, job, epoch, batch_size)))  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- sharding


def global_steps(n: int, batch_size: int, world_size: int) -> int:
    """Optimiser steps of an epoch of ``n`` rows: ceil(n / batch_size), less a final partial
    batch with fewer rows than ranks (the contract shard_rows keeps)."""
    full, tail = divmod(n, batch_size)
    return full + int(tail >= world_size and tail > 0)


def test_shard_rows_known_answers() -> None:
    order = np.arange(10)
    r0, n0 = distributed.shard_rows(order, 4, 0, 2)
    r1, n1 = distributed.shard_rows(order, 4, 1, 2)
    assert (n0, n1) == (2, 2)
    assert r0.tolist() == [0, 1, 4, 5, 8] and r1.tolist() == [2, 3, 6, 7, 9]
    # batch 5 over 2 ranks: 3 + 2 rows; the tail of 1 row (< 2 ranks) is dropped
    order = np.array([7, 3, 9, 0, 1, 8, 2, 6, 5, 4, 10])
    r0, n0 = distributed.shard_rows(order, 5, 0, 2)
    r1, n1 = distributed.shard_rows(order, 5, 1, 2)
    assert (n0, n1) == (3, 2)
    assert r0.tolist() == [7, 3, 9, 8, 2, 6] and r1.tolist() == [0, 1, 5, 4]
    assert global_steps(11, 5, 2) == 2 and global_steps(12, 5, 2) == 3
    assert distributed.split_sizes(7, 3).tolist() == [3, 2, 2]


@pytest.mark.parametrize(
    ("n", "batch", "world"),
    [(103, 16, 2), (103, 16, 3), (96, 16, 4), (50, 7, 3), (17, 16, 2), (5, 5, 5)],
)
def test_ranks_partition_every_global_batch(n: int, batch: int, world: int) -> None:
    samples = {"idx": np.arange(n, dtype=np.int64), "label": np.zeros(n, np.float32)}
    single = rank_batches(samples, batch, 0)[0]
    ranks = rank_batches(samples, batch, world)
    steps = global_steps(n, batch, world)
    assert [len(b) for b in ranks] == [steps] * world  # every rank steps equally often
    for s in range(steps):  # step s of the ranks, in rank order = step s of one process
        parts = [ranks[r][s]["idx"] for r in range(world)]
        assert all(len(p) > 0 for p in parts)
        assert torch.cat(parts).tolist() == single[s]["idx"].tolist()
    seen = np.concatenate([b["idx"].numpy() for r in ranks for b in r])
    tail = n % batch
    dropped = tail if 0 < tail < world else 0
    assert len(seen) == len(np.unique(seen)) == n - dropped  # disjoint, nothing lost
    again = rank_batches(samples, batch, world)
    assert all(
        torch.equal(a["idx"], b["idx"])
        for x, y in zip(ranks, again, strict=True)
        for a, b in zip(x, y, strict=True)
    )  # deterministic
    other = rank_batches(samples, batch, world, epoch=3)
    assert not torch.equal(other[0][0]["idx"], ranks[0][0]["idx"])  # reshuffled per epoch


def test_world_of_one_and_step_cap() -> None:
    n = 90
    samples = {"idx": np.arange(n, dtype=np.int64)}
    single = rank_batches(samples, 8, 0, max_steps=4)[0]
    one = rank_batches(samples, 8, 1, max_steps=4)[0]
    assert len(single) == len(one) == 4
    assert all(torch.equal(a["idx"], b["idx"]) for a, b in zip(single, one, strict=True))
    two = rank_batches(samples, 8, 2, max_steps=4)
    assert [len(b) for b in two] == [4, 4]
    assert torch.cat([two[0][3]["idx"], two[1][3]["idx"]]).tolist() == single[3]["idx"].tolist()
    # the shuffle is BatchIterator's own
    order = BatchIterator(samples, 8, shuffle=True, seed=5, epoch=2).order()
    assert order is not None and single[0]["idx"].tolist() == order[:8].tolist()


def test_batch_smaller_than_world_is_refused() -> None:
    with pytest.raises(RunError, match="batch_size 2 is smaller than the 3 ranks"):
        distributed.shard_rows(np.arange(10), 2, 0, 3)
    with pytest.raises(ValueError, match="rank 3 outside"):
        distributed.shard_rows(np.arange(10), 4, 3, 3)


# --------------------------------------------------------------------------- environment


def test_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "RANK": "1",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "h",
        "MASTER_PORT": "1",
    }
    assert distributed.launched_by_torchrun(env)
    assert not distributed.launched_by_torchrun({k: v for k, v in env.items() if k != "RANK"})
    assert distributed.env_ranks(env) == (1, 4, 1)
    with pytest.raises(RunError, match="must be integers"):
        distributed.env_ranks(env | {"RANK": "one"})
    with pytest.raises(RunError, match="inconsistent"):
        distributed.env_ranks(env | {"RANK": "4"})
    assert distributed.timeout({}).total_seconds() == 60 * distributed.DEFAULT_TIMEOUT_MIN
    assert distributed.timeout({distributed.ENV_TIMEOUT: "1.5"}).total_seconds() == 90
    with pytest.raises(RunError, match="MDR_DIST_TIMEOUT_MIN"):
        distributed.timeout({distributed.ENV_TIMEOUT: "soon"})
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    assert distributed.init(torch.device("cpu")) == distributed.DistContext()
    assert distributed.is_main() and distributed.world_size() == 1
    monkeypatch.setenv("RANK", "2")
    assert distributed.rank() == 2 and not distributed.is_main()


def test_local_device() -> None:
    ctx = distributed.DistContext(3, 4, 1, "nccl")
    cpu = torch.device("cpu")
    assert distributed.local_device(cpu, ctx) == cpu
    assert distributed.local_device(
        torch.device("cuda"), distributed.DistContext()
    ) == torch.device("cuda")  # one process: as given
    with pytest.raises(RunError, match="each rank uses cuda:LOCAL_RANK"):
        distributed.local_device(torch.device("cuda", 0), ctx)
    if torch.cuda.device_count() < 2:
        with pytest.raises(RunError, match="LOCAL_RANK 1 but only"):
            distributed.local_device(torch.device("cuda"), ctx)


def test_rank_seeds_are_distinct_and_fixed() -> None:
    seeds = [distributed.rank_seed(7, r) for r in range(1, 5)]
    assert len(set(seeds)) == 4 and seeds == [distributed.rank_seed(7, r) for r in range(1, 5)]
    assert distributed.rank_seed(7, 1, epoch=2) != seeds[0]
    distributed.seed_rank(7, 1)
    a = torch.rand(3)
    distributed.seed_rank(7, 1)
    assert torch.equal(a, torch.rand(3))


def test_constant_buffers_are_not_synchronised() -> None:
    m = nn.Module()
    m.register_buffer("images", torch.zeros(2), persistent=False)
    m.register_buffer("count", torch.zeros(()))
    m.sub = nn.BatchNorm1d(2)
    wrapped = distributed.LossForward(m)
    assert distributed.constant_buffers(wrapped) == ["model.images"]


# --------------------------------------------------------------------------- in-process DDP


class GatedRec(nn.Module):
    """Id embeddings with dropout (torch RNG) and a bias layer that only batches whose first
    label is 1 use, so the set of used parameters changes from step to step (as MDR's
    weak-supervision classifiers): DDP must leave the unused one's grad None, as one
    process does, or Adam would move it."""

    def __init__(self, cfg: RunConfig, features: ItemFeatures) -> None:
        super().__init__()
        self.item = nn.Embedding(features.n_items, cfg.model.id_dim)
        self.gate = nn.Linear(cfg.model.id_dim, 1)
        self.drop = nn.Dropout(0.3)
        self.register_buffer("table", torch.arange(features.n_items), persistent=False)

    def encode_items(self, items: Tensor) -> Tensor:
        return self.item(self.table[items])

    def score(
        self,
        reps: Tensor,
        hist: Tensor,
        hist_mask: Tensor,
        cands: Tensor,
        user: Tensor | None = None,
    ) -> Tensor:
        m = hist_mask.unsqueeze(-1).float()
        q = self.drop((reps[hist] * m).sum(1) / m.sum(1).clamp(min=1.0))  # (B, D)
        return (reps[cands] * q.unsqueeze(1)).sum(-1)  # (B, C)

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        return self.score(
            self.item.weight, batch["hist"], batch["hist_mask"], batch["cand"].unsqueeze(1)
        )[:, 0]

    def calculate_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.predict(batch)
        if bool(batch["label"][0] > 0):
            logits = logits + self.gate(self.item(batch["cand"]))[:, 0]
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"])
        return {"loss": bce, "bce": bce.detach()}


register("gated_test", lambda cfg, f: GatedRec(cfg, f), replace=True)


@pytest.fixture(scope="module")
def small_proc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    seqs = random_sequences(40, 30, seed=1, min_len=5, max_len=10)
    return write_tiny_proc(tmp_path_factory.mktemp("proc"), seqs, n_items=30, n_neg_eval=9)


def gated_cfg(**overrides: Any) -> RunConfig:
    base = {
        "model.name": "gated_test",
        "model.id_dim": 8,
        "train.epochs": 2,
        "train.batch_size": 16,
        "train.lr": 0.05,
        "train.max_hist": 5,
        "train.eval_batch_size": 8,
        "train.num_threads": 1,
        "seed": 3,
    }
    return apply_overrides(RunConfig(), base | overrides)


def test_one_process_group_gives_the_plain_numbers(
    small_proc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = gated_cfg()
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    plain = train(cfg, small_proc, tmp_path / "plain", progress=False)
    monkeypatch.setenv("MDR_DIST_TIMEOUT_MIN", "2")
    for k, v in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(k, v)
    ddp = train(cfg, small_proc, tmp_path / "ddp", progress=False)
    assert not dist.is_initialized()  # train() created the group and destroyed it
    assert ddp == plain
    assert lines(tmp_path / "ddp") == lines(tmp_path / "plain")
    ckpt = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert len(ckpt["rng_ranks"]) == 1
    assert "rng_ranks" not in torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=True)
    text = (tmp_path / "ddp" / "config.yaml").read_text()
    assert "world_size: 1" in text and "backend: gloo" in text
    assert "world_size" not in (tmp_path / "plain" / "config.yaml").read_text()


# --------------------------------------------------------------------------- torchrun (slow)


def torchrun(
    args: list[str], env: dict[str, str], nproc: int = 2, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--master_port={free_port()}",
        "--monitor-interval=0.5",
        *args,
    ]
    return subprocess.run(
        cmd,
        cwd=REPO,
        env=env | {"OMP_NUM_THREADS": "1"},
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def cli_train(proc: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        "-m",
        "mdr.cli",
        "train",
        "-q",
        "--config",
        str(CONFIG),
        "--data",
        str(proc),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--max-steps",
        "3",
        "--threads",
        "1",
        "--set",
        "train.batch_size=256",
        "--set",
        "train.full_ranking=false",
        *extra,
    ]


@pytest.mark.slow
def test_two_cpu_processes_keep_the_single_process_contract(
    tiny_proc: Path, tiny_mdr_run: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    run = tmp_path / "ddp"
    done = torchrun(cli_train(tiny_proc, run, 2), cli_env)
    assert done.returncode == 0, done.stderr[-3000:]
    # the same files and metric keys as a single-process run (tiny_mdr_run: same config)
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in tiny_mdr_run.iterdir())
    single = json.loads((tiny_mdr_run / "test.json").read_text())
    result = json.loads((run / "test.json").read_text())
    assert result.keys() == single.keys()
    rows = lines(run)
    assert [r.keys() for r in rows] == [r.keys() for r in lines(tiny_mdr_run)]
    assert [r["step"] for r in rows] == [3, 6]
    assert all(r["train_samples"] == 3 * 256 for r in rows)  # global batch 256 over 2 ranks
    assert all(math.isfinite(v) for r in rows for k, v in r.items() if k.startswith("train/"))
    for key in ("gauc", "auc", "ndcg@10", "hr@10", "best_valid_gauc"):
        assert 0.0 <= result[key] <= 1.0
    assert result["epochs_run"] == 2 and result["step"] == 6
    assert "world_size: 2" in (run / "config.yaml").read_text()
    assert len(torch.load(run / "checkpoint.pt", weights_only=True)["rng_ranks"]) == 2

    # --resume restores every rank: 2 epochs + 1 resumed = 3 uninterrupted epochs, exactly
    again = torchrun(cli_train(tiny_proc, run, 3, "--resume"), cli_env)
    assert again.returncode == 0, again.stderr[-3000:]
    straight = tmp_path / "straight"
    ref = torchrun(cli_train(tiny_proc, straight, 3), cli_env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert lines(run)[:2] == rows and len(lines(run)) == 3
    assert lines(run) == lines(straight)
    assert json.loads((run / "test.json").read_text()) == json.loads(
        (straight / "test.json").read_text()
    )
    assert (run / "DONE").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pnn", "deepfm"])
def test_the_ctr_baselines_take_the_same_torchrun_path(
    model: str, tiny_proc: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """deepctr networks under DDP: PNN leaves its linear part unused, DeepFM uses all."""
    run = tmp_path / model
    done = torchrun(cli_train(tiny_proc, run, 2, "--model", model), cli_env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((run / "test.json").read_text())
    assert result["model"] == model and result["epochs_run"] == 2 and result["step"] == 6
    assert 0.0 <= result["gauc"] <= 1.0
    assert "world_size: 2" in (run / "config.yaml").read_text()


FAILING_RANK = textwrap.dedent("""
    import os, sys
    from mdr.config import apply_overrides, load_run_config
    from mdr.training.train import train

    def hook(epoch, step):
        if os.environ["RANK"] == "1" and step == 2:
            raise RuntimeError("injected failure")

    cfg = apply_overrides(load_run_config(sys.argv[1]), {
        "train.epochs": 2, "train.max_steps_per_epoch": 3, "train.batch_size": 256,
        "train.full_ranking": False, "train.num_threads": 1})
    train(cfg, sys.argv[2], sys.argv[3], progress=False, on_step=hook)
""")


@pytest.mark.slow
def test_a_failing_rank_stops_the_group(
    tiny_proc: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    args = [
        "--no-python",
        sys.executable,
        "-c",
        FAILING_RANK,
        str(CONFIG),
        str(tiny_proc),
        str(tmp_path / "run"),
    ]
    done = torchrun(args, cli_env, timeout=300)  # a hung rank 0 would time out here
    assert done.returncode != 0
    assert "mdr: rank 1 of 2 failed (RuntimeError: injected failure)" in done.stderr
    assert not (tmp_path / "run" / "DONE").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no epoch finished
