"""Latent traversals (the paper's Figure 4): one item's code, one dimension swept.

A traversal holds an item's code fixed, sweeps ONE dimension over a range, and decodes
each step: one row of ``n_steps`` images per dimension. The maths is model-agnostic: it
takes a ``decode`` function (codes (m, d) -> images (m, 3, S, S) in [0, 1]) and codes;
:func:`image_decoder` gives that function for any model that declares an image decoder
(:class:`mdr.models.capabilities.ImageDecoding`: MDR, whose decoder of Eq. 9 reads the
visual columns of r, and the image side trained alone).

What a traversal changes is measured in :mod:`mdr.explain.effect` (with a probe of
:mod:`mdr.explain.probe`) and drawn by :mod:`mdr.explain.drawing`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from mdr.models.capabilities import ImageDecoding, model_capabilities

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
            raise ValueError(
                f"reference codes must be (n, d) with n > 0, got {tuple(reference.shape)}"
            )
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


# --------------------------------------------------------------------------- models


def image_decoder(model: nn.Module) -> Decoder:
    """codes (n, d) -> images (n, 3, S, S) in [0, 1] through the model's image decoder.

    The codes are what ``model.encode_items`` returns (MDR: r, whose visual columns the
    decoder of Eq. 9 reads; the image side alone: s). The decoder returns pixel units;
    the images are clamped to [0, 1] for display and probing. Raises
    :class:`NoImageDecoderError` for models that declare no image decoder (ABAE, DIN, the
    CTR baselines; :mod:`mdr.models.capabilities`).
    """
    if not model_capabilities(model).image_decoder:
        name = type(model).__name__
        raise NoImageDecoderError(
            f"{name} has no image decoder (model.use_image is false?): nothing to traverse"
        )
    decoding = cast(ImageDecoding, model)  # model_capabilities checked the declaration
    device = decoding.image_columns.device

    @torch.no_grad()  # images to look at or to probe: a probe trained on them must not
    def decode(codes: Tensor) -> Tensor:  # backpropagate into the decoder
        return decoding.decode_images(codes.to(device)).clamp(0.0, 1.0)  # (n, 3, S, S), Eq. 9

    return decode


def item_codes(model: ImageDecoding, batch_size: int = 2048) -> Tensor:
    """Every item's deterministic code (posterior mean): (I, d), CPU."""
    items = torch.arange(model.n_items, device=model.image_columns.device)
    with torch.no_grad():
        return model.encode_items(items, chunk=batch_size).float().cpu()


def slot_columns(model: ImageDecoding, slots: Sequence[str]) -> dict[str, list[int]]:
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


__all__ = [
    "DEFAULT_QUANTILES",
    "DEFAULT_SPAN",
    "Decoder",
    "NoImageDecoderError",
    "decode_batched",
    "image_decoder",
    "item_codes",
    "slot_columns",
    "traversal_codes",
    "traversal_values",
    "traverse",
]
