"""Ranking and classification metrics: pure NumPy functions over score arrays.

Conventions (docs/design.md, Protocol):

- :func:`auc` is the rank statistic (Mann-Whitney U / (n_pos * n_neg)); a tie
  between a positive and a negative counts one half.
- :func:`gauc` is DIN's group AUC: the per-user AUC weighted by the user's
  number of impressions, users whose impressions hold a single class skipped.
- List metrics (:func:`ndcg_at_k`, :func:`hit_at_k`) take an array
  ``(n_users, 1 + n_neg)`` whose column 0 holds the positive's score. A
  negative TIED with the positive ranks ABOVE it (pessimistic ties), so a
  constant scorer gets no credit.
- Full ranking: :func:`full_ranks` gives the 0-based rank of each user's
  positive among all eligible items (same pessimistic ties), and
  :func:`full_rank_metrics` turns ranks into NDCG@k / HR@k.

Every function validates its input and raises :class:`ValueError` naming the
problem (non-finite scores, labels other than 0/1, mismatched shapes).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "auc",
    "full_rank_metrics",
    "full_ranks",
    "gauc",
    "hit_at_k",
    "ndcg_at_k",
    "per_user_list_metrics",
    "rank_of_positive",
    "sampled_list_metrics",
]


# --------------------------------------------------------------------------- validation


def _as_scores(scores: ArrayLike, ndim: int, name: str = "scores") -> NDArray[np.float64]:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _as_labels(labels: ArrayLike, n: int) -> NDArray[np.bool_]:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"labels: expected shape ({n},), got {arr.shape}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        raise ValueError("labels: every label must be 0 or 1")
    return arr.astype(bool)


def _check_k(k: int) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


# --------------------------------------------------------------------------- AUC / GAUC


def _midranks_sorted(keys_equal_prev: NDArray[np.bool_]) -> NDArray[np.float64]:
    """1-based midranks of an already sorted sequence, given where a key equals its
    predecessor (``keys_equal_prev[i]`` compares element i with i-1; element 0 False)."""
    n = keys_equal_prev.shape[0]
    starts = np.flatnonzero(~keys_equal_prev)  # first index of each tie block
    ends = np.append(starts[1:], n) - 1  # last index of each tie block
    block_mid = (starts + ends) / 2.0 + 1.0  # mean 1-based rank of the block
    return np.repeat(block_mid, ends - starts + 1)


def _auc_sorted_groups(
    group: NDArray[np.int64], y: NDArray[np.bool_], s: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Per-group AUC via midranks. Returns (auc, n_pos, n_neg) per group id in
    ``np.unique(group)`` order; the AUC is NaN where a group has a single class."""
    order = np.lexsort((s, group))  # sort by group, then score
    g, ys, ss = group[order], y[order], s[order]
    n = g.shape[0]
    same_group = np.zeros(n, dtype=bool)
    same_group[1:] = g[1:] == g[:-1]
    tie = np.zeros(n, dtype=bool)
    tie[1:] = same_group[1:] & (ss[1:] == ss[:-1])
    global_mid = _midranks_sorted(tie)  # midrank in the whole sorted array
    group_start = np.flatnonzero(~same_group)  # first index of each group
    sizes = np.diff(np.append(group_start, n))
    offset = np.repeat(group_start, sizes).astype(np.float64)
    rank_in_group = global_mid - offset  # 1-based midrank within the group
    rank_pos_sum = np.add.reduceat(np.where(ys, rank_in_group, 0.0), group_start)
    n_pos = np.add.reduceat(ys.astype(np.int64), group_start)
    n_neg = sizes - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        u = rank_pos_sum - n_pos * (n_pos + 1) / 2.0  # Mann-Whitney U of the positives
        auc_g = u / (n_pos * n_neg)
    auc_g = np.where((n_pos > 0) & (n_neg > 0), auc_g, np.nan)
    return auc_g, n_pos, n_neg


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Global ROC AUC; ties between a positive and a negative count one half.

    Returns NaN when only one class is present. O(n log n).
    """
    s = _as_scores(scores, 1)
    y = _as_labels(labels, s.shape[0])
    if s.size == 0:
        return float("nan")
    a, _, _ = _auc_sorted_groups(np.zeros(s.shape[0], dtype=np.int64), y, s)
    return float(a[0])


def gauc(users: ArrayLike, labels: ArrayLike, scores: ArrayLike) -> float:
    """DIN's group AUC: sum_u n_u * AUC_u / sum_u n_u over users with both classes.

    ``n_u`` is the user's number of impressions (rows). Users whose rows hold a
    single class are skipped. Returns NaN when no user has both classes.
    Vectorised: one sort, no Python loop over users.
    """
    s = _as_scores(scores, 1)
    y = _as_labels(labels, s.shape[0])
    u = np.asarray(users)
    if u.ndim != 1 or u.shape[0] != s.shape[0]:
        raise ValueError(f"users: expected shape ({s.shape[0]},), got {u.shape}")
    if s.size == 0:
        return float("nan")
    _, group = np.unique(u, return_inverse=True)
    auc_g, n_pos, n_neg = _auc_sorted_groups(group.astype(np.int64), y, s)
    valid = ~np.isnan(auc_g)
    if not valid.any():
        return float("nan")
    weight = (n_pos + n_neg)[valid].astype(np.float64)
    return float(np.sum(weight * auc_g[valid]) / np.sum(weight))


# --------------------------------------------------------------------------- sampled lists


def rank_of_positive(scores: ArrayLike) -> NDArray[np.int64]:
    """0-based rank of column 0 among each row of ``scores`` (n_users, 1 + n_neg).

    A negative tied with the positive ranks above it: rank = #{j >= 1: s_j >= s_0}.
    """
    s = _as_scores(scores, 2)
    if s.shape[1] < 1:
        raise ValueError("scores: need at least one column (the positive)")
    return np.sum(s[:, 1:] >= s[:, :1], axis=1).astype(np.int64)


def _ndcg_from_ranks(ranks: NDArray[np.int64], k: int) -> NDArray[np.float64]:
    """Per-user NDCG@k with a single relevant item: 1/log2(rank + 2) if rank < k."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ndcg_at_k(scores: ArrayLike, k: int) -> float:
    """Mean NDCG@k over users; column 0 of ``scores`` is the single positive."""
    _check_k(k)
    ranks = rank_of_positive(scores)
    return float(np.mean(_ndcg_from_ranks(ranks, k))) if ranks.size else float("nan")


def hit_at_k(scores: ArrayLike, k: int) -> float:
    """Mean HR@k over users: share of users whose positive ranks in the top k."""
    _check_k(k)
    ranks = rank_of_positive(scores)
    return float(np.mean(ranks < k)) if ranks.size else float("nan")


def _list_user_auc(s: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each row's AUC: one user with a single positive (column 0), so
    AUC_u = (#neg below + 1/2 #neg tied) / n_neg."""
    pos = s[:, :1]
    return (np.sum(s[:, 1:] < pos, axis=1) + 0.5 * np.sum(s[:, 1:] == pos, axis=1)) / (
        s.shape[1] - 1
    )


def _list_gauc(s: NDArray[np.float64]) -> float:
    """GAUC of list-shaped scores in O(n): rows have equal impression counts, so the
    impression-weighted mean of the per-user AUCs is the plain mean.
    Equals :func:`gauc` on the flattened lists (tested)."""
    if s.shape[0] == 0 or s.shape[1] < 2:
        return float("nan")
    return float(np.mean(_list_user_auc(s)))


def per_user_list_metrics(scores: ArrayLike, k: int = 10) -> dict[str, NDArray[np.float64]]:
    """Each user's (row's) AUC, NDCG@k and HR@k of list-shaped scores (n_users, 1 + n_neg):
    the per-user values whose means are :func:`sampled_list_metrics`' ``gauc``,
    ``ndcg@k`` and ``hr@k`` (the units a paired bootstrap over users resamples)."""
    _check_k(k)
    s = _as_scores(scores, 2)
    if s.shape[1] < 2:
        raise ValueError("scores: need the positive and at least one negative per row")
    ranks = rank_of_positive(s)
    return {
        "auc": _list_user_auc(s),
        f"ndcg@{k}": _ndcg_from_ranks(ranks, k),
        f"hr@{k}": (ranks < k).astype(np.float64),
    }


def sampled_list_metrics(scores: ArrayLike, k: int = 10) -> dict[str, float]:
    """GAUC, AUC, NDCG@k and HR@k of list-shaped scores (n_users, 1 + n_neg).

    For GAUC each row is one user's impressions (label 1 in column 0, 0 elsewhere);
    AUC pools every row. NDCG/HR use pessimistic ties (see module docstring).
    """
    s = _as_scores(scores, 2)
    n_users, width = s.shape
    labels = np.zeros((n_users, width), dtype=np.int64)
    labels[:, 0] = 1
    flat_s, flat_y = s.reshape(-1), labels.reshape(-1)
    ranks = rank_of_positive(s)
    return {
        "gauc": _list_gauc(s),
        "auc": auc(flat_y, flat_s),
        f"ndcg@{k}": float(np.mean(_ndcg_from_ranks(ranks, k))) if n_users else float("nan"),
        f"hr@{k}": float(np.mean(ranks < k)) if n_users else float("nan"),
    }


# --------------------------------------------------------------------------- full ranking


def full_ranks(
    scores: ArrayLike, pos_items: ArrayLike, exclude: ArrayLike | None = None
) -> NDArray[np.int64]:
    """0-based rank of each user's positive among all eligible items.

    ``scores`` (n_users, n_items); ``pos_items`` (n_users,) the positive's column;
    ``exclude`` optional bool (n_users, n_items), True for ineligible items (e.g.
    the user's training history, the padding item 0). The positive itself is
    never counted against itself. Ties rank above the positive.
    """
    s = _as_scores(scores, 2)
    pos = np.asarray(pos_items, dtype=np.int64)
    if pos.shape != (s.shape[0],):
        raise ValueError(f"pos_items: expected shape ({s.shape[0]},), got {pos.shape}")
    if pos.size and (pos.min() < 0 or pos.max() >= s.shape[1]):
        raise ValueError("pos_items: index out of range of the score columns")
    rows = np.arange(s.shape[0])
    beats = s >= s[rows, pos][:, None]  # (n_users, n_items)
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool)
        if ex.shape != s.shape:
            raise ValueError(f"exclude: expected shape {s.shape}, got {ex.shape}")
        beats &= ~ex
    beats[rows, pos] = False
    return beats.sum(axis=1).astype(np.int64)


def full_rank_metrics(ranks: ArrayLike, k: int = 10) -> dict[str, float]:
    """NDCG@k and HR@k from 0-based ranks of the positive among all eligible items."""
    _check_k(k)
    r = np.asarray(ranks)
    if r.ndim != 1 or (r.size and (r.min() < 0 or not np.issubdtype(r.dtype, np.integer))):
        raise ValueError("ranks: expected a 1-d array of non-negative integers")
    if r.size == 0:
        return {f"ndcg@{k}": float("nan"), f"hr@{k}": float("nan")}
    return {
        f"ndcg@{k}": float(np.mean(_ndcg_from_ranks(r.astype(np.int64), k))),
        f"hr@{k}": float(np.mean(r < k)),
    }
