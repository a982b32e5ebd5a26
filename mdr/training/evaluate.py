"""Score a model on the stored evaluation lists and by full ranking (the protocol of docs/design.md).

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

The functions take a model and a prepared dataset, never a run folder: the run layer
(:mod:`mdr.training.runs`) reopens finished runs, the trainer (:mod:`mdr.training.train`) validates with
them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mdr import metrics
from mdr.data.batches import (
    BatchIterator,
    Split,
    eval_samples,
    full_rank_user_subset,
    subset_rows,
    user_seen,
)
from mdr.data.dataset import ProcessedDataset
from mdr.models.base import to_device
from mdr.training.errors import DivergedError

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


def item_representations(
    model: nn.Module, n_items: int, batch_size: int, device: torch.device | str, amp: bool = False
) -> Tensor:
    """``model.encode_items`` over all item ids in chunks: float [I, D] on ``device``."""
    device = torch.device(device)
    chunks = []
    with eval_mode(model), autocast(device, amp):
        for lo in range(0, n_items, batch_size):
            ids = torch.arange(lo, min(lo + batch_size, n_items), device=device)
            chunks.append(model.encode_items(ids).float())  # (b, D)
    return torch.cat(chunks)  # (I, D)


def sampled_scores(
    model: nn.Module,
    reps: Tensor,
    samples: dict[str, np.ndarray],
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
) -> np.ndarray:
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


def full_ranking_ranks(
    model: nn.Module,
    reps: Tensor,
    samples: dict[str, np.ndarray],
    seen: Any,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
) -> np.ndarray:
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
            scores = (
                torch.cat(
                    [
                        model.score(
                            reps,
                            b["hist"],
                            b["hist_mask"],
                            all_items[lo : lo + items_per_call].expand(n, -1),
                            b["user"],
                        ).float()
                        for lo in range(0, n_items, items_per_call)
                    ],
                    dim=1,
                )
                .cpu()
                .numpy()
            )  # (n, I)
            u = batch["user"].numpy()
            ranks.append(
                metrics.full_ranks(scores, batch["cands"][:, 0].numpy(), seen[u].toarray())
            )
    return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation measured: the metrics (means over users) and, per user, the
    values they average (the units of a paired bootstrap over test users)."""

    metrics: dict[str, float]
    users: np.ndarray  # int64 [U]: the users of the sampled lists (every user)
    per_user: dict[str, np.ndarray]  # "auc", "ndcg@k", "hr@k": float64 [U]
    full_users: np.ndarray  # int64 [U']: the users ranked over all items ([] without)
    full_ranks: np.ndarray  # int64 [U']: their positive's 0-based rank


def evaluate_split(
    model: nn.Module,
    ds: ProcessedDataset,
    split: Split = "valid",
    max_hist: int = 20,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    full_ranking: bool = False,
    amp: bool = False,
    progress: bool = False,
    k: int = K,
    full_rank_users: int | None = None,
) -> Evaluation:
    """Sampled-list metrics (``gauc``, ``auc``, ``ndcg@k``, ``hr@k``) of ``split``, plus
    ``full_ndcg@k`` and ``full_hr@k`` when ``full_ranking`` (over all users, or the fixed
    subset of ``full_rank_users`` users, see :func:`full_rank_user_subset`), with the
    per-user values behind them."""
    device = torch.device(device)
    samples = eval_samples(ds, split, max_hist)
    reps = item_representations(model, ds.n_items, batch_size, device, amp)
    scores = sampled_scores(model, reps, samples, batch_size, device, amp, progress)
    if not np.all(np.isfinite(scores)):
        bad = int(np.sum(~np.isfinite(scores)))
        raise DivergedError(
            f"{bad} of the {split} scores are NaN or infinite: the model "
            "diverged; lower train.lr or the loss weights, or set "
            "train.grad_clip"
        )
    result = metrics.sampled_list_metrics(scores, k=k)
    per_user = metrics.per_user_list_metrics(scores, k) if len(scores) else {}
    full_users = np.zeros(0, np.int64)
    ranks = np.zeros(0, np.int64)
    if full_ranking:
        ranked = subset_rows(samples, full_rank_user_subset(ds.n_users, full_rank_users))
        ranks = full_ranking_ranks(
            model, reps, ranked, user_seen(ds, split), batch_size, device, amp, progress
        )
        full_users = ranked["user"].astype(np.int64)
        result["full_rank_users"] = len(ranks)
        result |= {f"full_{key}": v for key, v in metrics.full_rank_metrics(ranks, k).items()}
    return Evaluation(result, samples["user"].astype(np.int64), per_user, full_users, ranks)


def evaluate_model(
    model: nn.Module,
    ds: ProcessedDataset,
    split: Split = "valid",
    max_hist: int = 20,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    full_ranking: bool = False,
    amp: bool = False,
    progress: bool = False,
    k: int = K,
    full_rank_users: int | None = None,
) -> dict[str, float]:
    """The metrics of :func:`evaluate_split` alone."""
    return evaluate_split(
        model,
        ds,
        split,
        max_hist,
        batch_size,
        device,
        full_ranking,
        amp,
        progress,
        k,
        full_rank_users,
    ).metrics


__all__ = [
    "Evaluation",
    "K",
    "autocast",
    "eval_mode",
    "evaluate_model",
    "evaluate_split",
    "full_ranking_ranks",
    "item_representations",
    "sampled_scores",
]
