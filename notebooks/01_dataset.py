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
# # 1. The dataset
#
# Table 1 of the paper (dataset statistics) beside the reproduced one, then a look at the
# prepared data itself: a grid of item images and the review text each item is described by.
# This notebook only **reads** `results/` and the prepared dataset; it never trains.
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
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython import get_ipython
from IPython.display import Image, Markdown, display

OUT = RESULTS / DATASET


IN_KERNEL = get_ipython() is not None  # False when run as a plain script


def show_md(text: str) -> None:
    """Markdown, rendered in a notebook and printed as it is in a script."""
    display(Markdown(text)) if IN_KERNEL else print(text)


def show(fig: plt.Figure) -> None:
    """Render a matplotlib figure as a PNG output (works under any backend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    if IN_KERNEL:
        display(Image(buf.getvalue()))


def missing(path: Path, how: str) -> None:
    print(f"**Missing:** `{path}` - make it with `{how}`.")


# %% [markdown]
# ## Table 1: dataset statistics
#
# The reproduced row (`results/<dataset>/table1.csv`), then the paper's rows
# (`results/reported/table1.csv`). Amazon Cloth/Toys/Office must match the paper exactly;
# the synthetic shops have no counterpart in the paper.

# %%
table1 = OUT / "table1.csv"
if table1.is_file():
    display(pd.read_csv(table1))
    show_md((OUT / "table1.md").read_text(encoding="utf-8"))
else:
    missing(table1, f"nox -s reproduce-table1 -- --dataset {DATASET}")
print("Reported in the paper:")
display(pd.read_csv(RESULTS / "reported" / "table1.csv"))

# %% [markdown]
# ## The prepared data
#
# `table1.manifest.json` records which prepared folder the table was computed from
# (`mdr.data.dataset.ProcessedDataset` reads it). Prepared data is not committed: when it is
# absent here, the samples below are skipped.

# %%
from mdr.data.dataset import ProcessedDataset
from mdr.data.parse import DataError

manifest = OUT / "table1.manifest.json"
ds = None
if manifest.is_file():
    proc = json.loads(manifest.read_text(encoding="utf-8")).get("data")
    try:
        ds = ProcessedDataset.open(proc)
        print(f"prepared data: {ds.root} ({ds.n_users} users, {ds.n_items} items)")
    except DataError as e:
        print(
            f"**The prepared data is not here** ({e}); prepare it with "
            f"`mdr data prepare` (or `nox -s reproduce-table1 -- --dataset {DATASET}`). "
            "Samples skipped."
        )
else:
    missing(manifest, f"nox -s reproduce-table1 -- --dataset {DATASET}")

# %% [markdown]
# ### A grid of item images
#
# The first items with a usable image, as the models see them (padded to a square and
# resized), titled with their leaf category.

# %%
if ds is not None:
    rng = np.random.default_rng(0)
    with_image = np.flatnonzero(ds.image_mask)
    shown = np.sort(rng.choice(with_image, size=min(24, with_image.size), replace=False))
    cols = 8
    rows = max(1, -(-shown.size // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), shown):
        ax.imshow(ds.images[i])
        ax.set_title(f"{i}: {ds.category_names[ds.item_category[i]]}"[:18], fontsize=7)
    fig.suptitle(f"{ds.name}: {shown.size} of {with_image.size} items with an image")
    show(fig)

# %% [markdown]
# ### Review text
#
# Each item's text is built from its **training** reviews only (tokens in `text.npz`,
# vocabulary in `vocab.txt`); the first 30 tokens of a few items:

# %%
if ds is not None:
    tokens, lengths = ds.text["tokens"], ds.text["lengths"]
    rows = []
    for i in shown[:6]:
        words = [ds.vocab[t] for t in tokens[i, : min(int(lengths[i]), 30)]]
        rows.append(
            {
                "item": int(i),
                "title": ds.items[i].get("title", ""),
                "tokens": int(lengths[i]),
                "text (first 30 tokens)": " ".join(words),
            }
        )
    with pd.option_context("display.max_colwidth", 200):
        display(pd.DataFrame(rows))

# %% [markdown]
# ### Users' histories and weak labels

# %%
if ds is not None:
    lengths = np.array([len(s) for s in ds.user_sequences])
    fig, ax = plt.subplots(figsize=(5, 2.5))
    ax.hist(lengths, bins=30, color="tab:blue")
    ax.set_xlabel("behaviours per user")
    ax.set_ylabel("users")
    ax.set_title(f"{ds.name}: median {int(np.median(lengths))} behaviours per user")
    show(fig)
    for name, classes in ds.label_names.items():
        y = ds.labels[name]
        print(
            f"weak label {name!r}: {int((y >= 0).sum())} of {y.size} items labelled, "
            f"{len(classes)} classes ({', '.join(classes[:10])})"
        )
