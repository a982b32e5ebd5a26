"""Score a model on the stored evaluation lists and by full ranking (the Protocol of DESIGN.md).

Item representations are computed once per evaluation (``model.encode_items``
over all items, in chunks, posterior means), then every user's candidates are
scored with ``model.score``:

- sampled: the stored list of each user (column 0 the held-out positive, then
  ``n_neg`` sampled negatives) -> GAUC, AUC, NDCG@k, HR@k
  (:func:`mdr.metrics.sampled_list_metrics`);
- full ranking: every item, except the items of the history the model is
  given for the split (:func:`mdr.data.batches.user_seen`; the positive always
  stays rankable) -> ``full_ndcg@k``, ``full_hr@k``
  (:func:`mdr.metrics.full_rank_metrics`).

It also reads finished runs (:class:`RunFolder`, :func:`evaluate_run`): the
trainer (:mod:`mdr.train`) sits above this module and writes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mdr import metrics
from mdr.config import RunConfig, from_dict, load_yaml
from mdr.data.batches import (
    BatchIterator,
    Split,
    eval_samples,
    full_rank_user_subset,
    subset_rows,
    user_seen,
)
from mdr.data.dataset import ProcessedDataset
from mdr.models.base import ItemFeatures, to_device
from mdr.registry import build_model

K = 10
# Full ranking calls model.score on blocks of (users x items). DIN materialises
# (users, items, history, attention width) activations, so on the CPU small
# blocks that stay in cache are ~3x faster than large ones (measured on 2 cores:
# 16 users x 256 items 24 s against 43 x 1500 70 s for the small shop); on a GPU
# large blocks keep the device busy.
_FULL_RANK_BLOCK = {"cpu": (16, 256), "cuda": (256, 8192)}


def _pairs_per_call(device: torch.device) -> int:
    """(user, candidate) pairs one ``model.score`` call should score on ``device``."""
    users, items = _FULL_RANK_BLOCK.get(device.type, _FULL_RANK_BLOCK["cpu"])
    return users * items


def _list_users_per_call(device: torch.device, batch_size: int, n_cands: int) -> int:
    """Users per ``model.score`` call for lists of ``n_cands``: at most ``batch_size``, and
    no more pairs than a full-ranking block (DIN's (users, C, H, A) activations of 512 users x
    101 candidates are ~150 MB; 40 users stay in cache: 4x faster on the CPU, same scores)."""
    return max(1, min(batch_size, _pairs_per_call(device) // max(n_cands, 1)))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` under ``torch.no_grad()``, restoring the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when ``amp``; a no-op otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def item_representations(model: nn.Module, n_items: int, batch_size: int,
                         device: torch.device | str, amp: bool = False) -> Tensor:
    """``model.encode_items`` over all item ids in chunks: float [I, D] on ``device``."""
    device = torch.device(device)
    chunks = []
    with eval_mode(model), autocast(device, amp):
        for lo in range(0, n_items, batch_size):
            ids = torch.arange(lo, min(lo + batch_size, n_items), device=device)
            chunks.append(model.encode_items(ids).float())  # (b, D)
    return torch.cat(chunks)  # (I, D)


def sampled_scores(model: nn.Module, reps: Tensor, samples: dict[str, np.ndarray],
                   batch_size: int, device: torch.device, amp: bool = False,
                   progress: bool = False) -> np.ndarray:
    """Scores float64 [U, C] of each user's candidate list ``samples["cands"]``.

    Users are scored in blocks of at most ``batch_size`` (fewer on the CPU, see
    :func:`_list_users_per_call`); each user's scores do not depend on the block.
    """
    device = torch.device(device)
    out = []
    n_cands = samples["cands"].shape[1] if samples["cands"].ndim == 2 else 1
    batches = BatchIterator(samples, _list_users_per_call(device, batch_size, n_cands))
    with eval_mode(model), autocast(device, amp):
        for batch in tqdm(batches, desc="score lists", disable=not progress, leave=False):
            b = to_device(batch, device)
            s = model.score(reps, b["hist"], b["hist_mask"], b["cands"], b["user"])  # (b, C)
            out.append(s.float().cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def full_ranking_ranks(model: nn.Module, reps: Tensor, samples: dict[str, np.ndarray],
                       seen: Any, batch_size: int, device: torch.device, amp: bool = False,
                       progress: bool = False) -> np.ndarray:
    """0-based rank int64 [U] of each user's positive (``cands[:, 0]``) among all items
    not in ``seen`` (CSR bool [U, I]); ties rank above the positive."""
    n_items = seen.shape[1]
    users_per_batch, items_per_call = _FULL_RANK_BLOCK.get(device.type, _FULL_RANK_BLOCK["cpu"])
    users_per_batch = max(1, min(batch_size, users_per_batch))
    all_items = torch.arange(n_items, device=device)
    ranks = []
    batches = BatchIterator(samples, users_per_batch)
    with eval_mode(model), autocast(device, amp):
        for batch in tqdm(batches, desc="full ranking", disable=not progress, leave=False):
            b = to_device(batch, device)
            n = b["user"].shape[0]
            scores = torch.cat([
                model.score(reps, b["hist"], b["hist_mask"],
                            all_items[lo:lo + items_per_call].expand(n, -1), b["user"]).float()
                for lo in range(0, n_items, items_per_call)
            ], dim=1).cpu().numpy()  # (n, I)
            u = batch["user"].numpy()
            ranks.append(metrics.full_ranks(scores, batch["cands"][:, 0].numpy(),
                                            seen[u].toarray()))
    return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)


def evaluate_model(model: nn.Module, ds: ProcessedDataset, split: Split = "valid",
                   max_hist: int = 20, batch_size: int = 512,
                   device: torch.device | str = "cpu", full_ranking: bool = False,
                   amp: bool = False, progress: bool = False, k: int = K,
                   full_rank_users: int | None = None) -> dict[str, float]:
    """Sampled-list metrics (``gauc``, ``auc``, ``ndcg@k``, ``hr@k``) of ``split``, plus
    ``full_ndcg@k`` and ``full_hr@k`` when ``full_ranking`` (over all users, or the fixed
    subset of ``full_rank_users`` users, see :func:`full_rank_user_subset`)."""
    device = torch.device(device)
    samples = eval_samples(ds, split, max_hist)
    reps = item_representations(model, ds.n_items, batch_size, device, amp)
    scores = sampled_scores(model, reps, samples, batch_size, device, amp, progress)
    result = metrics.sampled_list_metrics(scores, k=k)
    if full_ranking:
        rows = full_rank_user_subset(ds.n_users, full_rank_users)
        ranks = full_ranking_ranks(model, reps, subset_rows(samples, rows), user_seen(ds, split),
                                   batch_size, device, amp, progress)
        result["full_rank_users"] = len(ranks)
        result |= {f"full_{key}": v for key, v in metrics.full_rank_metrics(ranks, k).items()}
    return result


# --------------------------------------------------------------------------- finished runs


class RunError(RuntimeError):
    """A run folder or checkpoint that cannot be used as asked (exit status 2 in the CLI)."""


CHECKPOINT_FORMAT = "mdr-checkpoint"
WEIGHTS_FORMAT = "mdr-weights"
FORMAT_VERSION = 1


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
        raise RunError(f"{path}: {fmt} version {obj.get('version')!r}, "
                       f"expected {FORMAT_VERSION}")
    return obj


def load_model_state(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """``model.load_state_dict(state)``; a mismatch raises :class:`RunError` naming ``path``."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(f"{path}: weights do not fit the model "
                       f"({str(e).splitlines()[0]})") from e


def item_features(ds: ProcessedDataset) -> ItemFeatures:
    """Everything a content model may use about the items, as CPU tensors (built once)."""
    text = ds.text
    labels = {k: torch.from_numpy(v.astype(np.int64)) for k, v in ds.labels.items()}
    classes = {name: len(names) for name, names in ds.label_names.items()}
    for name, y in labels.items():  # labels without class names in the manifest
        classes.setdefault(name, int(y.max()) + 1 if y.numel() else 0)
    return ItemFeatures(
        n_items=ds.n_items,
        n_users=ds.n_users,
        images=torch.from_numpy(np.array(ds.images)),  # uint8 (I, S, S, 3), copied from the mmap
        image_mask=torch.from_numpy(ds.image_mask.astype(bool)),
        tokens=torch.from_numpy(text["tokens"].astype(np.int64)),  # (I, L)
        lengths=torch.from_numpy(text["lengths"].astype(np.int64)),
        word_vectors=torch.from_numpy(ds.word_vectors.astype(np.float32)),  # (V, d)
        labels=labels,
        label_classes=classes,
        category=torch.from_numpy(ds.item_category.astype(np.int64)),
        n_categories=ds.n_categories,
    )


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; CUDA asked for but unavailable raises :class:`RunError`."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def build(cfg: RunConfig, ds: ProcessedDataset, device: torch.device) -> nn.Module:
    """The registered model of ``cfg.model.name`` on ``device`` (consumes torch RNG for init)."""
    model = build_model(None, cfg, item_features(ds))
    missing = [m for m in ("calculate_loss", "predict", "encode_items", "score")
               if not callable(getattr(model, m, None))]
    if missing:
        raise RunError(f"model {cfg.model.name!r} lacks RecModel method(s) {missing}")
    return model.to(device)


@dataclass(frozen=True)
class RunFolder:
    """The files of a run folder (the trainer writes them; :func:`evaluate_run` reads them).

    ``config.yaml``: the resolved RunConfig at top level plus a ``provenance:``
    block (git commit, versions, dataset, data path, device, ...);
    ``metrics.jsonl``: one line per epoch; ``checkpoint.pt``: everything to
    resume; ``best.pt``: weights at the best validation GAUC; ``test.json``:
    the final metrics; ``DONE``: written last, marks a finished run.
    """

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

    def read_config(self) -> tuple[RunConfig, str]:
        """The run's resolved config and the prepared-data path it recorded."""
        if not self.config.is_file():
            raise RunError(f"{self.root}: no config.yaml - not a run folder")
        data = load_yaml(self.config)
        provenance = data.pop("provenance", None) or {}
        cfg = from_dict(RunConfig, data, where=str(self.config))
        if "data" not in provenance:
            raise RunError(f"{self.config}: no provenance.data (the prepared-data path)")
        return cfg, str(provenance["data"])

    def load_best(self, model: nn.Module) -> dict[str, Any]:
        """Load ``best.pt`` into ``model``; returns its metadata (epoch, valid_gauc)."""
        obj = load_torch_file(self.best, WEIGHTS_FORMAT)
        load_model_state(model, obj["model"], self.best)
        return {k: v for k, v in obj.items() if k != "model"}


@dataclass(frozen=True)
class LoadedRun:
    """A finished run, ready to use: its config, its prepared data, and the model at
    its best validation epoch (in eval mode)."""

    folder: RunFolder
    cfg: RunConfig
    ds: ProcessedDataset
    model: nn.Module
    best: dict[str, Any]  # best.pt's metadata: epoch, valid_gauc
    device: torch.device


def load_run(run_dir: str | Path, data: str | Path | None = None,
             device: str = "cpu") -> LoadedRun:
    """Rebuild a run's model from ``RUN/config.yaml`` and load ``RUN/best.pt`` into it.

    ``data`` defaults to the prepared folder recorded in the run's config.yaml.
    The model is built for any registered representation model (not the deepctr
    baselines, whose runs hold a different weights format).
    """
    run = RunFolder(Path(run_dir))
    cfg, recorded = run.read_config()
    ds = ProcessedDataset.open(data if data is not None else recorded)
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    model = build(cfg, ds, dev)
    best = run.load_best(model)
    model.eval()
    return LoadedRun(run, cfg, ds, model, best, dev)


def evaluate_run(run_dir: str | Path, data: str | Path | None = None, split: Split = "test",
                 full_ranking: bool = False, device: str = "cpu",
                 progress: bool = True) -> dict[str, Any]:
    """Re-score a finished run from ``RUN/best.pt`` and ``RUN/config.yaml``.

    ``data`` defaults to the prepared folder recorded in the run's config.yaml.
    """
    lr = load_run(run_dir, data, device)
    cfg, ds = lr.cfg, lr.ds
    result = evaluate_model(lr.model, ds, split, cfg.train.max_hist, cfg.train.eval_batch_size,
                            lr.device, full_ranking, amp=cfg.train.amp, progress=progress)
    return {"split": split, "dataset": ds.name, "n_users": ds.n_users,
            "best_epoch": lr.best["epoch"], **result}
