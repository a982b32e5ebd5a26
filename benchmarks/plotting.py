"""One look for every figure script, and one way to write a PNG (atomically, small).

Figures are built on :class:`matplotlib.figure.Figure` directly, never through
``pyplot``: no global figure registry, no GUI backend, nothing to close. Wrap
the drawing and the saving in ``with style():`` so the rc settings apply.

    from benchmarks.plotting import MODEL_LABELS, model_colour, new_figure, save_figure, style

    with style():
        fig, axes = new_figure(1, 2, size=(9, 3.4))
        ...
        save_figure(fig, results / dataset / "figures" / "figure3.png")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from benchmarks.common import LABELS as MODEL_LABELS
from mdr import io as mio

DPI = 110  # small PNGs (tens of KB) that stay legible on a laptop screen

# a fixed colour per model, so a model looks the same in every figure (MDR stands out)
_COLOURS = {
    "wide_deep": "#8c8c8c",
    "pnn": "#b07aa1",
    "deepfm": "#9c755f",
    "beta_vae": "#4e79a7",
    "abae": "#59a14f",
    "din_pp": "#f28e2b",
    "din": "#bab0ac",
    "mdr": "#e15759",
    "mdr_wo_ic": "#ff9d9a",
}
_FALLBACK = ("#76b7b2", "#edc948", "#17becf", "#bcbd22", "#7f7f7f", "#1f77b4")

STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.08,
    "figure.dpi": DPI,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The house style for everything drawn and saved inside the block."""
    with matplotlib.rc_context(STYLE):
        yield


def model_label(model: str) -> str:
    """Display name of a model (as in the tables), or the name itself."""
    return MODEL_LABELS.get(model, model)


def model_colour(model: str) -> str:
    """A fixed colour per model name; unknown names get a stable colour from a fallback list."""
    if model in _COLOURS:
        return _COLOURS[model]
    return _FALLBACK[sum(map(ord, model)) % len(_FALLBACK)]


def new_figure(
    rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.4, 3.6), **subplot_kw: Any
) -> tuple[Figure, Any]:
    """A pyplot-free figure and its axes (an array when rows*cols > 1)."""
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=True, **subplot_kw)
    return fig, axes


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (a reader never sees half a file).

    The PNG carries no creation date, so the same figure gives the same bytes.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: save_figure writes PNG files only")
    with mio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    return path


__all__ = [
    "DPI",
    "MODEL_LABELS",
    "STYLE",
    "model_colour",
    "model_label",
    "new_figure",
    "save_figure",
    "style",
]
