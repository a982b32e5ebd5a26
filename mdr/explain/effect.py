"""How much each latent traversal changes the decoded factors: "the colour dimensions
control colour" MEASURED, not eyeballed.

A probe (:mod:`mdr.explain.probe`), trained on images with known factors, reads each
decoded traversal image (:mod:`mdr.explain.traversal`); a dimension controls a factor
when the probe's predicted class for that factor changes along its traversal. The
result (:func:`traversal_effect`) is a (slot traversed x factor) matrix of

- ``flip``: the fraction of traversal steps (after the first) at which the predicted
  class differs from the predicted class at the first step;
- ``tv``: the total-variation distance between the predicted distribution at each step
  and at the first step (a softer version of the same);

averaged over steps, dimensions of the slot and items. How far to trust the probe on
DECODED images is reported beside it (``recon_accuracy``: the probe's accuracy on the
items' reconstructions, against the majority-class rate ``recon_baseline``), together
with ``pixel_change`` (mean absolute pixel change along a traversal), which tells "the
decoder ignores this slot" (no pixel change) apart from "the probe cannot read the
decoded images" (pixel change, but low reconstruction accuracy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mdr.explain.probe import Probe, accuracy
from mdr.explain.traversal import (
    DEFAULT_QUANTILES,
    Decoder,
    decode_batched,
    traversal_codes,
    traversal_values,
)


@dataclass(frozen=True)
class TraversalEffect:
    """How much traversing each slot changes each factor of the decoded image."""

    slots: tuple[str, ...]  # rows: the slot traversed
    factors: tuple[str, ...]  # columns: the factor read by the probe
    flip: np.ndarray  # (n_slots, n_factors): fraction of steps whose predicted class changed
    tv: np.ndarray  # (n_slots, n_factors): mean total variation from the first step
    pixel_change: np.ndarray  # (n_slots,): mean |pixel change| from the first step
    recon_accuracy: dict[str, float]  # probe accuracy on the items' reconstructions
    recon_baseline: dict[str, float]  # majority-class rate of the same items
    probe_accuracy: dict[str, float] = field(default_factory=dict)  # on held-out real images
    n_items: int = 0
    n_steps: int = 0

    def rows(self) -> list[dict[str, Any]]:
        """One dict per slot traversed: ``<factor>_flip``, ``<factor>_tv``, pixel_change."""
        out = []
        for i, s in enumerate(self.slots):
            row: dict[str, Any] = {"slot": s}
            for j, f in enumerate(self.factors):
                row[f"{f}_flip"] = float(self.flip[i, j])
                row[f"{f}_tv"] = float(self.tv[i, j])
            row["pixel_change"] = float(self.pixel_change[i])
            out.append(row)
        return out


def traversal_effect(
    decode: Decoder,
    codes: Tensor,
    items: Sequence[int],
    slots: Mapping[str, Sequence[int]],
    probe: Probe,
    labels: Mapping[str, np.ndarray | Tensor] | None = None,
    n_steps: int = 10,
    span: float | tuple[float, float] | None = None,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
    batch_size: int = 1024,
) -> TraversalEffect:
    """The (slot traversed x factor changed) matrix, averaged over ``items`` and each slot's
    dimensions (module docstring).

    ``codes`` (n, d): every item's code; the traversal ranges are their ``quantiles``
    unless ``span`` is given. ``slots``: slot name -> columns of the code. ``probe``: any
    :class:`~mdr.explain.probe.Probe` (e.g. :func:`~mdr.explain.probe.fit_probe` on the
    real images); its ``factors`` are the matrix's columns. ``labels``: factor ->
    ground-truth class (n,) (-1 unknown), for the probe's accuracy on the items'
    reconstructions.
    """
    if codes.dim() != 2:
        raise ValueError(f"codes must be (n, d), got shape {tuple(codes.shape)}")
    idx = [int(i) for i in items]
    if not idx:
        raise ValueError("items: need at least one item")
    if any(not 0 <= i < codes.shape[0] for i in idx):
        raise ValueError(f"items out of range for {codes.shape[0]} codes")
    factors = tuple(probe.factors)
    reference = None if span is not None else codes
    flip = np.zeros((len(slots), len(factors)))
    tv = np.zeros_like(flip)
    pixel = np.zeros(len(slots))
    for i, cols in enumerate(slots.values()):
        values = traversal_values(cols, n_steps, span, reference, quantiles)  # (k, n_steps)
        stack = torch.stack([traversal_codes(codes[j], cols, values) for j in idx])
        m, k, n, d = stack.shape  # (items, dims, steps, d)
        images = decode_batched(decode, stack.view(-1, d), batch_size)  # (m*k*n, 3, S, S)
        pixel[i] = _pixel_change(images.reshape(m * k, n, -1))
        probs = probe.predict_proba(images)
        for j, f in enumerate(factors):
            p = probs[f].reshape(m * k, n, -1)  # (traversals, steps, classes)
            flip[i, j], tv[i, j] = _flip_rate(p), _total_variation(p)
    recon_acc, baseline = _recon_accuracy(decode, codes[idx], probe, labels, idx, batch_size)
    return TraversalEffect(
        slots=tuple(slots),
        factors=factors,
        flip=flip,
        tv=tv,
        pixel_change=pixel,
        recon_accuracy=recon_acc,
        recon_baseline=baseline,
        probe_accuracy=dict(probe.holdout_accuracy),
        n_items=len(idx),
        n_steps=n_steps,
    )


def _flip_rate(p: np.ndarray) -> float:
    """p (T, n_steps, K): mean over traversals and steps 1.. of [argmax p_k != argmax p_0]."""
    pred = p.argmax(-1)  # (T, n_steps)
    return float((pred[:, 1:] != pred[:, :1]).mean())


def _total_variation(p: np.ndarray) -> float:
    """p (T, n_steps, K): mean over traversals and steps 1.. of 0.5 |p_k - p_0|_1."""
    return float(0.5 * np.abs(p[:, 1:] - p[:, :1]).sum(-1).mean())


def _pixel_change(x: Tensor) -> float:
    """x (T, n_steps, P): mean over traversals, steps 1.. and pixels of |x_k - x_0|."""
    return float((x[:, 1:] - x[:, :1]).abs().mean())


def _recon_accuracy(
    decode: Decoder,
    codes: Tensor,
    probe: Probe,
    labels: Mapping[str, np.ndarray | Tensor] | None,
    idx: list[int],
    batch_size: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Probe accuracy on the decoded (not traversed) items, and the majority-class rate."""
    nan = float("nan")
    if not labels:
        return dict.fromkeys(probe.factors, nan), dict.fromkeys(probe.factors, nan)
    probs = probe.predict_proba(decode_batched(decode, codes, batch_size))
    acc, base = {}, {}
    for f in probe.factors:
        if f not in labels:
            acc[f] = base[f] = nan
            continue
        y = np.asarray(labels[f])[idx]
        acc[f] = accuracy(probs[f], y)
        known = y[y >= 0]
        base[f] = float(np.bincount(known).max() / len(known)) if len(known) else nan
    return acc, base


def describe_effect(effect: TraversalEffect) -> str:
    """A few sentences that read the effect matrix for a person."""
    parts = []
    for i, s in enumerate(effect.slots):
        changes = ", ".join(
            f"the {f} at {100 * effect.flip[i, j]:.0f} % of steps"
            for j, f in enumerate(effect.factors)
        )
        parts.append(
            f"Traversing the {s} slot changes {changes} "
            f"(mean pixel change {effect.pixel_change[i]:.3f})."
        )
    trust = ", ".join(
        f"{f} {_pct(effect.recon_accuracy.get(f))} (majority class "
        f"{_pct(effect.recon_baseline.get(f))}, real images {_pct(effect.probe_accuracy.get(f))})"
        for f in effect.factors
    )
    parts.append(f"Probe accuracy on the reconstructions: {trust}.")
    if all(v < 1e-3 for v in effect.pixel_change):
        parts.append(
            "The decoded images do not change along any traversal: the decoder "
            "ignores these dimensions, so the matrix cannot show control."
        )
    elif any(_near_baseline(effect, f) for f in effect.factors):
        parts.append(
            "Where the reconstruction accuracy is near the majority-class rate the "
            "probe cannot read that factor off the decoded images; treat its "
            "column as uninformative."
        )
    return " ".join(parts)


def _near_baseline(effect: TraversalEffect, f: str) -> bool:
    acc, base = effect.recon_accuracy.get(f), effect.recon_baseline.get(f)
    if acc is None or base is None or np.isnan(acc) or np.isnan(base):
        return False
    return acc - base < 0.1 * (1.0 - base)  # under 10 % of the way from majority to perfect


def _pct(v: float | None) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{100 * v:.0f} %"


__all__ = ["TraversalEffect", "describe_effect", "traversal_effect"]
