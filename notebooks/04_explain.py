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
# # 4. Explaining one recommendation
#
# Reopen the seed-0 MDR run of Table 2 (`mdr.training.evaluate.load_run`: its config and best
# weights), recommend the top-scored unseen item to one user, and explain it with
# `mdr.explain.attribution`: the score, what each named slot contributes to it, and the
# history items the attention weighed most. The same as `mdr explain RUN --user U --item I`.
# This notebook only **reads** a finished run; it never trains.
#
# Inputs (first code cell): `RESULTS` (env `MDR_RESULTS`, default: the repository's
# `results/`) and `DATASET` (env `MDR_DATASET`, default `synthetic-small`); `USER` (env
# `MDR_USER`, default 0) is the user to explain.

# %%
import os
from pathlib import Path

from mdr.results import results_dataset, results_dir

# the notebook's folder (when run as a script) or the current one, searched upwards
RESULTS = results_dir([Path(globals().get("__file__", "notebook")).resolve().parent])
DATASET = results_dataset()
USER = int(os.environ.get("MDR_USER") or 0)
print(f"RESULTS = {RESULTS}\nDATASET = {DATASET}\nUSER = {USER}")

# %%
import importlib.util
import io
import json
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython import get_ipython
from IPython.display import Image, display
from tqdm import TqdmWarning

# mdr.training.evaluate imports tqdm.auto, which warns in a kernel without ipywidgets (no bars here)
warnings.filterwarnings("ignore", category=TqdmWarning)
from mdr.data.parse import DataError
from mdr.training.runs import RunError, load_run

torch.set_num_threads(1)
OUT = RESULTS / DATASET
IN_KERNEL = get_ipython() is not None  # False when run as a plain script


def show(fig: plt.Figure) -> None:
    """Render a matplotlib figure as a PNG output (works under any backend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    if IN_KERNEL:
        display(Image(buf.getvalue()))


# %% [markdown]
# ## The run
#
# Table 2's manifest lists its run folders (`results/<dataset>/runs/<name>/`); run folders
# are not committed, so on a fresh clone this says how to make them.


# %%
def seed0_mdr_run() -> Path | None:
    manifest = OUT / "table2.manifest.json"
    if not manifest.is_file():
        print(
            f"**Missing:** `{manifest}` - make it with "
            f"`nox -s reproduce-table2 -- --dataset {DATASET}`."
        )
        return None
    runs = json.loads(manifest.read_text(encoding="utf-8")).get("runs", {})
    names = [n for n in runs if n.startswith("mdr-") and n.endswith("-s0")]
    if not names:
        print(f"**No seed-0 MDR run** in `{manifest}`.")
        return None
    return OUT / "runs" / names[0]


run_dir = seed0_mdr_run()
run = None
if run_dir is not None and not (run_dir / "best.pt").is_file():
    print(
        f"**The run folder is not here:** `{run_dir}` (runs are not committed). Make it with "
        f"`nox -s reproduce-table2 -- --dataset {DATASET}` (finished runs are reused), or "
        "train MDR alone: `mdr train --config benchmarks/configs/mdr_synthetic.yaml "
        f"--data PREPARED --out {run_dir} --model mdr --seed 0`."
    )
elif run_dir is not None:
    try:
        run = load_run(run_dir)
    except (DataError, RunError) as e:
        print(f"**Cannot reopen the run:** {e} (is its prepared data here? `mdr data prepare`)")
if run is not None:
    print(
        f"run {run.folder.root.name}: best epoch {run.best.get('epoch')}, "
        f"valid GAUC {run.best.get('value', float('nan')):.4f}; data {run.ds.root}"
    )

# %% [markdown]
# ## The user's top-scored item
#
# Score every item the user has not interacted with (the history the model sees at test
# time: training behaviours plus the validation item) and take the best.

# %%
from mdr.data.batches import eval_samples
from mdr.training.evaluate import item_representations

item = None
if run is not None:
    ds, model = run.ds, run.model
    samples = eval_samples(ds, "test", run.cfg.train.max_hist)
    hist = torch.as_tensor(samples["hist"][USER : USER + 1])  # (1, H)
    mask = torch.as_tensor(samples["hist_mask"][USER : USER + 1])  # (1, H)
    reps = item_representations(model, ds.n_items, run.cfg.train.eval_batch_size, run.device)
    with torch.no_grad():
        all_items = torch.arange(ds.n_items)[None]  # (1, I)
        scores = model.score(reps, hist, mask, all_items, torch.tensor([USER]))[0].numpy()
    history = samples["hist"][USER][samples["hist_mask"][USER]]
    scores[history] = -np.inf  # recommend only what the user has not bought yet
    top = np.argsort(-scores)[:5]
    item = int(top[0])
    for rank, i in enumerate(top, 1):
        print(f"{rank}. item {i}: score {scores[i]:+.3f}  {ds.items[i].get('title', '')}")

# %%
if item is not None:
    shown = [*history[-8:], item]
    fig, axes = plt.subplots(1, len(shown), figsize=(1.4 * len(shown), 1.8), squeeze=False)
    for ax, i in zip(axes[0], shown):
        ax.imshow(ds.images[i])
        ax.set_title(f"item {i}", fontsize=7)
        ax.axis("off")
    axes[0][-1].set_title(f"recommended: {item}", fontsize=7, color="tab:red")
    fig.suptitle(f"user {USER}: the last {len(shown) - 1} history items and item {item}")
    show(fig)

# %% [markdown]
# ## Why this item?

# %%
facts = None
if item is not None:
    if importlib.util.find_spec("mdr.explain.attribution") is None:
        print("**Missing:** `mdr.explain.attribution` is not in this installation of `mdr`.")
    else:
        from mdr.explain.attribution import explain

        explanation = explain(run, USER, item, top_history=5)
        print(explanation.to_text())
        facts = explanation.to_dict()

# %% [markdown]
# The slot contributions as a chart: the drop in the logit when the slot's columns of the
# representation are replaced by their mean over all items (larger = the slot mattered more).

# %%
if facts and facts.get("contributions"):
    contrib = pd.DataFrame(facts["contributions"]).set_index("slot")
    display(contrib)
    fig, ax = plt.subplots(figsize=(5, 0.3 * len(contrib) + 1))
    contrib["drop"].iloc[::-1].plot.barh(ax=ax, color="tab:blue")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("drop in logit when the slot is set to its mean")
    ax.set_title(f"user {USER}, item {item}: logit {facts.get('logit', float('nan')):+.3f}")
    show(fig)
