"""Drawing the item images: a silhouette per product type, filled, patterned, placed, lit.

Only visual factors (colour, size, shape, pattern) and the image nuisances
(background, position, jitter, sensor noise) enter a picture. :func:`image_tasks` is
the one call :func:`mdr.data.shop.generate` makes; the photo shop makes
:func:`mdr.data.shop.photos.image_tasks` instead (the same kind of tasks).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mdr.data.parse import image_filename
from mdr.data.shop.factors import (
    BACKGROUND_RGB,
    COLOUR_RGB,
    FACTOR_BY_NAME,
    POSITION_DIR,
    SIZE_SCALE,
    _Items,
)
from mdr.seeding import rng

IMAGE_SIZE = 128
_IMAGE_CHUNK = 1_000  # items per image task

# Silhouettes in unit coordinates (x right, y down, item centred at 0, extent ~[-0.5, 0.5]).
# Each is a list of primitives: ("poly", points), ("ellipse", box), ("ring", box, width).
_SILHOUETTES: dict[str, list[tuple]] = {
    "T-Shirts": [
        (
            "poly",
            [
                (-0.18, -0.45),
                (-0.07, -0.45),
                (0.0, -0.38),
                (0.07, -0.45),
                (0.18, -0.45),
                (0.46, -0.24),
                (0.36, -0.08),
                (0.25, -0.16),
                (0.25, 0.45),
                (-0.25, 0.45),
                (-0.25, -0.16),
                (-0.36, -0.08),
                (-0.46, -0.24),
            ],
        )
    ],
    "Dresses": [
        (
            "poly",
            [
                (-0.12, -0.47),
                (-0.06, -0.47),
                (0.0, -0.4),
                (0.06, -0.47),
                (0.12, -0.47),
                (0.16, -0.22),
                (0.13, -0.05),
                (0.42, 0.47),
                (-0.42, 0.47),
                (-0.13, -0.05),
                (-0.16, -0.22),
            ],
        )
    ],
    "Trousers": [
        (
            "poly",
            [
                (-0.26, -0.47),
                (0.26, -0.47),
                (0.32, 0.47),
                (0.07, 0.47),
                (0.0, 0.15),
                (-0.07, 0.47),
                (-0.32, 0.47),
            ],
        )
    ],
    "Shoes": [
        (
            "poly",
            [
                (-0.46, 0.3),
                (-0.46, -0.15),
                (-0.4, -0.3),
                (-0.12, -0.3),
                (0.0, -0.15),
                (0.3, 0.0),
                (0.46, 0.12),
                (0.46, 0.3),
            ],
        )
    ],
    "Handbags": [
        ("ring", (-0.22, -0.45, 0.22, 0.05), 0.06),
        ("poly", [(-0.38, -0.15), (0.38, -0.15), (0.46, 0.42), (-0.46, 0.42)]),
    ],
    "Hats": [
        ("ellipse", (-0.48, 0.08, 0.48, 0.3)),
        (
            "poly",
            [
                (-0.26, 0.2),
                (-0.24, -0.22),
                (-0.12, -0.32),
                (0.12, -0.32),
                (0.24, -0.22),
                (0.26, 0.2),
            ],
        ),
    ],
    "Watches": [
        ("poly", [(-0.12, -0.5), (0.12, -0.5), (0.12, 0.5), (-0.12, 0.5)]),
        ("ellipse", (-0.26, -0.26, 0.26, 0.26)),
    ],
    "Mugs": [
        ("ring", (0.05, -0.2, 0.45, 0.22), 0.07),
        ("poly", [(-0.34, -0.36), (0.2, -0.36), (0.2, 0.4), (-0.34, 0.4)]),
    ],
}
_GRID = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)  # (2, H, W): y, x
_IGRID = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.int32)  # (2, H, W)
_SHADE = 1.0 - 0.06 * (_GRID[0] + _GRID[1]) / (2 * IMAGE_SIZE)  # (H, W)
# A fixed noise field; each image takes a window at its own offset (cheaper than fresh noise).
_NOISE = np.random.default_rng(20210705).normal(0.0, 2.0, (3, 2 * IMAGE_SIZE, 2 * IMAGE_SIZE))
_NOISE = _NOISE.astype(np.float32)


def _image_params(items: _Items, seed: int) -> dict[str, np.ndarray]:
    """Per-item drawing parameters: factor values plus nuisance jitter (all arrays [I, ...])."""
    gen = rng(seed, "synthetic", "images")
    v = items.values
    n = len(items.asins)
    colours = np.array(list(COLOUR_RGB.values()), float)
    fill = np.clip(colours[v["colour"]] + gen.uniform(-10, 10, (n, 3)), 0, 255)
    scale = np.array(list(SIZE_SCALE.values()))[v["size"]] * gen.uniform(0.95, 1.05, n)
    s_px = scale * IMAGE_SIZE
    margin = np.maximum(0.0, (IMAGE_SIZE - s_px) / 2 - 2)
    direction = np.array(list(POSITION_DIR.values()))[v["position"]]  # (I, 2)
    offset = direction * (margin * gen.uniform(0.5, 1.0, n))[:, None] + gen.uniform(-2, 2, (n, 2))
    bgs = np.array(list(BACKGROUND_RGB.values()), float)
    bg = np.clip(bgs[v["background"]] + gen.uniform(-4, 4, (n, 1)), 0, 255)
    return {
        "shape": v["shape"],
        "pattern": v["pattern"],
        "fill": fill,
        "size_px": s_px,
        "centre": IMAGE_SIZE / 2 + offset,
        "background": bg,
        "period": gen.integers(8, 14, n),
        "phase": gen.integers(0, 14, (n, 2)),
        "noise_offset": gen.integers(0, IMAGE_SIZE, (n, 2)),
    }


def _silhouette_mask(shape: str, cx: float, cy: float, s: float) -> np.ndarray:
    """Boolean (H, W) mask of a product silhouette of size ``s`` pixels centred at (cx, cy)."""
    img = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(img)

    def px(x: float, y: float) -> tuple[float, float]:
        return cx + x * s, cy + y * s

    for prim in _SILHOUETTES[shape]:
        if prim[0] == "poly":
            draw.polygon([px(x, y) for x, y in prim[1]], fill=255)
        elif prim[0] == "ellipse":
            x0, y0, x1, y1 = prim[1]
            draw.ellipse((*px(x0, y0), *px(x1, y1)), fill=255)
        else:  # ring: an ellipse outline of relative width
            x0, y0, x1, y1 = prim[1]
            draw.ellipse((*px(x0, y0), *px(x1, y1)), outline=255, width=max(2, round(prim[2] * s)))
    return np.asarray(img) > 127


def _pattern_mask(pattern: str, period: int, phase: np.ndarray) -> np.ndarray:
    """Boolean (H, W) motif of a pattern (integer pixel arithmetic: fast and exact)."""
    y, x = _IGRID[0] + int(phase[0]), _IGRID[1] + int(phase[1])
    if pattern == "stripes":
        return (y % period) * 20 < period * 9
    if pattern == "dots":
        dy, dx = 2 * (y % period) - period, 2 * (x % period) - period
        return (dy * dy + dx * dx) * 100 < (56 * period) ** 2 // 100
    if pattern == "checks":
        h = max(2, round(period * 0.6))
        return ((x // h + y // h) % 2) == 0
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)


def render_image(params: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Draw item ``i``: uint8 (128, 128, 3). Only visual factors and nuisance enter here."""
    shape = FACTOR_BY_NAME["shape"].values[int(params["shape"][i])]
    pattern = FACTOR_BY_NAME["pattern"].values[int(params["pattern"][i])]
    cx, cy = params["centre"][i]
    mask = _silhouette_mask(shape, float(cx), float(cy), float(params["size_px"][i]))  # (H, W)
    fill = params["fill"][i].astype(np.float32)  # (3,)
    lum = float(fill @ np.array([0.299, 0.587, 0.114], np.float32))
    contrast = 0.5 * fill + 0.5 * (255.0 if lum < 140 else 0.0)  # a lighter/darker motif
    motif = _pattern_mask(pattern, int(params["period"][i]), params["phase"][i])  # (H, W)
    inner = mask.copy()  # 1-pixel erosion: the outline gets a darker edge
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    light = _SHADE * (1.0 - 0.4 * (mask & ~inner).astype(np.float32))  # (H, W): top-left light
    on, motif_f = mask.astype(np.float32), motif.astype(np.float32)
    bg = params["background"][i]
    oy, ox = params["noise_offset"][i]
    noise = _NOISE[:, oy : oy + IMAGE_SIZE, ox : ox + IMAGE_SIZE]  # (3, H, W) sensor noise
    # channel by channel: numpy is slow on a trailing axis of length 3
    chans = [
        bg[c] + on * ((fill[c] + motif_f * (contrast[c] - fill[c])) * light - bg[c]) + noise[c]
        for c in range(3)
    ]  # 3 x (H, W)
    img = np.stack(chans, axis=-1)  # (H, W, 3)
    np.clip(img + 0.5, 0, 255, out=img)
    return img.astype(np.uint8)


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, optimize=False)
    return buf.getvalue()


def _render_range(
    params: dict[str, np.ndarray], asins: list[str], lo: int, hi: int, folder: str
) -> int:
    """Write images lo..hi-1 into ``folder`` (runs in a worker process too)."""
    for i in range(lo, hi):
        (Path(folder) / image_filename(asins[i])).write_bytes(_jpeg(render_image(params, i)))
    return hi - lo


def image_tasks(items: _Items, seed: int, folder: Path) -> list[tuple[Any, tuple]]:
    """The work that writes ``folder/<asin>.jpg`` for every item, as ``(fn, args)`` tasks.

    Each task can run in a worker process; the bytes do not depend on which one.
    """
    params = _image_params(items, seed)
    n = len(items.asins)
    return [
        (_render_range, (params, items.asins, lo, min(n, lo + _IMAGE_CHUNK), str(folder)))
        for lo in range(0, n, _IMAGE_CHUNK)
    ]
