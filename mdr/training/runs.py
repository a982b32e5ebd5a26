"""The run folder, its whole life: opening it for training, its files, reopening it finished.

The trainer (:mod:`mdr.training.train`) is the loop; everything it reads from or
writes to a run folder goes through :class:`RunFolder`. Evaluation, the explanation
tools, the benchmarks and the CLI reopen finished runs here too (:func:`load_run`), and
ask the reopened run for what its model offers them (:meth:`LoadedRun.require`).
One format for every model (MDR, its baselines, the CTR baselines, the image side
alone):

=================  ===============================================================
``config.yaml``    the resolved config at top level plus a ``provenance:`` block
                   (seed, git commit, package versions, device, the prepared data's
                   name, path and fingerprint; under torchrun the world size and backend)
``metrics.jsonl``  one line per epoch: ``epoch``, ``step``, ``train/<term>`` (the mean
                   of each loss term over the epoch's steps), ``valid/<metric>``,
                   ``best_epoch``, wall times and samples/s; item-level pretraining
                   adds an ``epoch 0`` line (``"stage": "pretrain"``)
``checkpoint.pt``  after every epoch, atomically: model, optimiser, Python / NumPy /
                   torch RNG states (every rank's under torchrun), :class:`TrainState`
                   and the config it was written with
``best.pt``        model weights at the best validation value (model selection never
                   looks at test)
``test.json``      the test metrics of ``best.pt``, ``best_epoch``, ``epochs_run`` and
                   ``hit_epoch_cap`` (the cap, not early stopping, ended the run)
``test_users.npz`` per test user, the values those metrics average (``user``, ``auc``,
                   ``ndcg@10``, ``hr@10``; ``full_user``/``full_rank`` of full ranking):
                   what a paired bootstrap over users resamples, without retraining
``DONE``           written last: a folder with it (and test.json) is a finished run
=================  ===============================================================

Rules (:meth:`RunFolder.open_for_training`): a folder that is not a run folder is never
touched; a finished or started run is replaced only with ``overwrite`` (and then only
its own files); ``resume`` continues ``checkpoint.pt`` if the config matches up to
:data:`RESUMABLE_CHANGES`. A run is tied to its data: :func:`check_data` refuses to
resume, evaluate or explain a run on a prepared folder whose fingerprint
(:func:`mdr.training.tasks.data_fingerprint`) differs from the one the run recorded,
unless asked (``allow_other_data``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mdr.config import RunConfig, config_hash, dump_yaml, from_dict, load_yaml, to_dict
from mdr.data.batches import Split
from mdr.io import (
    append_jsonl,
    folder_lock,
    own_temp_files,
    truncate_jsonl_epochs,
    write_json,
    write_npz,
    write_text,
    write_torch,
)
from mdr.models.capabilities import Capabilities, model_capabilities
from mdr.provenance import device_name, manifest
from mdr.seeding import denormals_flushed
from mdr.training.errors import RunError
from mdr.training.evaluate import evaluate_model
from mdr.training.registry import build_model
from mdr.training.tasks import ImageTask, RecommendationTask, open_task

CHECKPOINT_FORMAT = "mdr-checkpoint"
WEIGHTS_FORMAT = "mdr-weights"
FORMAT_VERSION = 2
# Config keys that may change between a run and its resumption.
RESUMABLE_CHANGES = ("train.epochs", "train.device", "train.num_threads")


@dataclass
class TrainState:
    """Progress that a checkpoint carries besides weights and RNG states."""

    epoch: int = 0  # completed epochs (epochs are numbered from 1)
    step: int = 0  # optimiser steps so far
    best_value: float = math.nan  # the best validation value of the task's monitor so far
    best_epoch: int = 0  # 0: no epoch validated yet
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    stopped: bool = False  # early stopping triggered
    pretrained: bool = False  # the item-level pretraining (epoch 0) is done
    elapsed_s: float = 0.0  # wall time of the completed epochs

    def complete(self, epochs: int) -> bool:
        return self.stopped or self.epoch >= epochs


# --------------------------------------------------------------------------- files and devices


def load_torch_file(path: Path, fmt: str) -> dict[str, Any]:
    """Load a checkpoint written by the trainer with ``torch.load(weights_only=True)``.

    A missing, corrupt or foreign file raises :class:`RunError` naming the file.
    """
    if not path.is_file():
        raise RunError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/unsafe files
        raise RunError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise RunError(f"{path}: not an MDR {fmt!r} file (found {found!r})")
    if obj.get("version") != FORMAT_VERSION:
        raise RunError(
            f"{path}: {fmt} version {obj.get('version')!r}, expected "
            f"{FORMAT_VERSION}; train the run again with this version"
        )
    return obj


def load_model_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """``model.load_state_dict(state)``; a mismatch raises :class:`RunError` naming ``path``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(f"{path}: weights do not fit the model ({str(e).splitlines()[0]})") from e


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; ``auto`` is CUDA when present, else the CPU. CUDA asked for
    but unavailable raises :class:`RunError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(
            f"device {name!r} asked for, but CUDA is not available here (use --device cpu or auto)"
        )
    return device


def build(cfg: RunConfig, task: RecommendationTask | ImageTask, device: torch.device) -> nn.Module:
    """The registered model of ``cfg.model.name`` on ``device`` (its init draws from
    ``cfg.seed`` only). A model that lacks what the task calls is a :class:`RunError`."""
    try:
        model = build_model(None, cfg, task.features())
    except ValueError as e:
        from mdr.config import ConfigError

        if isinstance(e, ConfigError):
            raise
        raise RunError(f"model {cfg.model.name!r} on {task.root}: {e}") from e
    missing = [m for m in task.required if not callable(getattr(model, m, None))]
    if missing:
        raise RunError(
            f"model {cfg.model.name!r} lacks method(s) {missing} that a {task.kind} task calls"
        )
    return model.to(device)


# --------------------------------------------------------------------------- RNG states


def rng_states(device: torch.device | None = None) -> dict[str, Any]:
    """Python, NumPy and torch RNG states as plain types and tensors (``weights_only``-safe);
    with a CUDA ``device`` also that device's generator (the one its kernels draw from)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    out: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_states(states: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore :func:`rng_states`; the CUDA generator only when training on CUDA."""
    version, mt, gauss = states["python"]
    random.setstate((version, tuple(mt), gauss))
    n = states["numpy"]
    legacy = (
        n["name"],
        n["keys"].numpy().astype(np.uint32),
        n["pos"],
        n["has_gauss"],
        n["cached_gaussian"],
    )
    np.random.set_state(legacy)  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b, name = old.get(k), new.get(k), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_changes(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out


# --------------------------------------------------------------------------- the folder


@dataclass(frozen=True)
class RunFolder:
    """The files of a run folder (see the module docstring) and everything done to them."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    @property
    def test(self) -> Path:
        return self.root / "test.json"

    @property
    def test_users(self) -> Path:
        return self.root / "test_users.npz"

    @property
    def done(self) -> Path:
        return self.root / "DONE"

    def files(self) -> list[Path]:
        return [
            self.config,
            self.metrics,
            self.checkpoint,
            self.best,
            self.test,
            self.test_users,
            self.done,
        ]

    def is_finished(self) -> bool:
        return self.done.is_file() and self.test.is_file()

    def is_run_folder(self) -> bool:
        """Does ``root`` hold a run this trainer wrote (a config.yaml with its provenance)?"""
        try:
            return "config_hash" in (load_yaml(self.config).get("provenance") or {})
        except Exception:  # an unreadable or foreign config.yaml: not ours
            return False

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def _remove(self, *paths: Path) -> None:
        for p in paths:
            p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ opening for training
    def refuse_foreign(self) -> None:
        """Refuse, touching nothing, a path that is a file or a folder that holds anything
        but a run (this tool's lock file alone counts as empty)."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise RunError(f"{root}: exists and is not a folder; give a run folder to train into")
        present = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        if [n for n in present if n != self.lock_file.name] and not self.is_run_folder():
            raise RunError(
                f"{root}: not empty and not a run folder (holds "
                f"{', '.join(present[:5])}...); choose a new or empty folder"
            )

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The run folder's lock, held by the command that trains into it
        (:func:`mdr.io.folder_lock`): a second command is refused, naming the first's pid."""
        self.refuse_foreign()  # before the lock file creates the folder
        return folder_lock(self.lock_file, self.root)

    def clean_temp_files(self) -> list[Path]:
        """Remove the half-written temporary files a killed command left (only those of the
        run folder's own files; called under the lock, so none is being written)."""
        stray = own_temp_files(self.root, [p.name for p in self.files()])
        self._remove(*stray)
        return stray

    def check_writable(self, resume: bool, overwrite: bool) -> None:
        """Refuse to clobber a finished or started run unless asked; never touch a folder
        that is not a run folder; clear the run's own files when overwriting."""
        root = self.root
        self.refuse_foreign()
        if overwrite:
            self._remove(*self.files())
            return
        if resume and self.checkpoint.is_file():
            return
        if self.is_finished():
            raise RunError(
                f"{root}: holds a finished run (test.json, DONE); choose another "
                "output folder, resume it to train more epochs, or overwrite it"
            )
        started = [p.name for p in self.files() if p.exists()]
        if started and not resume:
            raise RunError(
                f"{root}: holds a started run ({', '.join(started)}); "
                "pass resume to continue it or overwrite to start again"
            )

    def open_for_training(
        self,
        cfg: RunConfig,
        task: RecommendationTask | ImageTask,
        resume: bool,
        overwrite: bool,
        allow_other_data: bool,
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Check the folder (:meth:`check_writable`) and read the checkpoint to resume;
        returns ``(checkpoint or None, the finished run's result or None)``. An unfinished
        resumption loses its stale ``test.json``/``DONE``."""
        self.check_writable(resume, overwrite)
        self.clean_temp_files()
        ckpt = None
        if resume and self.checkpoint.is_file():
            _, provenance = self.read_config()
            check_data(self.root, provenance, task, allow_other_data)
            check_denormals(self.root, provenance)
            ckpt = self.read_checkpoint(cfg)
        if ckpt and TrainState(**ckpt["state"]).complete(cfg.train.epochs) and self.is_finished():
            try:
                return ckpt, self.read_result()
            except RunError:  # a damaged test.json: score best.pt again below
                pass
        self._remove(self.done, self.test, self.test_users)
        return ckpt, None

    def start_fresh(self) -> None:
        """A new run in this folder: no metrics, weights or checkpoint of an earlier one."""
        self._remove(self.metrics, self.best, self.checkpoint)

    # ------------------------------------------------------------------ writing
    def write_config(
        self,
        cfg: RunConfig,
        task: RecommendationTask | ImageTask,
        device: torch.device,
        **extra: Any,
    ) -> None:
        """config.yaml: the resolved config at top level plus a ``provenance:`` block."""
        prov = manifest(
            seed=cfg.seed,
            model=cfg.model.name,
            config_hash=config_hash(cfg),
            dataset=task.name,
            data=str(task.root.resolve()),
            data_fingerprint=task.fingerprint,
            task=task.kind,
            device=device_name(str(device)),
            flush_denormal=denormals_flushed(),
            **extra,
        )
        write_text(self.config, dump_yaml({**to_dict(cfg), "provenance": prov}))

    def append_metrics(self, line: dict[str, Any]) -> None:
        append_jsonl(self.metrics, line)

    def truncate_metrics(self, last_epoch: int) -> None:
        """Drop metrics lines after ``last_epoch`` (written after the checkpoint resumed)."""
        truncate_jsonl_epochs(self.metrics, last_epoch)

    def save_checkpoint(
        self,
        cfg: RunConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: TrainState,
        device: torch.device | None = None,
        rng_ranks: list[dict[str, Any]] | None = None,
    ) -> None:
        """checkpoint.pt; under torchrun ``rng_ranks`` (every rank's RNG states, rank 0's
        replaced by its current ones) is stored too, so a resumed run restores every rank."""
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "version": FORMAT_VERSION,
            "model": _cpu_state(model),
            "optimizer": optimizer.state_dict(),
            "rng": rng_states(device),
            "state": dataclasses.asdict(state),
            "config": to_dict(cfg),
        }
        if rng_ranks is not None:
            ckpt["rng_ranks"] = [ckpt["rng"], *rng_ranks[1:]]
        write_torch(self.checkpoint, ckpt)

    def save_best(self, model: nn.Module, epoch: int, monitor: str, value: float) -> None:
        write_torch(
            self.best,
            {
                "format": WEIGHTS_FORMAT,
                "version": FORMAT_VERSION,
                "epoch": epoch,
                "monitor": monitor,
                "value": value,
                "model": _cpu_state(model),
            },
        )

    def finish(self, result: dict[str, Any], per_user: dict[str, np.ndarray]) -> None:
        """test.json (and the per-user test values behind it, test_users.npz), then DONE:
        the folder is a finished run."""
        if per_user:
            write_npz(self.test_users, **per_user)
        write_json(self.test, result)
        write_text(
            self.done,
            json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n",
        )

    # ------------------------------------------------------------------ reading
    def read_config(self) -> tuple[RunConfig, dict[str, Any]]:
        """The run's resolved config and its provenance block (``data``: the prepared
        folder, ``data_fingerprint``, seed, commit, ...)."""
        if not self.root.is_dir():
            raise RunError(f"{self.root}: run folder not found")
        if not self.config.is_file():
            raise RunError(f"{self.root}: no config.yaml - not a run folder")
        data = load_yaml(self.config)
        provenance = data.pop("provenance", None) or {}
        cfg = from_dict(RunConfig, data, where=str(self.config))
        if "data" not in provenance:
            raise RunError(f"{self.config}: no provenance.data (the prepared-data path)")
        return cfg, dict(provenance)

    def read_checkpoint(self, cfg: RunConfig) -> dict[str, Any]:
        """Load ``checkpoint.pt`` and check that it belongs to ``cfg`` (up to
        :data:`RESUMABLE_CHANGES`)."""
        ckpt = load_torch_file(self.checkpoint, CHECKPOINT_FORMAT)
        changed = [
            k for k in _config_changes(ckpt["config"], to_dict(cfg)) if k not in RESUMABLE_CHANGES
        ]
        if changed:
            raise RunError(
                f"{self.checkpoint}: written with a different config "
                f"({', '.join(changed)} differ); resume with the same config or "
                "start a new run folder"
            )
        return ckpt

    def read_result(self) -> dict[str, Any]:
        """test.json of a finished run; a damaged one is a RunError naming it."""
        try:
            doc = json.loads(self.test.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise RunError(
                f"{self.test}: damaged ({type(e).__name__}); resume the run to score it again"
            ) from None
        if not isinstance(doc, dict):
            raise RunError(
                f"{self.test}: damaged (not a JSON object); resume the run to score it again"
            )
        return doc

    def load_best(self, model: nn.Module) -> dict[str, Any]:
        """Load ``best.pt`` into ``model``; returns its metadata (epoch, monitor, value)."""
        obj = load_torch_file(self.best, WEIGHTS_FORMAT)
        load_model_state(model, obj["model"], self.best)
        return {k: v for k, v in obj.items() if k != "model"}


def check_data(
    where: Path,
    provenance: dict[str, Any],
    task: RecommendationTask | ImageTask,
    allow_other_data: bool,
) -> None:
    """Refuse a prepared folder other than the one the run at ``where`` was trained on."""
    recorded = provenance.get("data_fingerprint")
    if allow_other_data or recorded == task.fingerprint:
        return
    raise RunError(
        f"{where} was trained on {provenance.get('data')} (data fingerprint {recorded}); "
        f"{task.root} has fingerprint {task.fingerprint}: other data. Pass "
        "--allow-other-data (allow_other_data=True) to use it anyway"
    )


def check_denormals(where: Path, provenance: dict[str, Any]) -> None:
    """Refuse to resume a run under the other subnormal-float mode than it started with
    (:func:`mdr.seeding.flush_denormals`): its epochs would mix two numerics."""
    started = bool(provenance.get("flush_denormal", False))
    if started == denormals_flushed():
        return
    how = "with" if started else "without"
    raise RunError(
        f"{where} was trained {how} --flush-denormals; resume it {how} the flag "
        "(or train into a new folder)"
    )


# --------------------------------------------------------------------------- finished runs


@dataclass(frozen=True)
class LoadedRun:
    """A finished run, ready to use: its config, its task (the prepared data), the model
    at its best validation epoch (in eval mode), and what the model offers the
    explanations (:mod:`mdr.models.capabilities`), read once when the run is opened."""

    folder: RunFolder
    cfg: RunConfig
    task: RecommendationTask | ImageTask
    model: nn.Module
    best: dict[str, Any]  # best.pt's metadata: epoch, monitor, value
    device: torch.device
    capabilities: Capabilities = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", model_capabilities(self.model))

    @property
    def ds(self) -> Any:
        """The prepared dataset (a ProcessedDataset for recommendation runs)."""
        return self.task.data

    def require(self, *needs: str, purpose: str) -> LoadedRun:
        """This run, when its model offers every capability in ``needs`` (names of
        :class:`~mdr.models.capabilities.Capabilities` fields); else a :class:`RunError`
        naming the run, its model, what it lacks and ``purpose`` (why it is needed), e.g.
        ``RUN: model 'deepfm' has no image decoder; Figure 4 traverses the image decoder``."""
        missing = self.capabilities.missing(*needs)
        if missing:
            raise RunError(
                f"{self.folder.root}: model {self.cfg.model.name!r} has no "
                f"{' and no '.join(missing)}; {purpose}"
            )
        return self


def load_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    device: str = "cpu",
    allow_other_data: bool = False,
    allow_unfinished: bool = False,
) -> LoadedRun:
    """Rebuild a run's model from ``RUN/config.yaml`` and load ``RUN/best.pt`` into it.

    ``data`` defaults to the prepared folder recorded in the run's config.yaml; another
    folder must hold the same data (:func:`check_data`) unless ``allow_other_data``. A run
    without ``DONE`` and ``test.json`` (interrupted, or still training) is refused unless
    ``allow_unfinished`` (its best.pt is then the best epoch so far).
    """
    run = RunFolder(Path(run_dir))
    cfg, provenance = run.read_config()
    if not run.is_finished() and not allow_unfinished:
        raise RunError(
            f"{run.root}: an unfinished run (no DONE/test.json: interrupted or still "
            "training); resume it with `mdr train --resume`, or pass "
            "--allow-unfinished to use its best epoch so far"
        )
    task = open_task(cfg, data if data is not None else provenance["data"])
    check_data(run.root, provenance, task, allow_other_data)
    dev = resolve_device(device)
    model = build(cfg, task, dev)
    best = run.load_best(model)
    model.eval()
    return LoadedRun(run, cfg, task, model, best, dev)


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    split: Split = "test",
    full_ranking: bool = False,
    device: str = "cpu",
    progress: bool = True,
    allow_other_data: bool = False,
    allow_unfinished: bool = False,
) -> dict[str, Any]:
    """Re-score a run's ``best.pt`` on ``split`` of its data (see :func:`load_run`)."""
    lr = load_run(run_dir, data, device, allow_other_data, allow_unfinished)
    if not isinstance(lr.task, RecommendationTask):
        raise RunError(
            f"{lr.folder.root}: an image-side run has no recommendation lists to "
            f"score; its held-out metrics are in {lr.folder.test.name}"
        )
    cfg, ds = lr.cfg, lr.task.ds
    result = evaluate_model(
        lr.model,
        ds,
        split,
        cfg.train.max_hist,
        cfg.train.eval_batch_size,
        lr.device,
        full_ranking,
        amp=cfg.train.amp,
        progress=progress,
        full_rank_users=cfg.train.full_rank_users if full_ranking else None,
    )
    finished = lr.folder.is_finished()
    return {
        "split": split,
        "dataset": ds.name,
        "n_users": ds.n_users,
        "best_epoch": lr.best["epoch"],
        **({} if finished else {"unfinished": True}),
        **result,
    }


__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "RESUMABLE_CHANGES",
    "WEIGHTS_FORMAT",
    "LoadedRun",
    "RunError",
    "RunFolder",
    "TrainState",
    "build",
    "check_data",
    "evaluate_run",
    "load_model_state",
    "load_run",
    "load_torch_file",
    "resolve_device",
    "rng_states",
    "set_rng_states",
]
