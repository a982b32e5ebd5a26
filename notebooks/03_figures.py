# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. The figures, and disentanglement measured
#
# Figures 3-5 of the paper as the figure scripts wrote them, the scores that turn
# "the colour dimensions control colour" into a number, and the same on real product photos.
# This notebook only **reads** `results/`: for anything missing it says which nox session
# makes it.
#
# Inputs (first code cell): `RESULTS` (env `MDR_RESULTS`, default: the repository's
# `results/`) and `DATASET` (env `MDR_DATASET`, default `synthetic-small`).

# %%
from pathlib import Path

from mdr.results import results_dataset, results_dir

# the notebook's folder (when run as a script) or the current one, searched upwards
RESULTS = results_dir([Path(globals().get("__file__", "notebook")).resolve().parent])
DATASET = results_dataset()
print(f"RESULTS = {RESULTS}\nDATASET = {DATASET}")

# %%
import io

import pandas as pd
from IPython import get_ipython
from IPython.display import Image, Markdown, display
from PIL import Image as PILImage

OUT = RESULTS / DATASET
FASHION = RESULTS / "fashion-images"  # the real product photos (`nox -s fashion`)
MAX_IMAGES = 12  # traversal pictures shown per folder; the rest are listed
IN_KERNEL = get_ipython() is not None  # False when run as a plain script


def show_md(text: str) -> None:
    """Markdown, rendered in a notebook and printed as it is in a script."""
    display(Markdown(text)) if IN_KERNEL else print(text)


def missing(what: str, session: str) -> None:
    print(f"**Missing:** {what} - make it with `{session}`.")


def show_image(png: Path, max_png_kb: int = 100) -> None:
    """Display a PNG; a large one (photos) as a JPEG, to keep the HTML small."""
    if png.stat().st_size <= max_png_kb * 1024:
        display(Image(filename=str(png)))
        return
    with PILImage.open(png) as im:
        rgba = im.convert("RGBA")
    flat = PILImage.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    buf = io.BytesIO()
    flat.save(buf, format="JPEG", quality=85)
    display(Image(buf.getvalue(), format="jpeg"))


def show_pngs(folder: Path, pattern: str, session: str) -> list[Path]:
    """Display every ``folder/pattern`` PNG (up to MAX_IMAGES); say how to make them if none."""
    found = sorted(folder.glob(pattern))
    if not found:
        missing(f"`{folder / pattern}`", session)
    for png in found[:MAX_IMAGES]:
        show_md(f"`{png.relative_to(RESULTS)}`")
        if IN_KERNEL:
            show_image(png)
    if len(found) > MAX_IMAGES:
        print(
            f"... and {len(found) - MAX_IMAGES} more in {folder}:",
            ", ".join(p.name for p in found[MAX_IMAGES:]),
        )
    return found


def show_table(folder: Path, stem: str, session: str, *others: str) -> pd.DataFrame | None:
    """Display ``<name>.md`` (else ``<name>.csv``) from ``folder`` or ``folder/figures``, for
    the first of ``stem, *others`` (other names the same table may have) that exists."""
    for name in (stem, *others):
        for where in (folder, folder / "figures"):
            md, csv = where / f"{name}.md", where / f"{name}.csv"
            if md.is_file():
                show_md(md.read_text(encoding="utf-8"))
            if csv.is_file():
                table = pd.read_csv(csv)
                if not md.is_file():
                    display(table)
                return table
            if md.is_file():
                return None
    missing(f"`{folder / stem}.csv`/`.md`", session)
    return None


# %% [markdown]
# ## Figure 3: AUC of every model
#
# Validation AUC per epoch (from each run's `metrics.jsonl`) and the final test AUC with
# error bars over seeds.

# %%
figure3_png = show_pngs(OUT / "figures", "figure3*.png", "nox -s figures")
figure3 = show_table(OUT, "figure3", "nox -s figures")

# %% [markdown]
# ## Figure 4: latent traversals
#
# For a few items, the dimensions of one slot (colour, then shape) are varied and the image
# decoded, one row per dimension. The effect matrix below measures what each traversal
# changes in the decoded images (e.g. how much the colour moves against the shape).

# %%
effects = show_table(OUT, "figure4", "nox -s figures")
traversals = show_pngs(OUT / "figures", "figure4-*.png", "nox -s figures")

# %% [markdown]
# ## Figure 5: the text aspects
#
# Each row of the aspect matrix **D** with its 10 nearest words (cosine with the word
# vectors) and the slot that aspect is fused into.

# %%
aspects = show_table(OUT, "figure5", "nox -s figures")
figure5 = show_pngs(OUT / "figures", "figure5*.png", "nox -s figures")

# %% [markdown]
# ## Disentanglement against the ground truth
#
# DCI (disentanglement, completeness, informativeness), MIG, and the slot probe (how well
# each named slot predicts its own factor against the other slots) for MDR, its ablations,
# beta-VAE, ABAE and DIN++ on the synthetic shop's ground-truth factors.

# %%
scores = show_table(OUT, "disentanglement", "nox -s disentanglement")

# %% [markdown]
# ## Real product photos
#
# The image side trained with weak colour/article-type labels on real product photos
# (`results/fashion-images/`): traversals and the image disentanglement scores against the
# photos' labels.

# %%
real_effects = show_table(FASHION, "figure4", "nox -s fashion", "traversal_effect")
real_traversals = show_pngs(FASHION / "figures", "figure4-*.png", "nox -s fashion")
real_scores = show_table(FASHION, "disentanglement", "nox -s fashion")
