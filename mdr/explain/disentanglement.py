"""Disentanglement scores of item codes against ground-truth factors: DCI, MIG, a slot probe.

The paper's evidence for disentanglement is qualitative (Figures 4-5). On data
with known factors (the synthetic shop's ``factors.npz``, or labelled product
photos) it can be measured. Following disentanglement_lib's conventions, each
metric is one public function that checks its input and wraps a pure NumPy
core (``_compute_*``), and every function returns plain JSON-able values
(floats, lists, strings).

Codes are real ``(n, d)`` arrays (e.g. MDR's deterministic item representation
r); factors are non-negative integer class indices ``(n, k)`` (or a dict of
named ``(n,)`` arrays for :func:`slot_probe` / :func:`score_codes`).

DCI (Eastwood & Williams 2018, "A framework for the quantitative evaluation of
disentangled representations"), as in disentanglement_lib's ``dci.py``:

- an importance matrix R (d codes x k factors): one classifier per factor
  predicts it from all codes (fit on a seeded ``train_frac`` split of the
  items); R[i, j] = how much code i matters to the classifier of factor j;
- disentanglement = sum_i rho_i (1 - H_k(P_i.)), P_ij = R_ij / sum_j R_ij,
  rho_i = sum_j R_ij / sum R (per-code entropy in base k, weighted by the
  code's share of importance);
- completeness = sum_j rho_j (1 - H_d(P~_.j)), P~_ij = R_ij / sum_i R_ij,
  rho_j = sum_i R_ij / sum R;
- informativeness_train/test = the classifiers' mean accuracy over factors on
  the train/test items.

The importance comes from one of two classifiers (``importance=``):

- ``"l1_logistic"`` (default, fast): multinomial logistic regression with an L1
  penalty (sklearn, saga, C=0.1, tol 1e-3, seeded) on codes standardised with
  the training items' mean and std; R[i, j] = mean over classes of |coef_ij|.
  The L1 penalty (the logistic analogue of the Lasso that Eastwood & Williams
  used) keeps codes that do not help a factor at exactly zero importance, so
  finite-sample noise does not smear R (an L2 fit gave an identity code
  D = 0.94 at 2,000 items, L1 0.99). A linear probe: it reads ordinal codes
  (one dimension per factor) and one-hot or clustered codes that are linearly
  separable, not arbitrary non-linear encodings. A few seconds for 20,000
  items x 64 codes x 5 factors on one core.
- ``"gbt"``: disentanglement_lib's choice, sklearn's GradientBoostingClassifier
  (100 trees of depth 3 per class) with its impurity-based feature_importances_.
  Non-linear but slow: minutes per factor at 20,000 items x 64 codes.

MIG (Chen et al. 2018), as in disentanglement_lib's ``mig.py``: each code
dimension is discretised into ``n_bins`` equal-width bins (histogram over its
range), I(code_i; factor_j) is the discrete mutual information (nats), and
MIG = mean_j (I_(1)j - I_(2)j) / H(factor_j), the gap between the two most
informative codes of each factor, normalised by the factor's entropy.

Slot probe (this project's): for each named slot of r that stands for a factor
(``slot_factor``), the held-out accuracy of a probe (multinomial logistic
regression, L2, C=1, on standardised columns) that predicts that factor from
the slot's own columns, against the best accuracy any OTHER single slot (black
box included) reaches on the same factor, and the chance rate (the training
items' majority class, scored on the test items).
A slot that disentangles its factor wins by a margin.

Known answers (tests/test_disentanglement.py): a code equal to the factors
(one dimension per factor) scores DCI disentanglement, completeness and MIG
near 1; a random code scores them near 0; the same seed gives the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mdr.seeding import rng

IMPORTANCES = ("l1_logistic", "gbt")
_SPLIT_STREAM = "disentanglement-split"

# --------------------------------------------------------------------------- input checks


def _check_codes(codes: Any) -> np.ndarray:
    """``codes`` as float64 (n, d); ValueError for a wrong shape or non-finite values."""
    x = np.asarray(codes)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"codes must be a non-empty 2-D array (n items, d dims), got shape {x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"codes must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(
            f"codes hold {int(bad.sum())} NaN/inf value(s), first at item "
            f"{int(rows[0])}, dim {int(cols[0])}"
        )
    return x


def _check_factor(y: Any, name: str, n: int) -> np.ndarray:
    """One factor as int64 (n,); ValueError unless non-negative integers, not constant."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"factor {name!r} must be 1-D (n items,), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"factor {name!r} has {y.shape[0]} items, codes have {n}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"factor {name!r} must hold integer class indices, got dtype {y.dtype}")
    if (y < 0).any():
        raise ValueError(
            f"factor {name!r} has negative values (unlabelled items?): "
            "drop those items before scoring"
        )
    if np.unique(y).size < 2:
        raise ValueError(f"factor {name!r} is constant: there is nothing to predict or disentangle")
    return y.astype(np.int64)


def _check_factor_matrix(factors: Any, n: int, names: Sequence[str] | None = None) -> np.ndarray:
    """Factors as int64 (n, k), each column checked by :func:`_check_factor`."""
    y = np.asarray(factors)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] == 0:
        raise ValueError(f"factors must be a 2-D array (n items, k factors), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"factors have {y.shape[0]} items, codes have {n}")
    names = list(names) if names is not None else [str(j) for j in range(y.shape[1])]
    return np.stack([_check_factor(y[:, j], names[j], n) for j in range(y.shape[1])], axis=1)


def _split(n: int, seed: int, train_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test item indices (the same for every metric of one seed)."""
    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"train_frac must lie in (0, 1), got {train_frac}")
    n_train = round(n * train_frac)
    if n_train < 2 or n - n_train < 1:
        raise ValueError(f"{n} items are too few for a train/test split at {train_frac}")
    perm = rng(seed, _SPLIT_STREAM).permutation(n)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale with the training items' mean and std (constant columns: std 1)."""
    mu = x_train.mean(axis=0)
    sd = x_train.std(axis=0)
    sd[sd == 0] = 1.0
    return (x_train - mu) / sd, (x_test - mu) / sd


# --------------------------------------------------------------------------- probes


class _Fit:
    """A fitted classifier of one factor: accuracies and per-code importance."""

    def __init__(
        self, acc_train: float, acc_test: float, importance: np.ndarray, converged: bool
    ) -> None:
        self.acc_train = acc_train
        self.acc_test = acc_test
        self.importance = importance  # (d,)
        self.converged = converged


def _majority(y_train: np.ndarray) -> int:
    values, counts = np.unique(y_train, return_counts=True)
    return int(values[np.argmax(counts)])  # ties: the smallest class index


def _fit_logistic(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    l1: bool = False,
    seed: int = 0,
) -> _Fit:
    """Multinomial logistic regression on standardised codes; importance mean |coef|.

    ``l1``: the L1-penalised DCI importance fit (saga, C=0.1); otherwise the plain L2
    probe (newton-cg, C=1) of the slot probe.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    d = x_train.shape[1]
    if np.unique(y_train).size < 2:  # a rare factor whose training items share one value
        c = _majority(y_train)
        return _Fit(1.0, float(np.mean(y_test == c)), np.zeros(d), True)
    xs_train, xs_test = _standardise(x_train, x_test)
    if l1:
        clf = LogisticRegression(
            C=0.1, l1_ratio=1.0, solver="saga", tol=1e-3, max_iter=500, random_state=seed
        )
    else:
        clf = LogisticRegression(C=1.0, solver="newton-cg", max_iter=200)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(xs_train, y_train)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    importance = np.abs(clf.coef_).mean(axis=0)  # (d,), coef_ (classes or 1, d)
    return _Fit(
        float(clf.score(xs_train, y_train)),
        float(clf.score(xs_test, y_test)),
        importance,
        converged,
    )


def _fit_gbt(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int
) -> _Fit:
    """disentanglement_lib's importance: gradient-boosted trees' feature_importances_."""
    from sklearn.ensemble import GradientBoostingClassifier

    d = x_train.shape[1]
    if np.unique(y_train).size < 2:
        c = _majority(y_train)
        return _Fit(1.0, float(np.mean(y_test == c)), np.zeros(d), True)
    clf = GradientBoostingClassifier(random_state=seed)
    clf.fit(x_train, y_train)
    return _Fit(
        float(clf.score(x_train, y_train)),
        float(clf.score(x_test, y_test)),
        np.abs(clf.feature_importances_),
        True,
    )


def _fit(
    method: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seed: int,
) -> _Fit:
    if method == "l1_logistic":
        return _fit_logistic(x_train, y_train, x_test, y_test, l1=True, seed=seed)
    return _fit_gbt(x_train, y_train, x_test, y_test, seed)


# --------------------------------------------------------------------------- DCI


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Shannon entropy in ``base`` of the non-negative weights ``p`` normalised along
    ``axis`` (an all-zero line counts as uniform)."""
    p = np.asarray(p, dtype=np.float64)
    total = p.sum(axis=axis, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[axis])
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=axis) / np.log(base)


def _compute_dci(importance: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness of an importance matrix R (d codes, k factors)."""
    r = np.abs(np.asarray(importance, dtype=np.float64))
    d, k = r.shape
    if r.sum() == 0:  # nothing predicts anything: disentanglement_lib's uniform fallback
        r = np.ones_like(r)
    per_code = 1.0 - _entropy(r, base=k, axis=1)  # (d,)
    code_weight = r.sum(axis=1) / r.sum()  # rho_i
    per_factor = 1.0 - _entropy(r, base=d, axis=0)  # (k,)
    factor_weight = r.sum(axis=0) / r.sum()  # rho_j
    return float(per_code @ code_weight), float(per_factor @ factor_weight)


def _importance_matrix(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, method: str, seed: int
) -> tuple[np.ndarray, list[_Fit]]:
    """R (d, k) and the per-factor fits."""
    fits = [
        _fit(method, x[train], y[train, j], x[test], y[test, j], seed) for j in range(y.shape[1])
    ]
    return np.stack([f.importance for f in fits], axis=1), fits


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    seed: int = 0,
    train_frac: float = 0.8,
    importance: str = "l1_logistic",
) -> dict[str, Any]:
    """DCI disentanglement, completeness and informativeness of ``codes`` (n, d) against
    integer ``factors`` (n, k).

    Returns ``disentanglement``, ``completeness`` (in [0, 1]), ``informativeness_train``
    and ``informativeness_test`` (mean accuracy over factors), ``accuracy_train`` /
    ``accuracy_test`` (per factor), ``importance`` (R as a d x k nested list),
    ``importance_method`` and ``not_converged`` (factors whose logistic fit hit its
    iteration cap; their numbers are still reported). Needs d >= 2 and k >= 2 (the entropies are in base d and k).
    ValueError on bad input.
    """
    if importance not in IMPORTANCES:
        raise ValueError(f"importance must be one of {IMPORTANCES}, got {importance!r}")
    x = _check_codes(codes)
    y = _check_factor_matrix(factors, x.shape[0])
    if x.shape[1] < 2 or y.shape[1] < 2:
        raise ValueError(
            f"DCI needs at least 2 code dims and 2 factors, got d={x.shape[1]}, k={y.shape[1]}"
        )
    train, test = _split(x.shape[0], seed, train_frac)
    r, fits = _importance_matrix(x, y, train, test, importance, seed)
    dis, comp = _compute_dci(r)
    acc_train = [f.acc_train for f in fits]
    acc_test = [f.acc_test for f in fits]
    return {
        "disentanglement": dis,
        "completeness": comp,
        "informativeness_train": float(np.mean(acc_train)),
        "informativeness_test": float(np.mean(acc_test)),
        "accuracy_train": acc_train,
        "accuracy_test": acc_test,
        "importance": r.tolist(),
        "importance_method": importance,
        "not_converged": sum(not f.converged for f in fits),
    }


# --------------------------------------------------------------------------- MIG


def _discretise(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Each column into ``n_bins`` equal-width bins over its range: int64 (n, d) in
    1..n_bins (disentanglement_lib's histogram discretisation)."""
    out = np.empty(x.shape, dtype=np.int64)
    for i in range(x.shape[1]):
        edges = np.histogram_bin_edges(x[:, i], bins=n_bins)  # (n_bins + 1,)
        out[:, i] = np.digitize(x[:, i], edges[:-1])
    return out


def _mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Discrete mutual information I(a; b) in nats of two non-negative int arrays (n,)."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / a.shape[0]
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    outer = np.outer(pa, pb)
    return float(np.sum(joint[nz] * np.log(joint[nz] / outer[nz])))


def _compute_mig(codes_discrete: np.ndarray, factors: np.ndarray) -> dict[str, Any]:
    """MIG of discretised codes (n, d) against factors (n, k)."""
    d, k = codes_discrete.shape[1], factors.shape[1]
    m = np.array(
        [[_mutual_info(codes_discrete[:, i], factors[:, j]) for j in range(k)] for i in range(d)]
    )  # (d, k) nats
    h = np.array([_mutual_info(factors[:, j], factors[:, j]) for j in range(k)])  # (k,) H(v_j)
    top = np.sort(m, axis=0)[::-1]  # (d, k), descending per factor
    gap = (top[0] - top[1]) / h  # (k,)
    return {
        "mig": float(gap.mean()),
        "mig_per_factor": gap.tolist(),
        "mutual_info": m.tolist(),
        "entropy": h.tolist(),
    }


def mig(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> dict[str, Any]:
    """Mutual information gap of ``codes`` (n, d) against integer ``factors`` (n, k).

    Returns ``mig`` (in [0, 1]), ``mig_per_factor``, ``mutual_info`` (d x k nested
    list, nats), ``entropy`` (per factor, nats) and ``n_bins``. Needs d >= 2.
    ValueError on bad input.
    """
    if not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    x = _check_codes(codes)
    y = _check_factor_matrix(factors, x.shape[0])
    if x.shape[1] < 2:
        raise ValueError(f"MIG needs at least 2 code dims (a gap between two), got {x.shape[1]}")
    return {**_compute_mig(_discretise(x, int(n_bins)), y), "n_bins": int(n_bins)}


# --------------------------------------------------------------------------- slot probe


def _check_slots(
    d: int,
    factors: Mapping[str, np.ndarray],
    slot_columns: Mapping[str, Sequence[int]],
    slot_factor: Mapping[str, str],
) -> dict[str, np.ndarray]:
    """Slot name -> int64 column indices, checked against d and the factor names."""
    if not slot_columns:
        raise ValueError("slot_columns is empty")
    cols: dict[str, np.ndarray] = {}
    for slot, c in slot_columns.items():
        arr = np.asarray(list(c))
        if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"slot {slot!r}: columns must be a non-empty list of ints, got {c!r}")
        if arr.min() < 0 or arr.max() >= d:
            raise ValueError(f"slot {slot!r}: columns {arr.tolist()} outside the code's {d} dims")
        cols[slot] = arr.astype(np.int64)
    for slot, factor in slot_factor.items():
        if slot not in cols:
            raise ValueError(
                f"slot_factor names slot {slot!r}, which slot_columns lacks (slots: {sorted(cols)})"
            )
        if factor not in factors:
            raise ValueError(
                f"slot {slot!r} stands for factor {factor!r}, which factors lacks "
                f"(factors: {sorted(factors)})"
            )
    return cols


def _compute_slot_probe(
    x: np.ndarray,
    factors: Mapping[str, np.ndarray],
    cols: Mapping[str, np.ndarray],
    slot_factor: Mapping[str, str],
    train: np.ndarray,
    test: np.ndarray,
) -> list[dict[str, Any]]:
    """One row per slot with a factor (in ``cols`` order)."""
    acc: dict[tuple[str, str], float] = {}

    def accuracy(slot: str, factor: str) -> float:
        if (slot, factor) not in acc:
            xs, y = x[:, cols[slot]], factors[factor]
            acc[slot, factor] = _fit_logistic(xs[train], y[train], xs[test], y[test]).acc_test
        return acc[slot, factor]

    rows = []
    for slot in cols:
        if slot not in slot_factor:
            continue
        factor = slot_factor[slot]
        y = factors[factor]
        own = accuracy(slot, factor)
        others = {s: accuracy(s, factor) for s in cols if s != slot}
        best = max(others, key=lambda s: others[s]) if others else None
        best_acc = others[best] if best is not None else None
        rows.append(
            {
                "slot": slot,
                "factor": factor,
                "accuracy": own,
                "best_other_slot": best,
                "best_other_accuracy": best_acc,
                "chance": float(np.mean(y[test] == _majority(y[train]))),
                "margin": own - best_acc if best_acc is not None else None,
                "wins": bool(best_acc is None or own > best_acc),
            }
        )
    return rows


def slot_probe(
    codes: np.ndarray,
    factors: Mapping[str, np.ndarray],
    slot_columns: Mapping[str, Sequence[int]],
    slot_factor: Mapping[str, str],
    seed: int = 0,
    train_frac: float = 0.8,
) -> list[dict[str, Any]]:
    """For each slot of ``slot_columns`` that ``slot_factor`` maps to a factor: how well
    its own columns predict that factor, against every other single slot.

    ``codes`` (n, d); ``factors`` name -> int (n,); ``slot_columns`` slot name -> columns
    of ``codes`` (e.g. ``model.fusion.r_columns()``, black box included as a competitor);
    ``slot_factor`` slot name -> factor name (slots without a factor are only competitors).
    Probe: multinomial L2 logistic regression (C=1, newton-cg) on the standardised
    columns, fit on a seeded ``train_frac`` split, scored on the rest. One dict per scored slot, in ``slot_columns`` order:
    ``slot``, ``factor``, ``accuracy`` (own slot, held out), ``best_other_slot``,
    ``best_other_accuracy``, ``margin`` (= accuracy - best_other_accuracy; these three are
    None when there is no other slot), ``wins`` (own > best other) and ``chance`` (the
    training majority class's rate on the test items). ValueError on bad input.
    """
    x = _check_codes(codes)
    ys = {name: _check_factor(y, name, x.shape[0]) for name, y in factors.items()}
    cols = _check_slots(x.shape[1], ys, slot_columns, slot_factor)
    train, test = _split(x.shape[0], seed, train_frac)
    return _compute_slot_probe(x, ys, cols, slot_factor, train, test)


def input_probe(
    inputs: Mapping[str, np.ndarray],
    factors: Mapping[str, np.ndarray],
    seed: int = 0,
    train_frac: float = 0.8,
) -> list[dict[str, Any]]:
    """The ceiling of the slot probe: how well each factor can be read from the items' raw
    inputs (``inputs`` name -> (n, d) features, e.g. pixels, TF-IDF of the item text), by
    the same L2 logistic probe on the same seeded split. A slot at chance on a factor
    whose input probe is also at chance lost nothing: its input carried nothing. One
    dict per (input, factor): ``input``, ``factor``, ``accuracy`` (held out), ``chance``."""
    rows = []
    for name, x in inputs.items():
        xs = _check_codes(x)
        ys = {f: _check_factor(y, f, xs.shape[0]) for f, y in factors.items()}
        train, test = _split(xs.shape[0], seed, train_frac)
        for f, y in ys.items():
            fit = _fit_logistic(xs[train], y[train], xs[test], y[test])
            rows.append(
                {
                    "input": name,
                    "factor": f,
                    "accuracy": fit.acc_test,
                    "chance": float(np.mean(y[test] == _majority(y[train]))),
                }
            )
    return rows


# --------------------------------------------------------------------------- all three


def score_codes(
    codes: np.ndarray,
    factors: Mapping[str, np.ndarray],
    slot_columns: Mapping[str, Sequence[int]],
    slot_factor: Mapping[str, str],
    seed: int = 0,
    *,
    train_frac: float = 0.8,
    importance: str = "l1_logistic",
    n_bins: int = 20,
) -> dict[str, Any]:
    """DCI, MIG and the slot probe of ``codes`` (n, d) against named ``factors``
    (name -> non-negative int (n,), at least 2 factors, none constant).

    Returns ``{"factors": [names, in dict order], "n_items": n, "dims": d,
    "dci": dci(...), "mig": mig(...), "slot_probe": slot_probe(...)}``; the per-factor
    lists inside ``dci`` and ``mig`` follow ``factors``' order. All three use the same
    seeded split. ValueError on bad input.
    """
    x = _check_codes(codes)
    names = list(factors)
    if not names:
        raise ValueError("factors is empty")
    ys = {name: _check_factor(factors[name], name, x.shape[0]) for name in names}
    y = np.stack([ys[name] for name in names], axis=1)  # (n, k)
    return {
        "factors": names,
        "n_items": int(x.shape[0]),
        "dims": int(x.shape[1]),
        "dci": dci(x, y, seed=seed, train_frac=train_frac, importance=importance),
        "mig": mig(x, y, n_bins=n_bins),
        "slot_probe": slot_probe(
            x, ys, slot_columns, slot_factor, seed=seed, train_frac=train_frac
        ),
    }


__all__ = ["IMPORTANCES", "dci", "input_probe", "mig", "score_codes", "slot_probe"]
