"""The one trainer: one epoch loop for every model (MDR, its baselines, the CTR baselines,
the image side alone).

The model comes in through the registry (:mod:`mdr.training.registry`) and a small
interface only (``calculate_loss`` for training; the task calls what it needs for
validation: ``encode_items`` + ``score`` for recommendation); the trainer never imports a
concrete model. The data comes in as a task (:mod:`mdr.training.tasks`): the epoch's
training rows, a validation metric that selects the best epoch, and the test. The run
folder and everything written to it belong to the run layer (:mod:`mdr.training.runs`);
one optimiser step is :func:`mdr.training.step.train_step`.

The loop: epochs are numbered from 1 for every model; epoch ``e`` draws the negatives
``rng(seed, "train-neg", e)`` and the shuffle ``shuffle_generator(seed, e)``, so every
model of a table sees the same training samples in the same order. After each epoch
the task validates, early stopping counts epochs without improvement
(``train.patience``; 0 disables it; ties keep the earlier epoch), and the run folder
gets a metrics line, ``best.pt`` when the epoch is the best so far, and a checkpoint.
At the end ``best.pt`` is scored on the task's test: model selection never looks at
test.

Item-level pretraining (``train.pretrain_epochs`` > 0, recommendation tasks, models whose
items carry losses): before epoch 1, ``pretrain_epochs`` passes over the catalogue in
seeded batches of ``train.pretrain_batch_size`` items minimise Eq. 22's item losses alone
(the model's ``calculate_loss`` of a batch ``{"item"}``), with the same optimiser; an
``epoch 0`` metrics line (never a candidate for the best epoch) and a checkpoint follow.
A run killed during the pretraining starts it again (it is a pure function of the seed).

Resuming (``resume=True``) restores the checkpoint and continues; because the training
rows and the shuffle order are pure functions of (seed, epoch) and every other random
state is checkpointed, a run killed at any moment and resumed ends with exactly the
metrics of an uninterrupted run on the CPU.

Several processes (``torchrun --nproc_per_node=N -m mdr.cli train ...``, see
:mod:`mdr.training.distributed`): the model is wrapped in DistributedDataParallel (gloo
on the CPU, nccl on CUDA); every rank trains on its part of each global batch of
``train.batch_size`` rows (the single-process row order, split by rank), gradients are
averaged over ranks; rank 0 validates, logs the epoch (loss means and sample counts over
all ranks) and alone reads and writes the run folder while the other ranks wait (they
receive the checkpoint to resume and the final result from it). Rank 0 keeps the random
streams of a single process; rank r > 0 draws its own
(:func:`mdr.training.distributed.seed_rank`). Without torchrun nothing of this applies.

The GPU path (``train.device: cuda``, or ``auto`` on a machine with CUDA): batches are
pinned and copied with ``non_blocking``, ``train.amp`` runs forward passes under bf16
autocast (no loss scaling needed; refused on a GPU without bf16), evaluation encodes
every item once and scores from that cache
(:func:`mdr.training.evaluate.item_representations`). On the CPU ``train.amp`` changes
nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mdr.config import RunConfig
from mdr.data.batches import BatchIterator
from mdr.models.base import to_device
from mdr.models.capabilities import model_capabilities
from mdr.provenance import device_name
from mdr.seeding import seed_everything
from mdr.training import distributed
from mdr.training.errors import DivergedError
from mdr.training.runs import (
    RunError,
    RunFolder,
    TrainState,
    build,
    load_model_state,
    resolve_device,
    rng_states,
    set_rng_states,
)
from mdr.training.step import make_optimizer, train_step
from mdr.training.tasks import ImageTask, RecommendationTask, open_task

StepHook = Callable[[int, int], None]
EpochHook = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- epochs


@dataclass
class _Job:
    """What every epoch of one run needs (one object instead of ten arguments)."""

    cfg: RunConfig
    task: RecommendationTask | ImageTask
    run: RunFolder
    model: nn.Module  # the bare model: evaluation and checkpoints
    optimizer: torch.optim.Optimizer
    device: torch.device
    ctx: distributed.DistContext
    net: nn.Module | None = None  # the DDP wrapper under torchrun (forward = calculate_loss)
    progress: bool = True
    on_step: StepHook | None = None
    on_epoch: EpochHook | None = None

    def loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One training forward pass: through DDP under torchrun, directly otherwise."""
        if self.net is not None:
            return self.net(batch)
        return self.model.calculate_loss(batch)


def _epoch_batches(
    samples: dict[str, np.ndarray], job: _Job, epoch: int, batch_size: int, stream: str = "shuffle"
) -> BatchIterator:
    """This process's batches of the epoch: all of them in one process; under torchrun the
    rank's part of every global batch (:func:`mdr.training.distributed.shard_rows`)."""
    t, ctx = job.cfg.train, job.ctx
    pin = job.device.type == "cuda"  # pinned pages let the copy to the GPU run asynchronously
    shuffled = {"shuffle": True, "seed": job.cfg.seed, "epoch": epoch, "stream": stream}
    if not ctx.enabled:
        return BatchIterator(
            samples, batch_size, pin_memory=pin, max_batches=t.max_steps_per_epoch, **shuffled
        )
    order = BatchIterator(samples, batch_size, **shuffled).order()
    rows, local = distributed.shard_rows(order, batch_size, ctx.rank, ctx.world_size)
    if t.max_steps_per_epoch is not None:
        rows = rows[: t.max_steps_per_epoch * local]
    return BatchIterator(
        {k: v[rows] for k, v in samples.items()},
        local,
        pin_memory=pin,
        max_batches=t.max_steps_per_epoch,
    )


def _train_epoch(job: _Job, epoch: int, state: TrainState) -> tuple[dict[str, float], int]:
    """One pass over the epoch's samples; returns per-term loss means and the sample count
    (over all ranks under torchrun)."""
    samples = job.task.epoch_rows(epoch)
    batches = _epoch_batches(samples, job, epoch, job.cfg.train.batch_size)
    return _steps(job, batches, epoch, state, f"epoch {epoch}/{job.cfg.train.epochs}")


def _steps(
    job: _Job, batches: BatchIterator, epoch: int, state: TrainState, desc: str
) -> tuple[dict[str, float], int]:
    """One optimiser step per batch; per-term loss means and the sample count."""
    t = job.cfg.train
    (job.net or job.model).train()
    sums: dict[str, Tensor] = {}
    n_samples = 0
    params = list(job.model.parameters())
    bar = tqdm(batches, desc=desc, disable=not job.progress, leave=False)
    for i, batch in enumerate(bar):
        b = to_device(batch, job.device)
        out = train_step(
            lambda b=b: job.loss(b),
            params,
            job.optimizer,
            job.device,
            t,
            where=f"epoch {epoch}, step {state.step + 1}",
        )
        state.step += 1
        n_samples += len(next(iter(batch.values())))
        for k, v in out.items():
            v = v.detach().float()
            sums[k] = sums[k] + v if k in sums else v
        if i % 20 == 0:
            bar.set_postfix(loss=f"{float(out['loss'].detach()):.4f}")
        if job.on_step is not None:
            job.on_step(epoch, state.step)
    return _epoch_means(sums, len(batches), n_samples, job.ctx)


def _pretrain(job: _Job, state: TrainState) -> dict[str, Any] | None:
    """Item-level pretraining (``train.pretrain_epochs``, epoch 0 of the run): passes over
    the catalogue in batches of items, minimising Eq. 22's item losses alone (the model's
    ``calculate_loss`` of an item batch), for models whose items carry losses; then rank 0
    validates, logs an epoch-0 line and checkpoints. Returns that line (None when there
    is nothing to pretrain)."""
    t, ctx = job.cfg.train, job.ctx
    state.pretrained = True
    if (
        t.pretrain_epochs == 0
        or job.task.kind != "recommendation"
        or not model_capabilities(job.model).item_losses
    ):
        return None
    t0 = time.perf_counter()
    rows = {"item": np.arange(job.task.data.n_items, dtype=np.int64)}
    losses: dict[str, float] = {}
    n_samples = 0
    for pe in range(1, t.pretrain_epochs + 1):
        batches = _epoch_batches(rows, job, pe, t.pretrain_batch_size, stream="pretrain")
        losses, n = _steps(job, batches, 0, state, f"pretrain {pe}/{t.pretrain_epochs}")
        n_samples += n
    rng_ranks = distributed.all_gather_object(rng_states(job.device), ctx) if ctx.enabled else None
    t1 = time.perf_counter()
    line = None
    if ctx.is_main:
        valid = job.task.validate(job.model, job.device, t.amp, job.progress)
        t2 = time.perf_counter()
        state.elapsed_s += t2 - t0
        line = {
            "epoch": 0,
            "stage": "pretrain",
            "pretrain_epochs": t.pretrain_epochs,
            "step": state.step,
            **{f"train/{k}": v for k, v in losses.items()},
            **{f"valid/{k}": v for k, v in valid.items()},
            "best_epoch": 0,
            "improved": False,
            "stopped": False,
            "train_samples": n_samples,
            "train_s": t1 - t0,
            "valid_s": t2 - t1,
            "epoch_s": t2 - t0,
            "elapsed_s": state.elapsed_s,
            "samples_per_s": n_samples / max(t1 - t0, 1e-9),
        }
        job.run.append_metrics(line)
        job.run.save_checkpoint(job.cfg, job.model, job.optimizer, state, job.device, rng_ranks)
    if ctx.enabled:
        for k, v in distributed.broadcast_object(dataclasses.asdict(state), ctx).items():
            setattr(state, k, v)
    return line


def _epoch_means(
    sums: dict[str, Tensor], steps: int, n_samples: int, ctx: distributed.DistContext
) -> tuple[dict[str, float], int]:
    """Mean of each loss term over the epoch's steps (of every rank) and the sample count."""
    if not ctx.enabled:
        return {k: float(v) / max(steps, 1) for k, v in sums.items()}, n_samples
    local = ({k: float(v) for k, v in sums.items()}, steps, n_samples)
    ranks = distributed.all_gather_object(local, ctx)  # rank order: a deterministic sum
    total_steps = max(sum(r[1] for r in ranks), 1)
    means = {k: sum(r[0][k] for r in ranks) / total_steps for k in local[0]}
    return means, sum(r[2] for r in ranks)


def _run_epoch(job: _Job, state: TrainState) -> dict[str, Any] | None:
    """Train one epoch; then rank 0 validates, logs and checkpoints while the other ranks
    wait, and every rank takes rank 0's state (early stopping). Returns rank 0's line."""
    epoch = state.epoch + 1
    t0 = time.perf_counter()
    losses, n_samples = _train_epoch(job, epoch, state)
    ctx = job.ctx
    rng_ranks = distributed.all_gather_object(rng_states(job.device), ctx) if ctx.enabled else None
    t1 = time.perf_counter()
    line = None
    if ctx.is_main:
        line = _validate_and_log(job, state, epoch, losses, n_samples, (t0, t1), rng_ranks)
    if ctx.enabled:  # the barrier while rank 0 validates; then one state everywhere
        for k, v in distributed.broadcast_object(dataclasses.asdict(state), ctx).items():
            setattr(state, k, v)
    return line


def _validate_and_log(
    job: _Job,
    state: TrainState,
    epoch: int,
    losses: dict[str, float],
    n_samples: int,
    times: tuple[float, float],
    rng_ranks: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Validate, update early stopping, append the metrics line and checkpoint one epoch."""
    t, run, model, task = job.cfg.train, job.run, job.model, job.task
    t0, t1 = times
    try:
        valid = task.validate(model, job.device, t.amp, job.progress)
    except DivergedError as e:
        raise DivergedError(f"epoch {epoch}: {e}") from None
    t2 = time.perf_counter()
    value = valid[task.monitor]
    # NaN never improves; the first epoch always counts, so best.pt exists
    better = value > state.best_value if task.maximize else value < state.best_value
    improved = state.best_epoch == 0 or bool(better)
    if improved:
        state.best_value, state.best_epoch, state.bad_epochs = value, epoch, 0
        run.save_best(model, epoch, task.monitor, value)
    else:
        state.bad_epochs += 1
    state.epoch = epoch
    state.stopped = t.patience > 0 and state.bad_epochs >= t.patience
    state.elapsed_s += t2 - t0
    line = {
        "epoch": epoch,
        "step": state.step,
        **{f"train/{k}": v for k, v in losses.items()},
        **{f"valid/{k}": v for k, v in valid.items()},
        "best_epoch": state.best_epoch,
        "improved": improved,
        "stopped": state.stopped,
        "train_samples": n_samples,
        "train_s": t1 - t0,
        "valid_s": t2 - t1,
        "epoch_s": t2 - t0,
        "elapsed_s": state.elapsed_s,
        "samples_per_s": n_samples / max(t1 - t0, 1e-9),
    }
    run.append_metrics(line)
    run.save_checkpoint(job.cfg, model, job.optimizer, state, job.device, rng_ranks)
    return line


def _finish(job: _Job, state: TrainState) -> dict[str, Any]:
    """Score ``best.pt`` on the task's test; write test.json, then DONE."""
    model, run, task, t = job.model, job.run, job.task, job.cfg.train
    best = run.load_best(model)
    model.to(job.device)
    test, per_user = (
        task.test(model, job.device, t.amp, job.progress)
        if task.has_test
        else ({"test": "none: validation-only data"}, {})
    )
    result = {
        "dataset": task.name,
        "model": job.cfg.model.name,
        "seed": job.cfg.seed,
        "best_epoch": best["epoch"],
        f"best_valid_{best['monitor']}": best["value"],
        "epochs_run": state.epoch,
        "stopped_early": state.stopped,
        # the epoch cap, not early stopping, ended the run: a table marks it
        "hit_epoch_cap": not state.stopped and state.epoch >= t.epochs,
        "step": state.step,
        **test,
    }
    run.finish(result, per_user)
    return result


# --------------------------------------------------------------------------- entry point


def train(
    cfg: RunConfig,
    data: str | Path,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    allow_other_data: bool = False,
    on_step: StepHook | None = None,
    on_epoch: EpochHook | None = None,
    validation_only: bool = False,
) -> dict[str, Any]:
    """Train ``cfg.model.name`` on the prepared folder ``data`` into the run folder ``out``.

    Returns the final test metrics (the content of ``RUN/test.json``). With
    ``resume`` an existing ``RUN/checkpoint.pt`` is continued (up to
    ``cfg.train.epochs``; a finished run just returns its result), on the same data
    only unless ``allow_other_data``. A finished or started run is never overwritten
    unless ``overwrite``, and a folder that is not a run folder never is.
    ``on_step(epoch, step)`` is called after every optimiser step (a hook for tests
    and monitoring), ``on_epoch(line)`` with each epoch's metrics line once it is logged
    and checkpointed (the tuner reports validation to its pruner there; an exception it
    raises stops the run, which stays resumable). With ``validation_only`` the run
    trains on the data's validation-only view and scores no test
    (:meth:`mdr.data.dataset.ProcessedDataset.validation_only`): what tuning trials do.

    Under torchrun (see the module docstring) every rank calls this; each returns
    the same result, progress shows on rank 0 only, and a failing rank names itself
    on stderr before torchrun stops the group.
    """
    device = resolve_device(cfg.train.device)
    ctx = distributed.init(device)
    failed = True
    try:
        result = _train(
            cfg,
            Path(data),
            RunFolder(Path(out)),
            ctx,
            distributed.local_device(device, ctx),
            resume=resume,
            overwrite=overwrite,
            allow_other_data=allow_other_data,
            progress=progress and ctx.is_main,
            on_step=on_step,
            on_epoch=on_epoch,
            validation_only=validation_only,
        )
        failed = False
        return result
    except BaseException as e:
        distributed.report_failure(ctx, e)
        raise
    finally:
        distributed.cleanup(ctx, failed=failed)


def _check_amp(cfg: RunConfig, device: torch.device) -> None:
    """bf16 autocast needs a GPU with native bf16 (Ampere or newer)."""
    if (
        cfg.train.amp
        and device.type == "cuda"
        and not torch.cuda.is_bf16_supported(including_emulation=False)
    ):
        raise RunError(
            f"train.amp: {torch.cuda.get_device_name(device)} has no native bf16; "
            "set train.amp=false"
        )


def _restore(job: _Job, ckpt: dict[str, Any], state: TrainState) -> None:
    """Weights, optimiser and this rank's RNG states from a checkpoint."""
    load_model_state(job.model, ckpt["model"], job.run.checkpoint)
    job.optimizer.load_state_dict(ckpt["optimizer"])
    ctx, ranks = job.ctx, ckpt.get("rng_ranks")
    if ctx.rank == 0:
        set_rng_states(ckpt["rng"], job.device)
    elif ranks is not None and len(ranks) == ctx.world_size:
        set_rng_states(ranks[ctx.rank], job.device)
    else:  # resumed with more ranks than the checkpoint holds: fresh, seeded streams
        distributed.seed_rank(job.cfg.seed, ctx.rank, state.epoch)


def _train(
    cfg: RunConfig,
    data: Path,
    run: RunFolder,
    ctx: distributed.DistContext,
    device: torch.device,
    *,
    resume: bool,
    overwrite: bool,
    allow_other_data: bool,
    progress: bool,
    on_step: StepHook | None,
    on_epoch: EpochHook | None,
    validation_only: bool,
) -> dict[str, Any]:
    """:func:`train` inside the process group (a no-op group in one process); rank 0 holds
    the run folder's lock throughout."""
    task = open_task(cfg, data, validation_only)  # bad data: refused before any folder is made
    with run.lock() if ctx.is_main else contextlib.nullcontext():
        return _train_locked(
            cfg,
            task,
            run,
            ctx,
            device,
            resume=resume,
            overwrite=overwrite,
            allow_other_data=allow_other_data,
            progress=progress,
            on_step=on_step,
            on_epoch=on_epoch,
        )


def _train_locked(
    cfg: RunConfig,
    task: RecommendationTask | ImageTask,
    run: RunFolder,
    ctx: distributed.DistContext,
    device: torch.device,
    *,
    resume: bool,
    overwrite: bool,
    allow_other_data: bool,
    progress: bool,
    on_step: StepHook | None,
    on_epoch: EpochHook | None,
) -> dict[str, Any]:
    ckpt, finished = _open_run(run, cfg, task, resume, overwrite, allow_other_data, ctx)
    if finished is not None:
        return finished
    state = TrainState(**ckpt["state"]) if ckpt else TrainState()
    _check_amp(cfg, device)

    seed_everything(cfg.seed)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    model = build(cfg, task, device)  # the same initial weights on every rank
    optimizer = make_optimizer(model.parameters(), cfg.train)
    job = _Job(
        cfg,
        task,
        run,
        model,
        optimizer,
        device,
        ctx,
        progress=progress,
        on_step=on_step,
        on_epoch=on_epoch,
    )
    if ckpt:
        _restore(job, ckpt, state)
        if ctx.is_main:
            run.truncate_metrics(state.epoch)
    else:
        if ctx.is_main:
            run.start_fresh()
        if ctx.rank > 0:
            distributed.seed_rank(cfg.seed, ctx.rank)
    if ctx.is_main:
        extra = {"world_size": ctx.world_size, "backend": ctx.backend} if ctx.enabled else {}
        run.write_config(
            cfg, task, device, resumed_from_epoch=state.epoch if ckpt else None, **extra
        )
        if progress:
            how = " (train.device: auto)" if cfg.train.device == "auto" else ""
            tqdm.write(
                f"training {cfg.model.name} on {task.name} ({task.kind}) on "
                f"{device_name(str(device))}{how} -> {run.root}"
            )
    if ctx.enabled:
        job.net = distributed.wrap_ddp(model, ctx, device)

    if not state.pretrained:
        line = _pretrain(job, state)
        if progress and line is not None:
            tqdm.write(
                f"pretrained the items for {cfg.train.pretrain_epochs} epochs: valid "
                f"{task.monitor} {line[f'valid/{task.monitor}']:.4f}"
            )
    while not state.complete(cfg.train.epochs):
        line = _run_epoch(job, state)
        if on_epoch is not None and line is not None:
            on_epoch(line)
        if progress and line is not None:
            shown = "  ".join(
                f"{k[6:]} {v:.4f}"
                for k, v in line.items()
                if k.startswith("valid/") and isinstance(v, float)
            )[:120]
            tqdm.write(
                f"epoch {line['epoch']}: loss {line.get('train/loss', float('nan')):.4f}"
                f"  valid {shown}  ({line['samples_per_s']:.0f} samples/s)"
            )
    result = _finish(job, state) if ctx.is_main else None
    return distributed.broadcast_object(result, ctx)  # the other ranks wait for test.json


def _open_run(
    run: RunFolder,
    cfg: RunConfig,
    task: RecommendationTask | ImageTask,
    resume: bool,
    overwrite: bool,
    allow_other_data: bool,
    ctx: distributed.DistContext,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Rank 0 opens the run folder (:meth:`RunFolder.open_for_training`); every rank gets
    its ``(checkpoint or None, the finished run's result or None)``. Only rank 0 touches
    the folder, so under torchrun it need not be visible from the other nodes."""
    opened = (
        run.open_for_training(cfg, task, resume, overwrite, allow_other_data)
        if ctx.is_main
        else None
    )
    return distributed.broadcast_object(opened, ctx)


__all__ = ["RunError", "TrainState", "train"]
