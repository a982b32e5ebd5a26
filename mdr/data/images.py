"""Item images: decode whatever the file holds into one uint8 RGB square.

:func:`load_image` turns any Pillow mode into RGB:

- grey ``L``/``1``, ``CMYK``, ``YCbCr``, palette ``P`` -> RGB by Pillow's conversion;
- transparency (``RGBA``, ``LA``, ``PA``, palette with a transparent colour) is
  composited on white, the usual product-photo background;
- 16-bit and 32-bit grey (``I;16*``, ``I``, ``F``) are scaled to 0-255 first
  (Pillow's own conversion would clip them to white);
- the EXIF orientation is applied.

The picture is then shrunk so that its long side is ``size`` (Pillow's
LANCZOS filter, anti-aliased) and centred on a white ``size`` x ``size``
square (padding, never cropping: the whole product stays visible). Large JPEGs
are decoded at a reduced scale first (``Image.draft``, still at least twice
the target size), which makes real Amazon photos several times cheaper.

A file that is missing or cannot be decoded gives ``None`` and a reason
(:func:`load_image_reason`); :func:`load_images` counts the reasons and sets the
item's mask to False, never crashing on one bad file.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

WHITE = (255, 255, 255)
MAX_PIXELS = 64_000_000  # larger files are refused (decompression-bomb guard)
RESAMPLE = Image.Resampling.LANCZOS
_ORIENTATION = 0x0112  # EXIF tag

REASON_MISSING = "image missing"
REASON_UNDECODABLE = "image not decodable"
REASON_CORRUPT = "image corrupt or truncated"
REASON_TOO_LARGE = "image too large"
REASON_EMPTY = "image has zero size"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, with alpha composited on white and high bit depths scaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float grey
        a = np.asarray(img, dtype=np.float64)
        scale = 255.0 / 65535.0 if (mode.startswith("I;16") or a.max(initial=0) > 255) else 1.0
        return Image.fromarray(np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _square(img: Image.Image, size: int) -> np.ndarray:
    """Shrink (or enlarge) so the long side is ``size``, centre on white: uint8 [S, S, 3]."""
    w, h = img.size
    long_side = max(w, h)
    new_w, new_h = max(1, round(w * size / long_side)), max(1, round(h * size / long_side))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), RESAMPLE)
    canvas = Image.new("RGB", (size, size), WHITE)
    canvas.paste(img, ((size - new_w) // 2, (size - new_h) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def _decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as img:
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise Image.DecompressionBombError(f"{w}x{h} pixels")
        if w == 0 or h == 0:
            raise ValueError(REASON_EMPTY)
        long_side, target = max(w, h), 2 * size
        if img.format == "JPEG" and long_side > target:
            img.draft(None, (max(1, w * target // long_side), max(1, h * target // long_side)))
        img.load()
        if img.getexif().get(_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        return _square(_to_rgb(img), size)


def load_image_reason(path: str | Path, size: int) -> tuple[np.ndarray | None, str | None]:
    """``(uint8 [S, S, 3], None)`` for a usable image, else ``(None, reason)``."""
    path = Path(path)
    if not path.is_file():
        return None, REASON_MISSING
    try:
        return _decode(path, size), None
    except Image.DecompressionBombError:
        return None, REASON_TOO_LARGE
    except UnidentifiedImageError:
        return None, REASON_UNDECODABLE
    except (OSError, SyntaxError, EOFError):  # truncated data, broken headers
        return None, REASON_CORRUPT
    except ValueError as e:
        return None, REASON_EMPTY if str(e) == REASON_EMPTY else REASON_CORRUPT
    except Exception:  # any other decoder failure: one bad file never stops a prepare
        return None, REASON_CORRUPT


def load_images(
    paths: Sequence[Path],
    size: int,
    out: np.ndarray,
    workers: int = 2,
    chunk: int = 512,
    progress: bool = False,
) -> tuple[np.ndarray, list[str | None]]:
    """Decode ``paths[i]`` into ``out[i]`` (a preallocated [N, S, S, 3] array or memmap).

    Threads decode in parallel (Pillow releases the GIL), in chunks so that
    finished images are written out as they come; each result depends only on
    its own file, so the output is the same for any ``workers``. Unusable images
    leave zeros in ``out``. Returns the mask bool [N] and each item's reason
    (None where usable).
    """
    n = len(paths)
    mask = np.zeros(n, dtype=bool)
    reasons: list[str | None] = [None] * n
    bar = _bar(n, progress)
    with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, n, chunk):
            batch = paths[start : start + chunk]
            for j, (arr, why) in enumerate(pool.map(lambda p: load_image_reason(p, size), batch)):
                i = start + j
                if arr is None:
                    reasons[i] = why
                else:
                    out[i] = arr
                    mask[i] = True
            bar.update(len(batch))
    bar.close()
    return mask, reasons


def _bar(total: int, enabled: bool) -> Any:
    """A tqdm bar (disabled when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="images", unit="img", disable=not enabled)
