"""Latent traversals (the paper's Figure 4) and how much each one changes the decoded factors.

A traversal holds an item's code fixed, sweeps ONE dimension over a range, and decodes
each step: one row of ``n_steps`` images per dimension. Everything here is
model-agnostic: it takes a ``decode`` function (codes (m, d) -> images (m, 3, S, S) in
[0, 1]) and codes; :func:`image_decoder` gives that function for MDR (the image decoder
of Eq. 9 reading the visual columns of r) and for the image side trained alone.

"The colour dimensions control colour" is then MEASURED, not eyeballed
(:func:`traversal_effect`): a probe classifier, trained on the real images with their
ground-truth factors (:func:`fit_probe`), reads each decoded traversal image; a
dimension controls a factor when the probe's predicted class for that factor changes
along its traversal. The result is a (slot traversed x factor) matrix of

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mdr.io import atomic_path
from mdr.seeding import rng

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Decoder = Callable[[Tensor], Tensor]
DEFAULT_SPAN = 2.0  # +-2 prior standard deviations when no reference codes are given
DEFAULT_QUANTILES = (0.05, 0.95)


class NoImageDecoderError(ValueError):
    """The model has no image decoder to traverse (e.g. ABAE, plain DIN)."""


# --------------------------------------------------------------------------- traversals


def traversal_values(
    columns: Sequence[int],
    n_steps: int = 10,
    span: float | tuple[float, float] | None = None,
    reference: Tensor | None = None,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
) -> Tensor:
    """The values each dimension takes along its traversal: (len(columns), n_steps).

    With ``reference`` codes (n, d): from the ``quantiles`` (default 5 % and 95 %) of
    that dimension over the reference items to the other. Otherwise from ``-span`` to
    ``+span`` (a float, default 2) or from ``span[0]`` to ``span[1]`` (a pair).
    """
    if n_steps < 2:
        raise ValueError(f"n_steps must be at least 2, got {n_steps}")
    if span is not None and reference is not None:
        raise ValueError("give either span or reference codes, not both")
    cols = list(columns)
    if reference is not None:
        if reference.dim() != 2 or reference.shape[0] == 0:
            raise ValueError(f"reference codes must be (n, d) with n > 0, got {tuple(reference.shape)}")
        _check_columns(cols, reference.shape[1])
        lo_q, hi_q = quantiles
        if not 0.0 <= lo_q < hi_q <= 1.0:
            raise ValueError(f"quantiles must satisfy 0 <= lo < hi <= 1, got {quantiles}")
        ref = reference[:, cols].detach().float().cpu()  # (n, k)
        q = torch.quantile(ref, torch.tensor([lo_q, hi_q]), dim=0)  # (2, k)
        lo, hi = q[0], q[1]
    else:
        if span is None:
            span = DEFAULT_SPAN
        a, b = (-float(span), float(span)) if isinstance(span, int | float) else map(float, span)
        if not a < b:
            raise ValueError(f"traversal range must be increasing, got ({a}, {b})")
        lo, hi = torch.full((len(cols),), a), torch.full((len(cols),), b)
    steps = torch.linspace(0.0, 1.0, n_steps)  # (n_steps,)
    return lo[:, None] + (hi - lo)[:, None] * steps[None, :]  # (k, n_steps)


def _check_columns(columns: Sequence[int], d: int) -> None:
    if not columns:
        raise ValueError("columns: need at least one dimension to traverse")
    bad = [c for c in columns if not 0 <= int(c) < d]
    if bad:
        raise ValueError(f"columns {bad} out of range for codes of dimension {d}")


def traversal_codes(code: Tensor, columns: Sequence[int], values: Tensor) -> Tensor:
    """Copies of ``code`` (d,), one per (dimension, step), with that dimension set to
    ``values`` (k, n_steps): (k, n_steps, d)."""
    if code.dim() != 1:
        raise ValueError(f"code must be one item's code (d,), got shape {tuple(code.shape)}")
    cols = list(columns)
    _check_columns(cols, code.shape[0])
    k, n_steps = values.shape
    if k != len(cols):
        raise ValueError(f"values has {k} rows for {len(cols)} columns")
    out = code.detach().float().cpu().repeat(k, n_steps, 1)  # (k, n_steps, d)
    for row, c in enumerate(cols):
        out[row, :, c] = values[row]
    return out


def decode_batched(decode: Decoder, codes: Tensor, batch_size: int = 1024) -> Tensor:
    """``decode`` over (m, d) codes in chunks, without gradients: (m, 3, S, S) in [0, 1]."""
    outs = []
    with torch.no_grad():
        for lo in range(0, codes.shape[0], batch_size):
            x = decode(codes[lo : lo + batch_size])
            if x.dim() != 4 or x.shape[1] != 3:
                raise ValueError(f"decode must return (m, 3, S, S) images, got {tuple(x.shape)}")
            outs.append(x.detach().float().cpu().clamp(0.0, 1.0).contiguous())
    return torch.cat(outs)


def traverse(
    decode: Decoder,
    code: Tensor,
    columns: Sequence[int],
    n_steps: int = 10,
    span: float | tuple[float, float] | None = None,
    reference: Tensor | None = None,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
) -> Tensor:
    """Decode one item's traversals: (len(columns), n_steps, 3, S, S) in [0, 1].

    Row i varies ``code[columns[i]]`` over :func:`traversal_values` (the ``quantiles`` of
    that dimension over ``reference`` codes (n, d) when given, else +-``span``) and keeps
    every other dimension at the item's value: one row of the paper's Figure 4.
    """
    values = traversal_values(columns, n_steps, span, reference, quantiles)  # (k, n_steps)
    codes = traversal_codes(code, columns, values)  # (k, n_steps, d)
    k, n, d = codes.shape
    images = decode_batched(decode, codes.view(k * n, d))  # (k*n, 3, S, S)
    return images.view(k, n, *images.shape[1:])


# --------------------------------------------------------------------------- MDR runs


def image_decoder(model: nn.Module) -> Decoder:
    """codes (n, d) -> images (n, 3, S, S) in [0, 1] through the model's image decoder.

    The codes are what ``model.encode_items`` returns (MDR: r, whose visual columns the
    decoder of Eq. 9 reads; the image side alone: s). The decoder returns pixel units;
    the images are clamped to [0, 1] for display and probing. Raises
    :class:`NoImageDecoderError` for models without an image side (ABAE, DIN, the CTR
    baselines).
    """
    if getattr(model, "image", None) is None or not hasattr(model, "decode_images"):
        name = type(model).__name__
        raise NoImageDecoderError(
            f"{name} has no image decoder (model.use_image is false?): nothing to traverse"
        )
    device = model.image_columns.device

    @torch.no_grad()  # images to look at or to probe: a probe trained on them must not
    def decode(codes: Tensor) -> Tensor:  # backpropagate into the decoder
        return model.decode_images(codes.to(device)).clamp(0.0, 1.0)  # (n, 3, S, S), Eq. 9

    return decode


def item_codes(model: Any, batch_size: int = 2048) -> Tensor:
    """Every item's deterministic code (posterior mean): (I, d), CPU."""
    items = torch.arange(model.n_items, device=model.image_columns.device)
    with torch.no_grad():
        return model.encode_items(items, chunk=batch_size).float().cpu()


def slot_columns(model: Any, slots: Sequence[str]) -> dict[str, list[int]]:
    """Slot name -> the columns of the code that carry it AND feed the image decoder.

    In concat mode a slot's text part sits in r too; it is not read by the image decoder,
    so traversing it could not change an image and is left out.
    """
    cols = model.r_columns()
    visual = set(model.image_columns.tolist())
    out: dict[str, list[int]] = {}
    for name in slots:
        if name not in cols:
            raise ValueError(f"slot {name!r} not in the model's slots {sorted(cols)}")
        keep = [c for c in cols[name] if c in visual]
        if not keep:
            raise ValueError(f"slot {name!r} has no columns read by the image decoder")
        out[name] = keep
    return out


# --------------------------------------------------------------------------- probes


class Probe(Protocol):
    """Anything that reads factors off images: a class distribution per factor."""

    factors: tuple[str, ...]

    def predict_proba(self, images: Tensor) -> dict[str, np.ndarray]:
        """images (n, 3, S, S) in [0, 1] -> factor -> (n, n_classes) probabilities."""
        ...


def as_images(x: np.ndarray | Tensor) -> Tensor:
    """uint8 (n, S, S, 3) [as stored in images.npy] or float (n, 3, S, S) in [0, 1]
    -> float (n, 3, S, S) in [0, 1]."""
    t = torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x  # a writable copy
    if t.dim() != 4:
        raise ValueError(f"images must be 4-d, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        if t.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (n, S, S, 3), got {tuple(t.shape)}")
        return t.permute(0, 3, 1, 2).float().div(255.0)
    if t.shape[1] != 3:
        raise ValueError(f"float images must be (n, 3, S, S), got {tuple(t.shape)}")
    return t.float()


class CNNProbe(nn.Module):
    """A small convolutional classifier with one head per factor.

    Three 3x3 conv layers and a global max pool: the pooled features do not depend on
    where the item sits in the frame, which the synthetic shop jitters (a logistic
    regression on downsampled pixels reached only 78-86 % held-out shape accuracy there).
    """

    def __init__(self, n_classes: Mapping[str, int], width: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        a, b, c = width
        self.trunk = nn.Sequential(
            nn.Conv2d(3, a, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(b, c, 3, padding=1), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.heads = nn.ModuleDict({f: nn.Linear(c, k) for f, k in n_classes.items()})
        self.factors = tuple(n_classes)
        self.holdout_accuracy: dict[str, float] = {}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (n, 3, S, S) in [0, 1] -> factor -> logits (n, n_classes)."""
        h = self.trunk(x - 0.5)  # (n, c)
        return {f: head(h) for f, head in self.heads.items()}

    def predict_proba(self, images: Tensor, batch_size: int = 512) -> dict[str, np.ndarray]:
        """images (n, 3, S, S) in [0, 1] -> factor -> (n, n_classes) probabilities."""
        was = self.training
        self.eval()
        out: dict[str, list[np.ndarray]] = {f: [] for f in self.factors}
        with torch.no_grad():
            for lo in range(0, images.shape[0], batch_size):
                logits = self(images[lo : lo + batch_size].float())
                for f in self.factors:
                    out[f].append(torch.softmax(logits[f], dim=-1).numpy())
        self.train(was)
        return {f: np.concatenate(v) if v else np.zeros((0, self.heads[f].out_features))
                for f, v in out.items()}  # fmt: skip


def fit_probe(
    images: np.ndarray | Tensor,
    labels: Mapping[str, np.ndarray | Tensor],
    epochs: int = 15,
    seed: int = 0,
    holdout: float = 0.2,
    batch_size: int = 32,
    lr: float = 2e-3,
    width: tuple[int, int, int] = (16, 32, 64),
) -> CNNProbe:
    """Train a :class:`CNNProbe` on real images with their factor labels (-1 = unknown).

    A seeded ``holdout`` fraction of the images is kept out of training; the probe's
    accuracy on it is stored in ``probe.holdout_accuracy`` (factor -> accuracy). Same
    inputs and seed give the same probe on the CPU. On the small synthetic shop the
    defaults reach about 100 % (colour) and 94-96 % (shape) held-out accuracy in under a
    minute of one CPU core.
    """
    x = as_images(images)  # (n, 3, S, S)
    n = x.shape[0]
    ys = {f: torch.as_tensor(np.asarray(y)).long() for f, y in labels.items()}
    for f, y in ys.items():
        if y.shape != (n,):
            raise ValueError(f"labels[{f!r}] has shape {tuple(y.shape)}, expected ({n},)")
        if not bool((y >= 0).any()):
            raise ValueError(f"labels[{f!r}]: no labelled image")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must lie in [0, 1), got {holdout}")
    perm = torch.from_numpy(rng(seed, "probe-split").permutation(n))
    n_test = round(holdout * n)
    test, train = perm[:n_test], perm[n_test:]
    n_classes = {f: int(y.max()) + 1 for f, y in ys.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = CNNProbe(n_classes, width)
        _train_probe(probe, x[train], {f: y[train] for f, y in ys.items()}, epochs,
                     batch_size, lr, seed)  # fmt: skip
    probe.eval()
    if n_test:
        probs = probe.predict_proba(x[test])
        probe.holdout_accuracy = {
            f: _accuracy(probs[f], ys[f][test].numpy()) for f in probe.factors
        }
    return probe


def _train_probe(probe: CNNProbe, x: Tensor, ys: Mapping[str, Tensor], epochs: int,
                 batch_size: int, lr: float, seed: int) -> None:
    """Adam on the summed cross-entropies of the labelled (factor, image) pairs."""
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    probe.train()
    for epoch in range(epochs):
        order = torch.from_numpy(rng(seed, "probe-epoch", epoch).permutation(x.shape[0]))
        for lo in range(0, len(order), batch_size):
            b = order[lo : lo + batch_size]
            logits = probe(x[b])
            loss = x.new_zeros(())
            for f, y in ys.items():
                keep = y[b] >= 0
                if bool(keep.any()):
                    loss = loss + F.cross_entropy(logits[f][keep], y[b][keep])
            opt.zero_grad()
            loss.backward()
            opt.step()


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of argmax ``probs`` (n, K) on the labelled entries of ``y`` (n,); nan if none."""
    keep = y >= 0
    if not keep.any():
        return float("nan")
    return float((probs[keep].argmax(1) == y[keep]).mean())


# --------------------------------------------------------------------------- the measured effect


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
    :class:`Probe` (e.g. :func:`fit_probe` on the real images); its ``factors`` are the
    matrix's columns. ``labels``: factor -> ground-truth class (n,) (-1 unknown), for the
    probe's accuracy on the items' reconstructions.
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
        slots=tuple(slots), factors=factors, flip=flip, tv=tv, pixel_change=pixel,
        recon_accuracy=recon_acc, recon_baseline=baseline,
        probe_accuracy=dict(getattr(probe, "holdout_accuracy", {}) or {}),
        n_items=len(idx), n_steps=n_steps,
    )  # fmt: skip


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
    decode: Decoder, codes: Tensor, probe: Probe,
    labels: Mapping[str, np.ndarray | Tensor] | None, idx: list[int], batch_size: int,
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
        acc[f] = _accuracy(probs[f], y)
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
        parts.append(f"Traversing the {s} slot changes {changes} "
                     f"(mean pixel change {effect.pixel_change[i]:.3f}).")  # fmt: skip
    trust = ", ".join(
        f"{f} {_pct(effect.recon_accuracy.get(f))} (majority class "
        f"{_pct(effect.recon_baseline.get(f))}, real images {_pct(effect.probe_accuracy.get(f))})"
        for f in effect.factors
    )
    parts.append(f"Probe accuracy on the reconstructions: {trust}.")
    if all(v < 1e-3 for v in effect.pixel_change):
        parts.append("The decoded images do not change along any traversal: the decoder "
                     "ignores these dimensions, so the matrix cannot show control.")  # fmt: skip
    elif any(_near_baseline(effect, f) for f in effect.factors):
        parts.append("Where the reconstruction accuracy is near the majority-class rate the "
                     "probe cannot read that factor off the decoded images; treat its "
                     "column as uninformative.")  # fmt: skip
    return " ".join(parts)


def _near_baseline(effect: TraversalEffect, f: str) -> bool:
    acc, base = effect.recon_accuracy.get(f), effect.recon_baseline.get(f)
    if acc is None or base is None or np.isnan(acc) or np.isnan(base):
        return False
    return acc - base < 0.1 * (1.0 - base)  # under 10 % of the way from majority to perfect


def _pct(v: float | None) -> str:
    return "n/a" if v is None or np.isnan(v) else f"{100 * v:.0f} %"


# --------------------------------------------------------------------------- drawing


def traversal_figure(
    grid: Tensor,
    title: str = "",
    row_labels: Sequence[str] | None = None,
    original: Tensor | None = None,
    tile_inches: float = 0.55,
    dpi: int = 80,
) -> Figure:
    """A traversal grid (rows, n_steps, 3, S, S) as a pyplot-free matplotlib figure: one
    row per dimension, one column per step. ``original`` (3, S, S), when given, is drawn
    in an extra first column ("input") so the reader can compare."""
    from matplotlib.figure import Figure

    if grid.dim() != 5 or grid.shape[2] != 3:
        raise ValueError(f"grid must be (rows, steps, 3, S, S), got {tuple(grid.shape)}")
    rows, steps = grid.shape[:2]
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    extra = 1 if original is not None else 0
    label_w = 1.3 if row_labels is not None else 0.0
    title_h = 0.35 if title else 0.05
    width = label_w + tile_inches * (steps + extra)
    height = tile_inches * rows + title_h + (0.2 if extra else 0.0)
    fig = Figure(figsize=(width, height), dpi=dpi)
    axes = fig.subplots(rows, steps + extra, squeeze=False,
                        gridspec_kw={"left": label_w / width, "right": 1.0, "bottom": 0.0,
                                     "top": 1.0 - (height - tile_inches * rows) / height,
                                     "wspace": 0.04, "hspace": 0.04})  # fmt: skip
    for r in range(rows):
        for c in range(steps + extra):
            ax = axes[r][c]
            if extra and c == 0:
                ax.set_axis_off()
                if r == 0 and original is not None:
                    ax.imshow(_to_hwc(original))
                    ax.set_title("input", fontsize=7, pad=2)
                continue
            ax.imshow(_to_hwc(grid[r, c - extra]))
            _frame(ax)
        if row_labels is not None:
            axes[r][0].text(-0.08, 0.5, row_labels[r], transform=axes[r][0].transAxes,
                            ha="right", va="center", fontsize=7)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=8, y=1.0 - 0.04 / height, va="top")
    return fig


def draw_traversal(
    grid: Tensor,
    path: str | Path,
    title: str = "",
    row_labels: Sequence[str] | None = None,
    original: Tensor | None = None,
    dpi: int = 80,
) -> Path:
    """Write :func:`traversal_figure` as a PNG at ``path``, atomically (no date in the
    file, so the same grid gives the same bytes)."""
    fig = traversal_figure(grid, title, row_labels, original, dpi=dpi)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    return path


def _frame(ax: Any) -> None:
    """A thin grey frame and no ticks: white decoded images stay visible as tiles."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("#b0b0b0")
        spine.set_linewidth(0.5)


def _to_hwc(x: Tensor) -> np.ndarray:
    """(3, S, S) in [0, 1] -> (S, S, 3) float array for imshow."""
    return x.detach().float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()


__all__ = [
    "CNNProbe",
    "NoImageDecoderError",
    "Probe",
    "TraversalEffect",
    "as_images",
    "decode_batched",
    "describe_effect",
    "draw_traversal",
    "fit_probe",
    "image_decoder",
    "item_codes",
    "slot_columns",
    "traversal_codes",
    "traversal_effect",
    "traversal_figure",
    "traversal_values",
    "traverse",
]
