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
# # 2. The results: Tables 2 and 3
#
# Table 2 (every model) and Table 3 (MDR with and without the information constraint), as the
# table scripts wrote them under `results/<dataset>/`, beside the paper's numbers
# (`results/reported/`), with the paired test over seeds recorded in the manifests.
# This notebook only **reads** results; `nox -s reproduce-table2` / `reproduce-table3` make them.
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
REPORTED = RESULTS / "reported"
SESSION = {"table2": "nox -s reproduce-table2", "table3": "nox -s reproduce-table3"}


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


def table_file(name: str, ext: str) -> Path | None:
    """``<name>.<ext>``, else the ``--quick`` pipeline check's ``<name>_quick.<ext>``."""
    for stem in (name, f"{name}_quick"):
        if (OUT / f"{stem}.{ext}").is_file():
            return OUT / f"{stem}.{ext}"
    return None


def reported(name: str) -> pd.DataFrame:
    """The paper's table as models x (dataset, metric)."""
    df = pd.read_csv(REPORTED / f"{name}.csv")
    wide = df.pivot(index="model", columns="dataset", values=["auc", "ndcg@10"])
    order = list(dict.fromkeys(df["model"]))  # the paper's row and column order
    return wide.reindex(index=order, columns=list(dict.fromkeys(df["dataset"])), level=1)


# %% [markdown]
# ## Table 2: AUC and NDCG@10
#
# "AUC" in the paper is DIN's user-weighted AUC, our **GAUC**. On synthetic data only the
# *ordering* of the models is comparable with the paper, not the values.


# %%
def show_table(name: str) -> pd.DataFrame | None:
    csv, md = table_file(name, "csv"), table_file(name, "md")
    if csv is None or md is None:
        print(
            f"**Missing:** `{OUT / name}.csv` - make it with "
            f"`{SESSION[name]} -- --dataset {DATASET}`."
        )
        return None
    if csv.stem.endswith("_quick"):
        print(f"only the --quick pipeline check is here ({csv.name}): its numbers mean nothing")
    show_md(md.read_text(encoding="utf-8"))
    return pd.read_csv(csv).set_index("model")


table2 = show_table("table2")
print("Reported in the paper (Table 2):")
display(reported("table2"))


# %%
def plot_gauc(table: pd.DataFrame, title: str) -> None:
    """Mean GAUC +- std over seeds per model, ordered as in the table."""
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(table) + 1))
    y = np.arange(len(table))
    ax.barh(
        y,
        table["gauc_mean"],
        xerr=table["gauc_std"].fillna(0),
        color="tab:blue",
        alpha=0.8,
        capsize=3,
    )
    ax.set_yticks(y, table["label"])
    ax.invert_yaxis()
    lo = float((table["gauc_mean"] - table["gauc_std"].fillna(0)).min())
    ax.set_xlim(max(0.0, lo - 0.05), None)
    ax.set_xlabel(f"test GAUC, mean ± std over {int(table['seeds'].max())} seed(s)")
    ax.set_title(title)
    show(fig)


if table2 is not None:
    plot_gauc(table2, f"Table 2 ({DATASET})")

# %% [markdown]
# ### Does the ordering of the models agree with the paper?
#
# Spearman rank correlation between our GAUC and the paper's AUC over the models both have,
# for each of the paper's datasets (1 = the same ordering).

# %%
from scipy.stats import spearmanr


def ordering_agreement(table: pd.DataFrame, name: str) -> pd.DataFrame:
    paper = pd.read_csv(REPORTED / f"{name}.csv")
    rows = []
    for dataset, part in paper.groupby("dataset", sort=False):
        common = [m for m in part["model"] if m in table.index]
        if len(common) < 3:
            continue
        theirs = part.set_index("model").loc[common, "auc"]
        rho = spearmanr(table.loc[common, "gauc_mean"], theirs).statistic
        rows.append({"paper dataset": dataset, "models": len(common), "spearman rho": rho})
    return pd.DataFrame(rows)


if table2 is not None:
    display(ordering_agreement(table2, "table2"))

# %% [markdown]
# ## Table 3: the information constraint

# %%
table3 = show_table("table3")
print("Reported in the paper (Table 3):")
display(reported("table3"))
if table3 is not None:
    plot_gauc(table3, f"Table 3 ({DATASET})")

# %% [markdown]
# ## Comparisons
#
# MDR against every other model of each table: the mean difference over seeds, paired
# t-test (Holm-adjusted across the table), Wilcoxon, a paired bootstrap CI over test users
# and the difference the seeds could detect at 80 % power, as each table's
# `<table>.comparisons.csv` records them.

# %%
frames = []
for name in ("table2", "table3", "ablations", "table2_tuned", "table3_tuned", "ablations_tuned"):
    path = table_file(name, "comparisons.csv")
    if path is not None:
        frames.append(pd.read_csv(path).assign(table=name))
if frames:
    display(
        pd.concat(frames)[
            [
                "table",
                "a",
                "b",
                "metric",
                "seeds",
                "mean_diff",
                "ci_low",
                "ci_high",
                "p_t",
                "p_t_holm",
                "p_wilcoxon",
                "detectable_80",
            ]
        ]
    )
else:
    print("no comparisons yet: run `nox -s reproduce-table2` and `nox -s reproduce-table3`")

# %% [markdown]
# ## Per seed
#
# Each run's final test metrics (`runs/<name>/test.json`; run folders are not committed, so
# this is empty on a fresh clone).

# %%
runs: dict[str, str] = {}
for name in ("table2", "table3"):
    path = table_file(name, "manifest.json")
    runs |= json.loads(path.read_text(encoding="utf-8")).get("runs", {}) if path else {}
per_seed = []
for run in runs:
    test_json = OUT / "runs" / run / "test.json"
    if test_json.is_file():
        t = json.loads(test_json.read_text(encoding="utf-8"))
        model = run.rsplit("-", 2)[0]  # <model>-<hash>-s<seed>: the variant's name
        per_seed.append(
            {
                "run": run,
                "model": model,
                "seed": t.get("seed"),
                "best epoch": t.get("best_epoch"),
                "gauc": t.get("gauc"),
                "ndcg@10": t.get("ndcg@10"),
            }
        )
if per_seed:
    display(
        pd.DataFrame(per_seed)
        .pivot(index="model", columns="seed", values="gauc")
        .add_prefix("GAUC seed ")
    )
else:
    print(f"no run folders under {OUT / 'runs'} (runs are not committed)")
