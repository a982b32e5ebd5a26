"""Multi-process training under ``torchrun``: process-group helpers and per-rank sharding.

The trainer (:mod:`mdr.training.train`) runs unchanged under::

    torchrun --nproc_per_node=N -m mdr.cli train --config CFG --data PROC --out RUN

:func:`init` joins the process group that torchrun describes in the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
without those variables it returns a single-process :class:`DistContext` and
nothing else changes. The backend follows the device: ``gloo`` on the CPU,
``nccl`` on CUDA (``MDR_DIST_BACKEND`` overrides it). Control messages (the
barrier while rank 0 evaluates, the epoch's loss sums, RNG states, the
early-stopping state) always travel over a gloo group, so they never hold a
GPU and follow the same code path on the CPU and on CUDA.

Sharding (:func:`shard_rows`): the epoch's samples are shuffled exactly as in a
single process (:meth:`mdr.data.batches.BatchIterator.order`) and cut into the
same global batches of ``train.batch_size`` rows; rank ``r`` takes the ``r``-th
contiguous part of every global batch (``np.array_split`` sizes: the first
``batch_size % world_size`` ranks get one row more). So the global batch stays
``train.batch_size`` whatever the number of processes, every rank takes the
same number of steps, and one optimiser step of N ranks sees the rows of one
single-process step. A final partial batch with fewer rows than ranks is
dropped (no rank may step on an empty batch).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from mdr.seeding import rng
from mdr.training.errors import RunError

ENV_BACKEND = "MDR_DIST_BACKEND"
ENV_TIMEOUT = "MDR_DIST_TIMEOUT_MIN"
# Ranks other than 0 wait at a barrier while rank 0 validates and, at the end,
# scores the test split by full ranking; the timeout must outlast that (a crashed
# rank does not wait for it: torchrun stops the whole group when one process exits).
DEFAULT_TIMEOUT_MIN = 120.0
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and the groups it talks over."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo" / "nccl" under torchrun; None: a single process
    owns_group: bool = False  # init() created the default group (cleanup() destroys it)
    ctrl_group: Any = None  # gloo group for control messages; None: the default group

    @property
    def enabled(self) -> bool:
        """True under torchrun (even with one process): DDP wrapping and sharding apply."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that evaluates and writes the run folder."""
        return self.rank == 0


# --------------------------------------------------------------------------- environment


def launched_by_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """True when the torchrun variables (RANK, WORLD_SIZE, ...) are all set."""
    env = os.environ if env is None else env
    return all(k in env for k in _TORCHRUN_VARS)


def env_ranks(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun variables, checked."""
    env = os.environ if env is None else env
    try:
        rank, world, local = (int(env[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except (KeyError, ValueError) as e:
        raise RunError(
            f"torchrun environment: RANK, WORLD_SIZE and LOCAL_RANK must be integers ({e})"
        ) from e
    if world < 1 or not 0 <= rank < world or local < 0:
        raise RunError(
            f"torchrun environment: RANK={rank}, WORLD_SIZE={world}, "
            f"LOCAL_RANK={local} are inconsistent"
        )
    return rank, world, local


def backend_for(device: torch.device) -> str:
    """The process-group backend for ``device``: nccl on CUDA, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def timeout(env: Mapping[str, str] | None = None) -> timedelta:
    """Collective timeout: ``MDR_DIST_TIMEOUT_MIN`` minutes, default 120."""
    env = os.environ if env is None else env
    raw = env.get(ENV_TIMEOUT)
    try:
        minutes = float(raw) if raw else DEFAULT_TIMEOUT_MIN
    except ValueError as e:
        raise RunError(f"{ENV_TIMEOUT}={raw!r}: expected minutes as a number") from e
    if minutes <= 0:
        raise RunError(f"{ENV_TIMEOUT}={raw!r}: must be positive")
    return timedelta(minutes=minutes)


def local_device(device: torch.device, ctx: DistContext) -> torch.device:
    """The device of this rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
    if not ctx.enabled or device.type != "cuda":
        return device
    if device.index is not None and device.index != ctx.local_rank:
        raise RunError(
            f"device {str(device)!r} under torchrun: each rank uses "
            f"cuda:LOCAL_RANK (here cuda:{ctx.local_rank}); pass --device cuda and "
            "choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    if ctx.local_rank >= torch.cuda.device_count():
        raise RunError(
            f"LOCAL_RANK {ctx.local_rank} but only {torch.cuda.device_count()} CUDA "
            "device(s) visible; lower --nproc_per_node"
        )
    return torch.device("cuda", ctx.local_rank)


# --------------------------------------------------------------------------- the process group


def init(device: torch.device) -> DistContext:
    """Join torchrun's process group (backend from ``device``); a no-op outside torchrun.

    Reuses a default group that is already initialised (its owner destroys it).
    """
    if not launched_by_torchrun():
        return DistContext()
    rank, world, local = env_ranks()
    if not dist.is_available():
        raise RunError("launched by torchrun, but this torch build has no torch.distributed")
    backend = os.environ.get(ENV_BACKEND) or backend_for(device)
    limit = timeout()
    owns = not dist.is_initialized()
    if owns:
        device_id = None
        if device.type == "cuda":
            device_id = local_device(device, DistContext(rank, world, local, backend))
            torch.cuda.set_device(device_id)
        dist.init_process_group(backend, timeout=limit, device_id=device_id)  # env:// rendezvous
    elif (dist.get_rank(), dist.get_world_size()) != (rank, world):
        raise RunError(
            f"process group already initialised as rank {dist.get_rank()} of "
            f"{dist.get_world_size()}, but the environment says {rank} of {world}"
        )
    backend = str(dist.get_backend())
    ctrl = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=limit)
    return DistContext(rank, world, local, backend, owns, ctrl)


def cleanup(ctx: DistContext, failed: bool = False) -> None:
    """Destroy the default group if :func:`init` created it.

    After a failure an NCCL group is left to process exit (destroying a broken
    communicator can block); gloo groups are always destroyed.
    """
    if not (ctx.owns_group and dist.is_initialized()):
        return
    if failed and ctx.backend != "gloo":
        return
    dist.destroy_process_group()


def report_failure(ctx: DistContext, error: BaseException) -> None:
    """One line on stderr naming the failing rank (torchrun then stops the other ranks)."""
    if ctx.enabled:
        msg = str(error).splitlines()[0] if str(error) else ""
        print(
            f"mdr: rank {ctx.rank} of {ctx.world_size} failed ({type(error).__name__}: {msg}); "
            "torchrun stops the other ranks",
            file=sys.stderr,
            flush=True,
        )


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (over the gloo control group); a no-op in one process."""
    if ctx.enabled:
        dist.barrier(group=ctx.ctrl_group)


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects; CPU tensors inside)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=ctx.ctrl_group)
    return box[0]


def all_gather_object(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj, group=ctx.ctrl_group)
    return out


def rank() -> int:
    """This process's rank: the default group's, else ``RANK`` from the environment, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """The number of processes: the default group's, else ``WORLD_SIZE``, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True on rank 0 (and in a single process): print results and write files only there."""
    return rank() == 0


# --------------------------------------------------------------------------- seeding


def rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """The seed of rank ``rank`` > 0's own random streams (dropout, reparameterisation,
    Eq. 15 negatives): independent of rank 0's, which stay those of a single process."""
    return int(rng(seed, "rank", rank, epoch).integers(0, 2**63 - 1))


def seed_rank(seed: int, rank: int, epoch: int = 0) -> None:
    """Reseed Python, NumPy and torch (CPU and CUDA) with :func:`rank_seed`."""
    s = rank_seed(seed, rank, epoch)
    random.seed(s)
    np.random.seed(s % (2**32))  # noqa: NPY002 - third-party code using the global RNG
    torch.manual_seed(s)  # seeds every CUDA device too


# --------------------------------------------------------------------------- sharding


def split_sizes(n: int, world_size: int) -> np.ndarray:
    """Rows of each rank in a batch of ``n`` rows: int64 [W], ``np.array_split`` sizes."""
    r = np.arange(world_size, dtype=np.int64)
    return n // world_size + (r < n % world_size).astype(np.int64)


def shard_rows(
    order: np.ndarray, batch_size: int, rank: int, world_size: int
) -> tuple[np.ndarray, int]:
    """Rank ``rank``'s rows of every global batch of ``order`` (int64 [N], the epoch's
    shuffled row indices), in step order, and its local batch size.

    Global batch ``b`` is ``order[b * batch_size:(b + 1) * batch_size]``; the rank takes
    its contiguous part (:func:`split_sizes`). Consecutive chunks of the local batch size
    of the result are the rank's batches (the last one may be shorter), so
    ``BatchIterator(arrays[rows], local_batch_size)`` yields exactly
    :func:`global_steps` batches on every rank.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    if batch_size < world_size:
        raise RunError(
            f"train.batch_size {batch_size} is smaller than the {world_size} ranks: "
            "the global batch is split across ranks"
        )
    order = np.asarray(order, dtype=np.int64)
    sizes = split_sizes(batch_size, world_size)
    lo = int(sizes[:rank].sum())
    local = int(sizes[rank])
    full, tail = divmod(order.size, batch_size)
    parts = [order[: full * batch_size].reshape(full, batch_size)[:, lo : lo + local].reshape(-1)]
    if tail >= world_size:  # the final partial batch, split the same way
        t_sizes = split_sizes(tail, world_size)
        t_lo = full * batch_size + int(t_sizes[:rank].sum())
        parts.append(order[t_lo : t_lo + int(t_sizes[rank])])
    return np.concatenate(parts), local


# --------------------------------------------------------------------------- DDP


class LossForward(nn.Module):
    """``forward(batch) = model.calculate_loss(batch)``: DDP synchronises gradients only for
    computations run through its ``forward``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.model.calculate_loss(batch)


def constant_buffers(module: nn.Module) -> list[str]:
    """Names of the non-persistent buffers (item features: images, tokens, labels...).

    Every rank builds them identically from the prepared data, so DDP need not
    broadcast them (for Cloth the image buffer alone is ~280 MB).
    """
    persistent = set(module.state_dict())
    return [name for name, _ in module.named_buffers() if name not in persistent]


def wrap_ddp(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``model`` (already on ``device``) behind DistributedDataParallel.

    ``find_unused_parameters=True``: a step need not use every parameter (MDR's
    weak-supervision classifiers only see batches with labelled items; the image
    decoder is skipped when a batch has no image to reconstruct), and which ones
    are unused varies from step to step, so ``static_graph`` would be wrong.
    A parameter unused on one rank gets zero from it in the gradient average; one
    unused on every rank keeps ``grad=None``, as in a single process, so Adam
    leaves it alone. Persistent buffers follow rank 0 before every forward.
    """
    net = LossForward(model)
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        net, constant_buffers(net)
    )
    return nn.parallel.DistributedDataParallel(
        net,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )


__all__ = [
    "DEFAULT_TIMEOUT_MIN",
    "ENV_BACKEND",
    "ENV_TIMEOUT",
    "DistContext",
    "LossForward",
    "all_gather_object",
    "backend_for",
    "barrier",
    "broadcast_object",
    "cleanup",
    "constant_buffers",
    "env_ranks",
    "init",
    "is_main",
    "launched_by_torchrun",
    "local_device",
    "rank",
    "rank_seed",
    "report_failure",
    "seed_rank",
    "shard_rows",
    "split_sizes",
    "timeout",
    "world_size",
    "wrap_ddp",
]
