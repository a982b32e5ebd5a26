"""Training and evaluation samples from a prepared dataset, and cheap in-memory batching.

Everything here is vectorised NumPy over the flat ``behaviors.npz`` arrays (sorted
by user, then time), so building one epoch of Cloth (~200k training behaviours)
takes well under a second.

History layout (used everywhere in this module): **right-aligned**. Column
``H - 1`` holds the most recent item before the target, column ``H - 2`` the
one before, and so on; shorter histories are padded on the LEFT with item id 0
and ``hist_mask`` False. So ``hist[:, -k:]`` is always the ``k`` most recent
items.

- :func:`training_samples`: DIN's construction on each user's TRAINING sequence:
  for every prefix position ``t >= 1`` the item at ``t`` is a positive (label 1),
  paired with ``n_neg`` negatives (label 0) drawn uniformly from the items the
  user never interacted with in any split, resampled every epoch from
  ``mdr.seeding.rng(seed, "train-neg", epoch)``.
- :func:`eval_samples`: one row per user with the stored evaluation list
  (column 0 the held-out positive); the history is the training sequence for
  ``valid`` and training + validation item for ``test``.
- :func:`user_seen`: which items full ranking excludes for each user.
- :class:`BatchIterator`: dicts of torch tensors (the layout of
  :mod:`mdr.models.base`), shuffled per epoch from a seeded ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from mdr.data.dataset import TRAIN, VALID, ProcessedDataset
from mdr.data.parse import DataError
from mdr.seeding import rng

Split = Literal["valid", "test"]

_MAX_REJECTION_ROUNDS = 1000


# --------------------------------------------------------------------------- helpers


def _behaviours(ds: ProcessedDataset, splits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(user, item)`` int64 arrays of the behaviours in ``splits``, sorted by user then time."""
    b = ds.behaviors
    keep = np.isin(b["split"], splits)
    return b["user"][keep].astype(np.int64), b["item"][keep].astype(np.int64)


def _window(
    items: np.ndarray, end: np.ndarray, start: np.ndarray, max_hist: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-aligned windows ``items[max(start, end - H):end]`` for each row.

    ``end`` (exclusive) and ``start`` are int64 [N] indices into the flat ``items``.
    Returns ``hist`` int64 [N, H] (0 where padded) and ``hist_mask`` bool [N, H].
    """
    cols = np.arange(max_hist, dtype=np.int64)  # (H,)
    idx = end[:, None] - max_hist + cols[None, :]  # (N, H)
    mask = idx >= start[:, None]
    if items.size == 0:
        return np.zeros(idx.shape, np.int64), mask & False
    hist = np.where(mask, items[np.clip(idx, 0, items.size - 1)], 0)
    return hist.astype(np.int64), mask


def _interaction_keys(ds: ProcessedDataset) -> np.ndarray:
    """Sorted unique ``user * n_items + item`` keys of all behaviours (every split)."""
    b = ds.behaviors
    return np.unique(b["user"].astype(np.int64) * ds.n_items + b["item"].astype(np.int64))


def _sample_unseen(ds: ProcessedDataset, users: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """One item per entry of ``users``, uniform over the items that user never interacted with.

    Vectorised rejection sampling: draw all, redraw only the rejected entries.
    Deterministic for a given generator state.
    """
    n_items = ds.n_items
    keys = _interaction_keys(ds)
    distinct = np.bincount(keys // n_items, minlength=ds.n_users)  # distinct items per user
    full = np.flatnonzero(distinct >= n_items)
    if full.size and np.isin(users, full).any():
        raise DataError(
            f"{ds.root}: user {int(full[0])} interacted with every item; no negative can be sampled"
        )
    out = gen.integers(0, n_items, size=users.shape, dtype=np.int64)
    todo = np.arange(users.size)
    for _ in range(_MAX_REJECTION_ROUNDS):
        q = users[todo] * n_items + out[todo]
        pos = np.searchsorted(keys, q)
        seen = (pos < keys.size) & (keys[np.minimum(pos, keys.size - 1)] == q)
        todo = todo[seen]
        if todo.size == 0:
            return out
        out[todo] = gen.integers(0, n_items, size=todo.size, dtype=np.int64)
    raise DataError(
        f"{ds.root}: negative sampling did not converge "  # pragma: no cover
        f"after {_MAX_REJECTION_ROUNDS} rounds"
    )


# --------------------------------------------------------------------------- samples


def training_samples(
    ds: ProcessedDataset, epoch: int, seed: int, n_neg: int = 1, max_hist: int = 20
) -> dict[str, np.ndarray]:
    """DIN's training samples for one epoch (see the module docstring for the layout).

    Rows come in a fixed order: for each positive (by user, then time) the
    positive row, then its ``n_neg`` negative rows (same history). N = P * (1 + n_neg).

    Returns ``user`` int64 [N], ``hist`` int64 [N, H], ``hist_mask`` bool [N, H],
    ``cand`` int64 [N], ``label`` float32 [N].
    """
    if n_neg < 0 or max_hist < 1:
        raise ValueError(f"n_neg must be >= 0 and max_hist >= 1, got {n_neg}, {max_hist}")
    user, item = _behaviours(ds, (TRAIN,))  # (T,)
    starts = np.searchsorted(user, user, side="left")  # first index of each row's user
    g = np.flatnonzero(np.arange(user.size) > starts)  # positions t >= 1, (P,)
    hist, hist_mask = _window(item, g, starts[g], max_hist)  # (P, H)
    pos_user, pos_item = user[g], item[g]

    gen = rng(seed, "train-neg", epoch)
    neg_user = np.repeat(pos_user, n_neg)  # (P * n_neg,)
    neg_item = _sample_unseen(ds, neg_user, gen).reshape(-1, n_neg)  # (P, n_neg)

    k = 1 + n_neg
    cand = np.concatenate([pos_item[:, None], neg_item], axis=1).reshape(-1)  # (P * k,)
    label = np.zeros((g.size, k), np.float32)
    label[:, 0] = 1.0
    return {
        "user": np.repeat(pos_user, k),
        "hist": np.repeat(hist, k, axis=0),
        "hist_mask": np.repeat(hist_mask, k, axis=0),
        "cand": cand.astype(np.int64),
        "label": label.reshape(-1),
    }


def _history_splits(split: Split, ds: ProcessedDataset | None = None) -> tuple[int, ...]:
    if split == "test" and ds is not None and not ds.has_test:
        raise DataError(
            f"{ds.root}: this view holds no test split (the validation-only data "
            "of tuning and protocol choices); nothing here may read the test"
        )
    if split == "valid":
        return (TRAIN,)
    if split == "test":
        return (TRAIN, VALID)
    raise ValueError(f"split must be 'valid' or 'test', got {split!r}")


def eval_samples(ds: ProcessedDataset, split: Split, max_hist: int = 20) -> dict[str, np.ndarray]:
    """One row per user (row u = user u): history and the stored evaluation list.

    History is the user's training sequence for ``valid`` and training +
    validation item for ``test`` (the most recent ``max_hist``, right-aligned).
    Returns ``user`` int64 [U], ``hist`` int64 [U, H], ``hist_mask`` bool [U, H],
    ``cands`` int64 [U, 1 + n_neg] (column 0 the held-out positive).
    """
    splits = _history_splits(split, ds)
    cands = ds.eval_lists[split].astype(np.int64)
    if cands.shape[0] != ds.n_users:
        raise DataError(
            f"{ds.root}/eval_lists.npz: {split!r} has {cands.shape[0]} rows, "
            f"expected one per user ({ds.n_users})"
        )
    user, item = _behaviours(ds, splits)
    users = np.arange(ds.n_users, dtype=np.int64)
    start = np.searchsorted(user, users, side="left")
    end = np.searchsorted(user, users, side="right")
    hist, hist_mask = _window(item, end, start, max_hist)
    return {"user": users, "hist": hist, "hist_mask": hist_mask, "cands": cands}


def user_seen(ds: ProcessedDataset, split: Split = "valid") -> sp.csr_matrix:
    """bool CSR [U, I]: the items full ranking excludes for each user.

    These are the items of the history the model is given for ``split``: the
    training items for ``valid``, training + validation item for ``test``. The
    held-out positive (``eval_lists[split][:, 0]``) is always left rankable, even
    if the user had interacted with it before.
    """
    user, item = _behaviours(ds, _history_splits(split, ds))
    m = sp.csr_matrix(
        (np.ones(user.size, bool), (user, item)), shape=(ds.n_users, ds.n_items), dtype=bool
    )
    m.sum_duplicates()
    pos = ds.eval_lists[split][:, 0].astype(np.int64)
    hit = np.asarray(m[np.arange(ds.n_users), pos]).ravel()
    if hit.any():
        m = m.tolil()
        for u in np.flatnonzero(hit):
            m[u, pos[u]] = False
        m = m.tocsr()
        m.eliminate_zeros()
    return m


# --------------------------------------------------------------------------- batching


def shuffle_generator(seed: int, epoch: int, stream: str = "shuffle") -> torch.Generator:
    """The epoch's shuffle generator, seeded from ``rng(seed, stream, epoch)``."""
    g = torch.Generator()
    g.manual_seed(int(rng(seed, stream, epoch).integers(0, 2**63 - 1)))
    return g


class BatchIterator:
    """Batches of torch tensors from in-memory arrays that share their first dimension.

    ``shuffle=True`` permutes the rows with :func:`shuffle_generator` ``(seed, epoch, stream)``,
    so the order depends only on the seed and the epoch. Collation is a NumPy
    gather per key plus :func:`torch.from_numpy`; ``pin_memory`` pins each batch
    (useful before a non-blocking copy to CUDA). ``max_batches`` caps the epoch.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        pin_memory: bool = False,
        max_batches: int | None = None,
        stream: str = "shuffle",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"arrays differ in length: {sizes}")
        self.arrays = dict(arrays)
        self.n = next(iter(sizes.values())) if sizes else 0
        self.batch_size = batch_size
        self.shuffle, self.seed, self.epoch, self.stream = shuffle, seed, epoch, stream
        self.drop_last, self.pin_memory = drop_last, pin_memory
        self.max_batches = max_batches

    def __len__(self) -> int:
        n = self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def order(self) -> np.ndarray | None:
        """The row permutation of this epoch (None when not shuffling)."""
        if not self.shuffle:
            return None
        gen = shuffle_generator(self.seed, self.epoch, self.stream)
        return torch.randperm(self.n, generator=gen).numpy()

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        perm = self.order()
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.n)
            rows = slice(lo, hi) if perm is None else perm[lo:hi]
            batch = {
                k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in self.arrays.items()
            }
            if self.pin_memory:
                batch = {k: t.pin_memory() for k, t in batch.items()}
            yield batch


__all__ = ["BatchIterator", "eval_samples", "shuffle_generator", "training_samples", "user_seen"]


def full_rank_user_subset(n_users: int, limit: int | None) -> np.ndarray | None:
    """Users scored by full ranking: all (None) or a fixed, sorted random subset of ``limit``.

    The subset depends only on ``n_users`` and ``limit`` (not on a run's seed), so every
    model of a dataset is ranked on the same users.
    """
    if limit is None or limit >= n_users:
        return None
    return np.sort(rng(0, "full-rank-users").choice(n_users, size=limit, replace=False))


def subset_rows(samples: dict[str, np.ndarray], rows: np.ndarray | None) -> dict[str, np.ndarray]:
    """The same sample dict restricted to ``rows`` (all rows when None)."""
    return samples if rows is None else {k: v[rows] for k, v in samples.items()}
