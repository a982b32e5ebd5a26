"""The shop's people: users and their tastes, the sequential choices, 5-core repair, ratings, days.

How users choose (taste, shopping intent, style drift, popularity) is documented in
:mod:`mdr.data.shop`; the constants below are the ones named there.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

import numpy as np

from mdr.data.shop.factors import _MIN_CORE, Catalogue, ShopSize, _Items, _random_ids
from mdr.data.shop.words import FIRST_NAMES, LAST_NAMES
from mdr.seeding import rng

# How users choose (see :mod:`mdr.data.shop`).
_PREF_CONCENTRATION = {
    "colour": 0.35,
    "shape": 0.5,
    "size": 0.25,
    "material": 0.5,
    "brand": 0.6,
    "pattern": 0.8,
    "occasion": 0.5,
}
_PREF_WEIGHT = {
    "colour": 1.0,
    "shape": 1.2,
    "size": 0.8,
    "material": 0.6,
    "brand": 0.4,
    "pattern": 0.3,
    "occasion": 0.5,
}
_STYLE_WEIGHT = {"colour": 0.6, "material": 0.4, "brand": 0.5, "pattern": 0.3, "occasion": 0.4}
_STYLE_DECAY = (1.0, 0.5, 0.25)
_INTENT_BONUS = 1.5
_INTENT_FOLLOW = 0.6
_QUALITY_BONUS = 0.3
_N_POP, _N_INTENT = 48, 48


# --------------------------------------------------------------------------- users


@dataclass
class _Users:
    ids: list[str]
    names: list[str]
    lengths: np.ndarray  # int64 [U]
    log_theta: dict[str, np.ndarray]  # factor -> float [U, K_f]: log taste
    weight: dict[str, np.ndarray]  # factor -> float [U]: how much the factor matters
    leniency: np.ndarray  # float [U]: rating offset
    verbosity: np.ndarray  # float [U]: review length multiplier


def _integer_split(weights: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Non-negative integers proportional to ``weights``, each <= cap, summing to ``total``."""
    if total > cap * len(weights):
        raise ValueError(f"cannot split {total} into {len(weights)} parts of at most {cap}")
    out = np.zeros(len(weights), np.int64)
    free = np.ones(len(weights), bool)
    remaining = total
    while remaining > 0:
        w = np.where(free, weights, 0.0)
        share = w / w.sum() * remaining
        part = np.floor(share).astype(np.int64)
        short = remaining - part.sum()
        order = np.argsort(-(share - part), kind="stable")[:short]
        part[order] += 1
        part = np.minimum(part, cap - out)
        out += part
        remaining -= int(part.sum())
        free = out < cap
    return out


def _make_users(cfg: ShopSize, items: _Items, seed: int) -> _Users:
    gen = rng(seed, "synthetic", "users")
    n = cfg.n_users
    extra_total = cfg.n_behaviors - _MIN_CORE * n
    cap = min(cfg.max_history, cfg.n_items // 3) - _MIN_CORE
    extras = _integer_split(gen.lognormal(0.0, 1.0, n), extra_total, cap)
    log_theta, weight = {}, {}
    for name, conc in _PREF_CONCENTRATION.items():
        k = len(items.catalogue.by_name[name].values)
        base = np.bincount(items.values[name], minlength=k) + 1.0
        alpha = conc * k * base / base.sum()
        g = gen.gamma(np.broadcast_to(alpha, (n, k)))
        theta = g / g.sum(1, keepdims=True)
        theta = (theta + 0.01) / (1.0 + 0.01 * k)  # nobody rules a value out completely
        log_theta[name] = np.log(theta)
        weight[name] = _PREF_WEIGHT[name] * gen.gamma(3.0, 1.0 / 3.0, n)
    ids = _random_ids(gen, n, "A", 13)
    first = gen.integers(0, len(FIRST_NAMES), n)
    last = gen.integers(0, len(LAST_NAMES), n)
    style = gen.random(n)
    names = [
        "Amazon Customer"
        if s < 0.05
        else (
            f"{FIRST_NAMES[a]} {LAST_NAMES[b][0]}."
            if s < 0.35
            else f"{FIRST_NAMES[a]} {LAST_NAMES[b]}"
        )
        for a, b, s in zip(first, last, style)
    ]
    return _Users(
        ids=ids,
        names=names,
        lengths=_MIN_CORE + extras,
        log_theta=log_theta,
        weight=weight,
        leniency=gen.normal(0.0, 0.45, n),
        verbosity=gen.lognormal(0.0, 0.5, n),
    )


# --------------------------------------------------------------------------- choices


def _transition_matrix(catalogue: Catalogue) -> np.ndarray:
    """Shape -> next shopping intent: 35 % same type, 45 % complements, 20 % anything."""
    shapes = catalogue.by_name["shape"].values
    complements = catalogue.complements
    k = len(shapes)
    t = np.full((k, k), 0.20 / k)
    for i, s in enumerate(shapes):
        t[i, i] += 0.35
        for c in complements[s]:
            t[i, shapes.index(c)] += 0.45 / len(complements[s])
    return t / t.sum(1, keepdims=True)


def _categorical_rows(gen: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """One draw per row of a (N, K) probability matrix."""
    cum = np.cumsum(p, axis=1)
    u = gen.random(len(p))[:, None] * cum[:, -1:]
    return (u > cum).sum(1).clip(0, p.shape[1] - 1)


@dataclass
class _Sampler:
    """Popularity-weighted candidate draws, overall and within one product type."""

    cum_all: np.ndarray
    order: np.ndarray  # items sorted by shape
    cum_sorted: np.ndarray
    lo: np.ndarray  # [K_shape] cumulative mass before each shape
    hi: np.ndarray

    @classmethod
    def build(cls, exposure: np.ndarray, shape: np.ndarray, k: int) -> _Sampler:
        order = np.argsort(shape, kind="stable")
        cum_sorted = np.cumsum(exposure[order])
        edges = np.concatenate([[0.0], cum_sorted])
        ss = shape[order]
        lo = edges[np.searchsorted(ss, np.arange(k), "left")]
        hi = edges[np.searchsorted(ss, np.arange(k), "right")]
        return cls(np.cumsum(exposure), order, cum_sorted, lo, hi)

    def popular(self, gen: np.random.Generator, n: int, c: int) -> np.ndarray:
        u = gen.random((n, c)) * self.cum_all[-1]
        return np.searchsorted(self.cum_all, u, "right").clip(0, len(self.cum_all) - 1)

    def of_shape(self, gen: np.random.Generator, shape: np.ndarray, c: int) -> np.ndarray:
        lo, hi = self.lo[shape][:, None], self.hi[shape][:, None]
        u = lo + gen.random((len(shape), c)) * (hi - lo)
        idx = np.searchsorted(self.cum_sorted, u, "right").clip(0, len(self.order) - 1)
        return self.order[idx]


def _simulate(items: _Items, users: _Users, seed: int, progress: bool) -> tuple[np.ndarray, ...]:
    """Histories (U, Lmax) of item ids (-1 past each length) and the taste z-score of each pick."""
    from tqdm import tqdm

    gen = rng(seed, "synthetic", "choices")
    v = items.values
    n_users, lmax = len(users.lengths), int(users.lengths.max())
    k_shape = len(items.catalogue.by_name["shape"].values)
    sampler = _Sampler.build(items.exposure, v["shape"], k_shape)
    trans = _transition_matrix(items.catalogue)
    theta_shape = np.exp(users.log_theta["shape"])
    quality_bonus = _QUALITY_BONUS * (v["quality"] - 1.0)
    seq = np.full((n_users, lmax), -1, np.int64)
    match = np.zeros((n_users, lmax))
    for t in tqdm(range(lmax), desc="synth: choices", disable=not progress, leave=False):
        a = np.flatnonzero(users.lengths > t)  # active users
        if t == 0:
            intent = _categorical_rows(gen, theta_shape[a])
        else:
            p = (
                _INTENT_FOLLOW * trans[v["shape"][seq[a, t - 1]]]
                + (1 - _INTENT_FOLLOW) * theta_shape[a]
            )
            intent = _categorical_rows(gen, p)
        cand = np.concatenate(
            [sampler.popular(gen, len(a), _N_POP), sampler.of_shape(gen, intent, _N_INTENT)], axis=1
        )  # (A, C)
        taste = np.zeros(cand.shape)
        for f, lt in users.log_theta.items():
            taste += users.weight[f][a, None] * lt[a[:, None], v[f][cand]]
        score = taste + _INTENT_BONUS * (v["shape"][cand] == intent[:, None]) + quality_bonus[cand]
        for k, decay in enumerate(_STYLE_DECAY, 1):
            if t - k < 0:
                break
            prev = seq[a, t - k]
            for f, lam in _STYLE_WEIGHT.items():
                score += decay * lam * (v[f][cand] == v[f][prev][:, None])
        if t > 0:
            seen = (cand[:, :, None] == seq[a, None, :t]).any(-1)
            score[seen] = -np.inf
        pick = np.argmax(score + gen.gumbel(size=score.shape), axis=1)
        rows = np.arange(len(a))
        ok = np.isfinite(score[rows, pick])
        seq[a, t] = np.where(ok, cand[rows, pick], -1)
        mu, sd = taste.mean(1), taste.std(1) + 1e-9
        match[a, t] = (taste[rows, pick] - mu) / sd
    return seq, match


def _fill_and_repair(
    seq: np.ndarray, lengths: np.ndarray, items: _Items, seed: int
) -> tuple[np.ndarray, int]:
    """Fill rare empty picks, then top every item up to five buyers. Returns (seq, repairs)."""
    gen = rng(seed, "synthetic", "repair")
    n_items = len(items.asins)
    owned = [set(row[:n][row[:n] >= 0].tolist()) for row, n in zip(seq, lengths)]
    empty = (seq == -1) & (np.arange(seq.shape[1])[None, :] < lengths[:, None])
    for u, t in zip(*np.nonzero(empty)):
        for i in gen.permutation(n_items):
            if int(i) not in owned[u]:
                seq[u, t] = i
                owned[u].add(int(i))
                break
    count = np.bincount(seq[seq >= 0], minlength=n_items)
    shape = items.values["shape"]
    users_idx, steps = np.nonzero(seq >= 0)
    by_shape = {
        s: gen.permutation(np.flatnonzero(shape[seq[users_idx, steps]] == s))
        for s in range(int(shape.max()) + 1)
    }
    pointer = dict.fromkeys(by_shape, 0)
    repairs = 0
    for i in np.flatnonzero(count < _MIN_CORE):
        s = int(shape[i])
        for pool in (s, None):  # same product type first, then anything
            if count[i] >= _MIN_CORE:
                break
            cands = by_shape[s][pointer[s] :] if pool is not None else gen.permutation(len(steps))
            for j, b in enumerate(cands):
                u, t = users_idx[b], steps[b]
                old = seq[u, t]
                if count[old] > _MIN_CORE and int(i) not in owned[u]:
                    seq[u, t] = i
                    owned[u].discard(int(old))
                    owned[u].add(int(i))
                    count[old] -= 1
                    count[i] += 1
                    repairs += 1
                    if count[i] >= _MIN_CORE:
                        if pool is not None:
                            pointer[s] += j + 1
                        break
    return seq, repairs


def check_5core(user: np.ndarray, item: np.ndarray, k: int = _MIN_CORE) -> None:
    """Raise when some user or item has fewer than ``k`` behaviours or a pair repeats."""
    pairs = user.astype(np.int64) * (int(item.max()) + 1) + item
    if len(np.unique(pairs)) != len(pairs):
        raise RuntimeError("synthetic shop: a user bought the same item twice")
    for name, ids in (("user", user), ("item", item)):
        c = np.bincount(ids)
        if (c < k).any():
            raise RuntimeError(f"synthetic shop is not {k}-core: {int((c < k).sum())} {name}s")


# --------------------------------------------------------------------------- times, ratings

_DAY0 = _dt.date(2008, 1, 1)
_DAY1 = _dt.date(2014, 7, 23)  # the 2014 collection's last review day


def _review_days(lengths: np.ndarray, seed: int) -> list[np.ndarray]:
    """Per user, non-decreasing review days (days since 1970-01-01)."""
    gen = rng(seed, "synthetic", "times")
    d0 = (_DAY0 - _dt.date(1970, 1, 1)).days
    span = (_DAY1 - _DAY0).days
    growth = math.log(2) / 365.0  # review volume doubles every year
    u = gen.random(len(lengths))
    start = np.log1p(u * np.expm1(growth * span)) / growth  # exponential-growth inverse CDF
    out = []
    for n, s in zip(lengths, start):
        gaps = np.ceil(gen.lognormal(math.log(25.0), 1.2, n - 1))
        gaps[gen.random(n - 1) < 0.15] = 0.0
        total = gaps.sum()
        if total > span:
            gaps = np.floor(gaps * span / total)
            total = gaps.sum()
        s = min(s, span - total)
        out.append((d0 + np.floor(s) + np.concatenate([[0.0], np.cumsum(gaps)])).astype(np.int64))
    return out


def _ratings(quality: np.ndarray, match: np.ndarray, leniency: np.ndarray, seed: int) -> np.ndarray:
    """Stars 1-5: quality, taste match and leniency plus noise, cut at fixed thresholds."""
    gen = rng(seed, "synthetic", "ratings")
    latent = (
        4.0 + 0.45 * (quality - 1.0) + 0.35 * match + leniency + gen.normal(0.0, 0.8, len(quality))
    )
    return (1 + np.searchsorted(np.array([3.1, 3.55, 4.0, 4.55]), latent)).astype(np.int64)
