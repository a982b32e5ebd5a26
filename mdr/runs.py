"""The run folder: its files, building a run's model, and reopening finished runs.

The trainer (:mod:`mdr.train`) writes run folders; evaluation, the explanation
tools, the benchmarks and the CLI read them through this module. One format for
every model (MDR, its baselines, the CTR baselines, the image side alone):

=================  ===============================================================
``config.yaml``    the resolved config at top level plus a ``provenance:`` block
                   (seed, git commit, package versions, device, the prepared data's
                   name, path and fingerprint)
``metrics.jsonl``  one line per epoch: ``train/<term>``, ``valid/<metric>``, times
``checkpoint.pt``  everything to resume, written atomically after every epoch
``best.pt``        weights at the best validation epoch
``test.json``      the test metrics of ``best.pt``
``DONE``           written last: a folder with it (and test.json) is a finished run
=================  ===============================================================

A run is tied to its data: :func:`check_data` refuses to evaluate, explain or resume
a run on a prepared folder whose fingerprint (:func:`mdr.tasks.data_fingerprint`)
differs from the one the run recorded, unless asked (``allow_other_data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mdr.config import RunConfig, from_dict, load_yaml
from mdr.data.batches import Split
from mdr.evaluate import evaluate_model
from mdr.registry import build_model
from mdr.tasks import ImageTask, RecommendationTask, open_task

CHECKPOINT_FORMAT = "mdr-checkpoint"
WEIGHTS_FORMAT = "mdr-weights"
FORMAT_VERSION = 2


class RunError(RuntimeError):
    """A run folder or checkpoint that cannot be used as asked (exit status 2 in the CLI)."""


def load_torch_file(path: Path, fmt: str) -> dict[str, Any]:
    """Load a checkpoint written by the trainer with ``torch.load(weights_only=True)``.

    A missing, corrupt or foreign file raises :class:`RunError` naming the file.
    """
    if not path.is_file():
        raise RunError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt/unsafe files
        raise RunError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise RunError(f"{path}: not an MDR {fmt!r} file (found {found!r})")
    if obj.get("version") != FORMAT_VERSION:
        raise RunError(f"{path}: {fmt} version {obj.get('version')!r}, expected "
                       f"{FORMAT_VERSION}; train the run again with this version")
    return obj


def load_model_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """``model.load_state_dict(state)``; a mismatch raises :class:`RunError` naming ``path``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(f"{path}: weights do not fit the model "
                       f"({str(e).splitlines()[0]})") from e


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; ``auto`` is CUDA when present, else the CPU. CUDA asked for
    but unavailable raises :class:`RunError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device {name!r} asked for, but CUDA is not available here "
                       "(use --device cpu or auto)")
    return device


def build(cfg: RunConfig, task: RecommendationTask | ImageTask,
          device: torch.device) -> nn.Module:
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
        raise RunError(f"model {cfg.model.name!r} lacks method(s) {missing} that a "
                       f"{task.kind} task calls")
    return model.to(device)


@dataclass(frozen=True)
class RunFolder:
    """The files of a run folder (see the module docstring)."""

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
    def done(self) -> Path:
        return self.root / "DONE"

    def files(self) -> list[Path]:
        return [self.config, self.metrics, self.checkpoint, self.best, self.test, self.done]

    def is_finished(self) -> bool:
        return self.done.is_file() and self.test.is_file()

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

    def load_best(self, model: nn.Module) -> dict[str, Any]:
        """Load ``best.pt`` into ``model``; returns its metadata (epoch, monitor, value)."""
        obj = load_torch_file(self.best, WEIGHTS_FORMAT)
        load_model_state(model, obj["model"], self.best)
        return {k: v for k, v in obj.items() if k != "model"}


def check_data(where: Path, provenance: dict[str, Any], task: RecommendationTask | ImageTask,
               allow_other_data: bool) -> None:
    """Refuse a prepared folder other than the one the run at ``where`` was trained on."""
    recorded = provenance.get("data_fingerprint")
    if allow_other_data or recorded == task.fingerprint:
        return
    raise RunError(
        f"{where} was trained on {provenance.get('data')} (data fingerprint {recorded}); "
        f"{task.root} has fingerprint {task.fingerprint}: other data. Pass "
        "--allow-other-data (allow_other_data=True) to use it anyway")


@dataclass(frozen=True)
class LoadedRun:
    """A finished run, ready to use: its config, its task (the prepared data), and the
    model at its best validation epoch (in eval mode)."""

    folder: RunFolder
    cfg: RunConfig
    task: RecommendationTask | ImageTask
    model: nn.Module
    best: dict[str, Any]  # best.pt's metadata: epoch, monitor, value
    device: torch.device

    @property
    def ds(self) -> Any:
        """The prepared dataset (a ProcessedDataset for recommendation runs)."""
        return self.task.data


def load_run(run_dir: str | Path, data: str | Path | None = None, device: str = "cpu",
             allow_other_data: bool = False, allow_unfinished: bool = False) -> LoadedRun:
    """Rebuild a run's model from ``RUN/config.yaml`` and load ``RUN/best.pt`` into it.

    ``data`` defaults to the prepared folder recorded in the run's config.yaml; another
    folder must hold the same data (:func:`check_data`) unless ``allow_other_data``. A run
    without ``DONE`` and ``test.json`` (interrupted, or still training) is refused unless
    ``allow_unfinished`` (its best.pt is then the best epoch so far).
    """
    run = RunFolder(Path(run_dir))
    cfg, provenance = run.read_config()
    if not run.is_finished() and not allow_unfinished:
        raise RunError(f"{run.root}: an unfinished run (no DONE/test.json: interrupted or still "
                       "training); resume it with `mdr train --resume`, or pass "
                       "--allow-unfinished to use its best epoch so far")
    task = open_task(cfg, data if data is not None else provenance["data"])
    check_data(run.root, provenance, task, allow_other_data)
    dev = resolve_device(device)
    model = build(cfg, task, dev)
    best = run.load_best(model)
    model.eval()
    return LoadedRun(run, cfg, task, model, best, dev)


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, split: Split = "test",
                 full_ranking: bool = False, device: str = "cpu", progress: bool = True,
                 allow_other_data: bool = False,
                 allow_unfinished: bool = False) -> dict[str, Any]:
    """Re-score a run's ``best.pt`` on ``split`` of its data (see :func:`load_run`)."""
    lr = load_run(run_dir, data, device, allow_other_data, allow_unfinished)
    if not isinstance(lr.task, RecommendationTask):
        raise RunError(f"{lr.folder.root}: an image-side run has no recommendation lists to "
                       f"score; its held-out metrics are in {lr.folder.test.name}")
    cfg, ds = lr.cfg, lr.task.ds
    result = evaluate_model(lr.model, ds, split, cfg.train.max_hist, cfg.train.eval_batch_size,
                            lr.device, full_ranking, amp=cfg.train.amp, progress=progress,
                            full_rank_users=cfg.train.full_rank_users if full_ranking else None)
    finished = lr.folder.is_finished()
    return {"split": split, "dataset": ds.name, "n_users": ds.n_users,
            "best_epoch": lr.best["epoch"], **({} if finished else {"unfinished": True}),
            **result}


__all__ = ["CHECKPOINT_FORMAT", "FORMAT_VERSION", "WEIGHTS_FORMAT", "LoadedRun", "RunError",
           "RunFolder", "build", "check_data", "evaluate_run", "load_model_state", "load_run",
           "load_torch_file", "resolve_device"]
