"""Drawing traversal grids (the paper's Figure 4): one row per dimension, one column per
step, as a pyplot-free matplotlib figure or a PNG whose bytes depend on the grid alone."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from mdr.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    axes = fig.subplots(
        rows,
        steps + extra,
        squeeze=False,
        gridspec_kw={
            "left": label_w / width,
            "right": 1.0,
            "bottom": 0.0,
            "top": 1.0 - (height - tile_inches * rows) / height,
            "wspace": 0.04,
            "hspace": 0.04,
        },
    )
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
            axes[r][0].text(
                -0.08,
                0.5,
                row_labels[r],
                transform=axes[r][0].transAxes,
                ha="right",
                va="center",
                fontsize=7,
            )
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


__all__ = ["draw_traversal", "traversal_figure"]
