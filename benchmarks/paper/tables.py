"""The machinery behind Tables 2 and 3: run every (model, seed), reuse finished runs, aggregate.

A run is identified by its resolved config: ``results/<dataset>/runs/<model>-<hash>-s<seed>/``
(the hash covers the config and the dataset's name). A run folder with
``test.json`` is finished and reused (``--force`` reruns it); one with a
checkpoint is resumed; an interrupted table resumes where it stopped. Runs
execute as ``mdr train`` commands on the executor of ``--executor``
(:mod:`benchmarks.executor`: ``--jobs N`` local subprocesses at a time, or Ray tasks), each
with ``--threads`` torch threads (default 1, so that a run's numbers do not depend on the
machine's cores).

The paper's "AUC" is DIN's weighted AUC, i.e. our GAUC: the tables put our
GAUC beside it; global AUC, HR@10 and full-ranking NDCG@10 are in the CSV.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.aggregate import aggregate, read_test
from benchmarks.common import (
    CONFIGS,
    LABELS,
    PAPER_NAME,
    REPORTED,
    RESULTS,
    BenchmarkError,
    read_csv,
    to_csv,
    write_result,
)
from benchmarks.executor import Task, add_executor_options, make_executor
from mdr.argtypes import Parser, int_range, safe_name
from mdr.config import ModelConfig, RunConfig, config_hash, load_run_config, load_tuning, to_dict
from mdr.data.catalog import DEFAULT_DATASET, dataset_name, resolve
from mdr.training.registry import get_builder

# test metrics at the best validation epoch, then the validation GAUC that selected it
METRICS = ("gauc", "auc", "ndcg@10", "hr@10", "full_ndcg@10", "full_hr@10", "best_valid_gauc")


@dataclass(frozen=True)
class Job:
    model: str
    seed: int
    config: Path
    overrides: dict[str, Any]
    run_dir: Path
    flush_denormals: bool = False  # mdr train --flush-denormals (the tuned protocol's choice)


@dataclass
class Options:
    dataset: str = DEFAULT_DATASET
    seeds: int = 3  # seeds 0..N-1, unless seed_list gives them (tuned: the first N of them)
    seed_list: tuple[int, ...] = ()
    tuned: bool = False  # every model with its tuned overrides (tuning/best.yaml)
    quick: bool = False  # a pipeline check (with --tuned: the quick tuning's best.yaml)
    epochs: int | None = None
    patience: int | None = None
    models: tuple[str, ...] = ()  # a subset of the table's models (default: all)
    max_steps: int | None = None
    jobs: int = 2
    executor: str = "local"  # local subprocesses, or Ray (benchmarks.executor)
    ray_address: str | None = None
    force: bool = False
    quiet: bool = False
    results: Path = RESULTS
    threads: int = 1  # torch threads per run: the numbers do not depend on the machine's cores
    suffix: str = ""  # "_quick" for --quick, so a quick run never overwrites the full table
    extra: dict[str, Any] = field(default_factory=dict)


def config_for(proc: Path) -> Path:
    """The config of a prepared dataset: ``mdr_synthetic.yaml`` for the embedded shop,
    ``mdr_amazon.yaml`` for real data. Every model of a table comes from this one file."""
    from mdr.data.dataset import ProcessedDataset

    synthetic = ProcessedDataset.open(proc).is_synthetic
    return CONFIGS / ("mdr_synthetic.yaml" if synthetic else "mdr_amazon.yaml")


def seeds_of(opts: Options) -> tuple[int, ...]:
    return opts.seed_list or tuple(range(opts.seeds))


def tuned_overrides(
    opts: Options, short: str, cfg_path: Path, models: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each model's overrides of the tuned protocol: the config's ``tuning.fixed``, then its
    chosen trial (``results/<dataset>/tuning/best.yaml``); an ablation is the TUNED MDR with
    its one change applied last (nothing retuned)."""
    import yaml

    from mdr.config import variant_names, variant_overrides

    path = opts.results / short / ("tuning_quick" if opts.quick else "tuning") / "best.yaml"
    if not path.is_file():
        raise BenchmarkError(
            f"{path}: not found - run `python -m benchmarks.tune --dataset "
            f"{opts.dataset}` first (--tuned trains each model's chosen "
            "settings)"
        )
    try:
        best = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise BenchmarkError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    fixed = dict(load_tuning(cfg_path).fixed)
    ablations = set(variant_names(cfg_path)["ablations"])
    out: dict[str, dict[str, Any]] = {}
    for m in models:
        base = "mdr" if m in ablations else m
        if base not in best or not isinstance(best[base], dict):
            raise BenchmarkError(
                f"{path}: no tuned settings for {base!r} (tuned: {sorted(best)}); tune it first"
            )
        chosen = dict(best[base].get("overrides") or {})
        out[m] = {**fixed, **chosen, **(variant_overrides(cfg_path, m) if m in ablations else {})}
    return out


def plan(models: Sequence[str], opts: Options, proc: Path, short: str) -> list[Job]:
    """One job per (model, seed): the model's resolved config (by name, from the dataset's
    config file), its tuned overrides with ``--tuned``, then the table's own overrides
    (epochs, patience, steps). On a dataset without images (:func:`without_images`)
    models run without their image side."""
    jobs = []
    cfg_path = config_for(proc)
    extra: dict[str, Any] = {}
    if opts.epochs is not None:
        extra["train.epochs"] = opts.epochs
    if opts.patience is not None:
        extra["train.patience"] = opts.patience
    if opts.max_steps is not None:
        extra["train.max_steps_per_epoch"] = opts.max_steps
    extra.update(opts.extra)
    kept, _ = without_images(models, cfg_path, proc)
    tuned = tuned_overrides(opts, short, cfg_path, list(kept)) if opts.tuned else {}
    flush = opts.tuned and load_tuning(cfg_path).flush_denormals
    for model in models:
        if model not in kept:
            continue
        overrides = {**tuned.get(model, {}), **extra, **kept[model]}
        for seed in seeds_of(opts):
            resolved = load_run_config(cfg_path, {**overrides, "seed": seed}, model=model)
            run_dir = run_dir_for(opts.results, short, model, resolved, flush_denormals=flush)
            jobs.append(Job(model, seed, cfg_path, overrides, run_dir, flush))
    return jobs


def run_dir_for(
    results: Path,
    short: str,
    model: str,
    resolved: RunConfig,
    data: str | None = None,
    flush_denormals: bool = False,
) -> Path:
    """``results/<short>/runs/<model>-<hash>-s<seed>``: the hash covers the resolved config,
    the name of the data it trains on (``data``, default ``short``) and, when on, the
    flushing of subnormal floats (so a flushed run never reuses an unflushed one's folder)."""
    identity: dict[str, Any] = {
        "model": model,
        "config": to_dict(resolved),
        "dataset": data or short,
    }
    if flush_denormals:
        identity["flush_denormals"] = True
    key = config_hash(identity)
    return results / short / "runs" / f"{model}-{key}-s{resolved.seed}"


def without_images(
    models: Sequence[str], cfg_path: Path, proc: Path
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Which models run on ``proc``, each with its extra overrides, and why others do not.

    On data with images: every model, as configured. On data without any image (real
    review files without photos): a model that only reads images (beta-VAE) has nothing
    to learn and is left out; every other runs with ``model.use_image: false``; one that
    then equals an earlier model of the table (DIN++ = ABAE) is left out as a duplicate.
    """
    from mdr.data.dataset import ProcessedDataset

    counts = ProcessedDataset.open(proc).manifest["counts"]
    if counts.get("items_with_image", 1) > 0:
        return {m: {} for m in models}, []
    kept: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    seen: dict[str, str] = {}
    for model in models:
        cfg = load_run_config(cfg_path, model=model).model
        if cfg.use_image and not cfg.use_text and not cfg.use_id_embedding:
            notes.append(f"{LABELS.get(model, model)} reads images only: left out")
            continue
        overrides = {"model.use_image": False} if cfg.use_image else {}
        resolved = to_dict(load_run_config(cfg_path, overrides, model=model))
        # the same network (builder) with the same config but for its name is the same model
        builder = get_builder(resolved["model"].pop("name"))
        key = config_hash(
            {"builder": f"{builder.__module__}.{builder.__qualname__}", "config": resolved}
        )
        if key in seen:
            notes.append(
                f"{LABELS.get(model, model)} without images is "
                f"{LABELS.get(seen[key], seen[key])}: left out"
            )
            continue
        seen[key] = model
        kept[model] = overrides
    return kept, [
        "This dataset has no images: every model runs without its image side "
        "(model.use_image: false), so MDR is its text side: the text encoder, the "
        "per-slot aspect decoder (Eq. 14) and the weak labels of the text slots"
        + "".join(f"; {n}" for n in notes)
        + "."
    ]


def _command(job: Job, proc: Path, threads: int, force: bool) -> list[str]:
    """``mdr train`` for a job: the model by name, the table's overrides as ``--set``;
    always ``--resume`` (a started run continues, also when its worker was retried)."""
    # -P: the installed package, never ./mdr of whatever folder the table runs from
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "mdr.cli",
        "train",
        "-q",
        "--config",
        str(job.config),
        "--data",
        str(proc),
        "--out",
        str(job.run_dir),
        "--model",
        job.model,
        "--seed",
        str(job.seed),
        "--threads",
        str(threads),
        "--resume",
    ]
    for k, v in job.overrides.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    if job.flush_denormals:
        cmd.append("--flush-denormals")
    if force:
        cmd.append("--overwrite")
    return cmd


def is_ctr_baseline(model: ModelConfig) -> bool:
    """A model registered from outside the project (the deepctr-torch CTR baselines): it
    reads the sparse id features only."""
    return get_builder(model.name).__module__ != "mdr.training.registry"


def expected_cost(cfg: RunConfig) -> int:
    """A rough rank of a run's cost on the CPU: image models, then text, then id models.
    Only the order the runs start in depends on it, never a number they produce."""
    model = cfg.model
    if is_ctr_baseline(model):  # small
        return 0
    return 2 * model.use_image + model.use_text


def run_jobs(jobs: list[Job], proc: Path, opts: Options) -> None:
    """Every job without a finished run folder (all with ``--force``), longest first, on the
    executor of ``--executor``."""
    todo = [j for j in jobs if opts.force or not (j.run_dir / "test.json").is_file()]
    print(
        f"{len(jobs) - len(todo)} run(s) reused, {len(todo)} to run on the "
        f"{opts.executor} executor ({opts.jobs} job(s))"
    )
    configs = {j.run_dir: load_run_config(j.config, j.overrides, model=j.model) for j in todo}
    todo.sort(key=lambda j: -expected_cost(configs[j.run_dir]))  # longest first: end together
    tasks = [train_task(j, proc, opts.threads, opts.force, configs[j.run_dir]) for j in todo]
    if tasks:
        make_executor(opts.executor, opts.jobs, opts.ray_address).run(tasks)


def train_task(
    job: Job,
    proc: Path,
    threads: int,
    force: bool = False,
    cfg: RunConfig | None = None,
    label: str | None = None,
) -> Task:
    """The executor's task of a job: its ``mdr train`` command and log beside its run."""
    cfg = cfg or load_run_config(job.config, job.overrides, model=job.model)
    return Task(
        label or f"{job.model} seed {job.seed}",
        tuple(_command(job, proc, threads, force)),
        job.run_dir.parent / f"{job.run_dir.name}.log",
        cpus=threads,
        device=cfg.train.device,
    )


# --------------------------------------------------------------------------- aggregation


def collect(jobs: list[Job]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        out.setdefault(job.model, []).append(read_test(job.run_dir))
    return out


def paper_ranks(reported: str) -> dict[str, float]:
    """Each model's rank by AUC in the paper's table (1 = best), averaged over its datasets."""
    by_dataset: dict[str, dict[str, float]] = {}
    for r in read_csv(REPORTED / reported):
        by_dataset.setdefault(r["dataset"], {})[r["model"]] = float(r["auc"])
    ranks: dict[str, list[float]] = {}
    for aucs in by_dataset.values():
        for model, rank in _ranks(aucs).items():
            ranks.setdefault(model, []).append(rank)
    return {m: float(np.mean(v)) for m, v in ranks.items()}


def _ranks(values: dict[str, float]) -> dict[str, float]:
    """1 = the largest value; ties share the mean of their ranks."""
    from scipy.stats import rankdata

    names = list(values)
    return dict(zip(names, rankdata([-values[n] for n in names]).tolist()))


def hit_cap(run: dict[str, Any]) -> bool:
    """Whether the epoch cap, not early stopping, ended a run (``test.json``)."""
    return bool(run.get("hit_epoch_cap", not run.get("stopped_early", True)))


def inputs_of(cfg_path: Path, model: str, overrides: dict[str, Any]) -> str:
    """What a model reads: ids (user, item and category embeddings), image, text, weak
    labels; the CTR baselines read the sparse id features only."""
    m = load_run_config(cfg_path, overrides, model=model).model
    if is_ctr_baseline(m):
        return "ids, category"
    parts = ["ids, category"] if m.use_id_embedding else []
    parts += [name for name, on in (("image", m.use_image), ("text", m.use_text)) if on]
    if m.weak_supervision and any(sl.label for sl in m.slots):
        parts.append("weak labels")
    return ", ".join(parts)


def summary_rows(
    results: dict[str, list[dict]], short: str, reported: str, inputs: dict[str, str] | None = None
) -> list[dict]:
    """One row per model: what it reads, mean and std of each metric over seeds, the paper's
    AUC/NDCG beside, both orderings (the model's rank here and its mean rank in the paper),
    and the runs that hit the epoch cap (marked ``*`` in the epochs)."""
    paper = {(r["model"], r["dataset"]): r for r in read_csv(REPORTED / reported)}
    in_paper = paper_ranks(reported)
    rows = []
    for model, runs in results.items():
        row: dict[str, Any] = {
            "model": model,
            "label": LABELS.get(model, model),
            "inputs": (inputs or {}).get(model, ""),
            "seeds": len(runs),
        }
        row.update(aggregate(runs, METRICS))
        p = paper.get((model, PAPER_NAME.get(short, "")))
        row["paper_auc"] = float(p["auc"]) if p else None
        row["paper_ndcg@10"] = float(p["ndcg@10"]) if p else None
        row["paper_rank"] = in_paper.get(model)
        row["best_epochs"] = ";".join(str(r.get("best_epoch")) for r in runs)
        row["epochs_run"] = ";".join(f"{r.get('epochs_run')}{'*' * hit_cap(r)}" for r in runs)
        row["capped"] = sum(hit_cap(r) for r in runs)
        rows.append(row)
    ours = _ranks({r["model"]: r["gauc_mean"] for r in rows if "gauc_mean" in r})
    for r in rows:
        r["rank"] = ours.get(r["model"])
    return rows


def rank_agreement(rows: list[dict]) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau between our GAUC ordering and the paper's mean ranks,
    over the models both have."""
    from scipy import stats

    both = [r for r in rows if r.get("paper_rank") is not None and "gauc_mean" in r]
    if len(both) < 3:
        return {"n": len(both), "spearman": None, "kendall": None}
    ours = _ranks({r["model"]: r["gauc_mean"] for r in both})
    x = [ours[r["model"]] for r in both]
    y = [r["paper_rank"] for r in both]
    return {
        "n": len(both),
        "spearman": float(stats.spearmanr(x, y).statistic),
        "kendall": float(stats.kendalltau(x, y).statistic),
        "models": [r["model"] for r in both],
    }


# metric of test.json -> its per-user value in test_users.npz (None: computed from ranks)
COMPARED = {"gauc": "auc", "ndcg@10": "ndcg@10", "full_ndcg@10": None}


def user_values(run_dir: Path, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(users, values) of one metric from a run's ``test_users.npz``; None without it."""
    from mdr.data.dataset import load_npz

    path = run_dir / "test_users.npz"
    if not path.is_file():
        return None
    z = load_npz(path)
    key = COMPARED[metric]
    if key is not None:
        return z["user"], z[key]
    if "full_rank" not in z:
        return None
    ranks = z["full_rank"]
    return z["full_user"], np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)


def _mean_over_seeds(run_dirs: Sequence[Path], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    got = [user_values(d, metric) for d in run_dirs]
    if not got or any(g is None for g in got):
        return None
    users = got[0][0]
    if any(not np.array_equal(g[0], users) for g in got):
        return None
    return users, np.mean([g[1] for g in got], axis=0)


def compare(
    results: dict[str, list[dict[str, Any]]],
    dirs: dict[str, dict[int, Path]],
    a: str,
    b: str,
    metric: str,
) -> dict[str, Any]:
    """Model ``a`` against ``b`` on one test metric: paired over seeds (t-test, Wilcoxon,
    the difference the seeds detect at 80 % power) and over test users (a paired
    bootstrap 95 % CI of the mean difference, each user's value averaged over seeds)."""
    from mdr import stats

    by_seed = {
        m: {r["seed"]: r for r in results.get(m, []) if r.get(metric) is not None} for m in (a, b)
    }
    seeds = sorted(set(by_seed[a]) & set(by_seed[b]))
    out: dict[str, Any] = {"a": a, "b": b, "metric": metric, "seeds": len(seeds)}
    if not seeds:
        return out
    x = np.array([by_seed[a][s][metric] for s in seeds], float)
    y = np.array([by_seed[b][s][metric] for s in seeds], float)
    d = x - y
    out["mean_diff"] = float(d.mean())
    out["p_t"] = stats.paired_t(x, y)
    out["p_wilcoxon"] = stats.wilcoxon(x, y)
    out["detectable_80"] = stats.detectable_difference(
        float(d.std(ddof=1)) if len(d) > 1 else float("nan"), len(d)
    )
    ua = _mean_over_seeds([dirs[a][s] for s in seeds], metric)
    ub = _mean_over_seeds([dirs[b][s] for s in seeds], metric)
    if ua is not None and ub is not None and np.array_equal(ua[0], ub[0]):
        out["ci_low"], out["ci_high"] = stats.paired_bootstrap_ci(ua[1], ub[1])
        out["users"] = len(ua[0])
    return out


def comparisons(
    results: dict[str, list[dict[str, Any]]], jobs: Sequence[Job], a: str, others: Sequence[str]
) -> list[dict[str, Any]]:
    """``a`` against each of ``others`` on every compared metric, with Holm-adjusted
    t-test p-values across the table's comparisons of each metric."""
    from mdr import stats

    dirs: dict[str, dict[int, Path]] = {}
    for j in jobs:
        dirs.setdefault(j.model, {})[j.seed] = j.run_dir
    rows = [
        compare(results, dirs, a, b, m)
        for m in COMPARED
        for b in others
        if a in results and b in results
    ]
    rows = [r for r in rows if r["seeds"] > 0]
    for m in COMPARED:
        mine = [r for r in rows if r["metric"] == m]
        for r, p in zip(mine, stats.holm([r.get("p_t", float("nan")) for r in mine])):
            r["p_t_holm"] = p
    return rows


COMPARISON_COLUMNS = [
    "a",
    "b",
    "metric",
    "seeds",
    "mean_diff",
    "p_t",
    "p_t_holm",
    "p_wilcoxon",
    "ci_low",
    "ci_high",
    "users",
    "detectable_80",
]


def _p(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def comparisons_markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [
        "",
        "Comparisons, paired over seeds (t-test, Holm-adjusted across this table's "
        "comparisons of a metric, and Wilcoxon) and over test users (a paired bootstrap "
        "95 % CI of the mean difference, each user's value averaged over seeds). "
        "Detectable: the smallest true difference these seeds detect with 80 % power "
        "(paired t, 5 %).",
        "",
        "| comparison | metric | mean diff | 95 % CI (users) | p (t) | p (t, Holm) | "
        "p (Wilcoxon) | detectable (80 %) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if r.get("ci_low") is not None else "-"
        diff = f"{r['mean_diff']:+.4f}" if r.get("mean_diff") is not None else "-"
        det = (
            f"{r['detectable_80']:.4f}"
            if r.get("detectable_80") is not None and not (math.isnan(r["detectable_80"]))
            else "-"
        )
        out.append(
            f"| {LABELS.get(r['a'], r['a'])} vs {LABELS.get(r['b'], r['b'])} | "
            f"{r['metric']} | {diff} | {ci} | {_p(r.get('p_t'))} | "
            f"{_p(r.get('p_t_holm'))} | {_p(r.get('p_wilcoxon'))} | {det} |"
        )
    return out


def _cell(row: dict, m: str, bold: bool, tex: bool = False) -> str:
    mean, std = row.get(f"{m}_mean"), row.get(f"{m}_std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{mean:.4f} ± {std:.4f}" if not tex else f"{mean:.4f} $\\pm$ {std:.4f}"
    if bold:
        return f"\\textbf{{{text}}}" if tex else f"**{text}**"
    return text


def render(
    rows: list[dict],
    title: str,
    short: str,
    tests: list[dict],
    synthetic: bool,
    seeds: Sequence[int],
    notes: Sequence[str] = (),
) -> tuple[str, str]:
    """Markdown and LaTeX tables. On the paper's datasets: reproduced mean ± std, the
    paper's number, the difference. Elsewhere (the embedded shop, another category) the
    paper's values cannot be compared, its ordering can: each model's rank here beside its
    mean rank in the paper (over Cloth, Toys and Office) and their rank correlation."""
    best = {
        m: max((r.get(f"{m}_mean", -1) for r in rows), default=None) for m in ("gauc", "ndcg@10")
    }
    by_value = any(r.get("paper_auc") is not None for r in rows)
    md = [f"# {title} ({short})", ""]
    if synthetic:
        md += [
            "Synthetic data: the comparison with the paper is about the ORDERING of models,",
            "not the values (the paper's numbers are for Amazon Cloth/Toys/Office).",
            "",
        ]
    seed_text = ", ".join(map(str, seeds))
    md += [
        f"Mean ± std over {len(seeds)} seed(s) ({seed_text}). AUC = GAUC (DIN's "
        "user-weighted AUC, the paper's metric); NDCG@10 on the sampled lists. Best "
        "reproduced value in bold. Reads: the inputs of each model (ids = user, item and "
        "category embeddings). Valid: the validation GAUC at the best epoch, which "
        "selected it. Epochs: the best validation epoch and the epochs run of each seed "
        "(early stopping on validation GAUC; `*`: the run hit the epoch cap instead).",
        "",
    ]
    if by_value:
        md += [
            "| model | reads | AUC (ours) | AUC (paper) | diff | NDCG@10 (ours) | "
            "NDCG@10 (paper) | diff | full-rank NDCG@10 | AUC (valid) | best / run epochs |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    else:
        md += [
            "| model | reads | AUC (ours) | rank (ours) | rank (paper, mean) | NDCG@10 (ours) | "
            "full-rank NDCG@10 | AUC (valid) | best / run epochs |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    tex = [
        "\\begin{tabular}{lcccc}",
        "\\toprule",
        "Model & AUC (ours) & AUC (paper) & NDCG@10 (ours) & NDCG@10 (paper) \\\\",
        "\\midrule",
    ]
    for r in rows:
        pa, pn = r.get("paper_auc"), r.get("paper_ndcg@10")
        da = f"{r['gauc_mean'] - pa:+.4f}" if pa is not None and "gauc_mean" in r else "-"
        dn = f"{r['ndcg@10_mean'] - pn:+.4f}" if pn is not None and "ndcg@10_mean" in r else "-"
        ba = r.get("gauc_mean") == best["gauc"]
        bn = r.get("ndcg@10_mean") == best["ndcg@10"]
        epochs = f"{r['best_epochs']} / {r['epochs_run']}"
        valid = _cell(r, "best_valid_gauc", False)
        if by_value:
            md.append(
                f"| {r['label']} | {r.get('inputs') or '-'} | {_cell(r, 'gauc', ba)} | "
                f"{pa if pa is not None else '-'}"
                f" | {da} | {_cell(r, 'ndcg@10', bn)} | {pn if pn is not None else '-'} | "
                f"{dn} | {_cell(r, 'full_ndcg@10', False)} | {valid} | {epochs} |"
            )
        else:
            pr = r.get("paper_rank")
            md.append(
                f"| {r['label']} | {r.get('inputs') or '-'} | {_cell(r, 'gauc', ba)} | "
                f"{_rank(r.get('rank'))} | "
                f"{_rank(pr)} | {_cell(r, 'ndcg@10', bn)} | "
                f"{_cell(r, 'full_ndcg@10', False)} | {valid} | {epochs} |"
            )
        label = r["label"].replace("&", "\\&").replace("beta", "$\\beta$")
        tex.append(
            f"{label} & {_cell(r, 'gauc', ba, True)} & {pa if pa is not None else '-'} & "
            f"{_cell(r, 'ndcg@10', bn, True)} & {pn if pn is not None else '-'} \\\\"
        )
    tex += ["\\bottomrule", "\\end{tabular}", ""]
    agree = rank_agreement(rows)
    if not by_value and agree["spearman"] is not None:
        md += [
            "",
            f"Ordering against the paper's (mean rank over Cloth, Toys, Office) over the "
            f"{agree['n']} models both have: Spearman's rho = {agree['spearman']:+.2f}, "
            f"Kendall's tau = {agree['kendall']:+.2f} (1: the same ordering).",
        ]
    capped = sum(r.get("capped", 0) for r in rows)
    if capped:
        md += [
            "",
            f"**{capped} run(s) hit the epoch cap** (`*`): early stopping did not end "
            "them, so their numbers may still be rising.",
        ]
    md += comparisons_markdown(tests)
    if notes:
        md += ["", *notes]
    return "\n".join(md) + "\n", "\n".join(tex)


def _rank(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def run_models(
    models: Sequence[str], opts: Options, name: str
) -> tuple[Path, str, list[Job], dict[str, list[dict[str, Any]]]]:
    """Run (or reuse) every (model, seed): the prepared folder, its short name, the jobs and
    each model's test results."""
    if opts.models:  # before any work: a typo costs nothing
        unknown = sorted(set(opts.models) - set(models))
        if unknown:
            raise BenchmarkError(f"--models {unknown}: not in {name} ({list(models)})")
        models = [m for m in models if m in opts.models]
    proc = resolve(opts.dataset, progress=not opts.quiet)
    short = dataset_name(opts.dataset)
    if opts.tuned:  # the tuned protocol's seeds: never the tuning seed
        table_seeds = load_tuning(config_for(proc)).table_seeds
        opts.seed_list = table_seeds[: opts.seeds] if opts.seeds else table_seeds
    jobs = plan(models, opts, proc, short)
    run_jobs(jobs, proc, opts)
    return proc, short, jobs, collect(jobs)


def write_table(
    name: str,
    title: str,
    models: Sequence[str],
    reported: str,
    opts: Options,
    proc: Path,
    short: str,
    jobs: list[Job],
    results: dict[str, list[dict[str, Any]]],
    ours: str,
    t0: float,
    notes: Sequence[str] = (),
) -> Path:
    """``results/<dataset>/<name>.{csv,md,tex}``, ``<name>.comparisons.csv`` (``ours``
    against every other model of the table) and the manifest for ``models``."""
    from mdr import io as mio
    from mdr.data.dataset import ProcessedDataset

    present = [m for m in models if m in results]
    mine = [j for j in jobs if j.model in models]
    first = {j.model: j for j in reversed(mine)}
    inputs = {m: inputs_of(first[m].config, m, first[m].overrides) for m in present}
    rows = summary_rows({m: results[m] for m in present}, short, reported, inputs)
    tests = comparisons(results, mine, ours, [m for m in present if m != ours])
    synthetic = ProcessedDataset.open(proc).is_synthetic
    notes = [*without_images(models, config_for(proc), proc)[1], *notes]
    md, tex = render(rows, title, short, tests, synthetic, seeds_of(opts), notes)
    columns = ["model", "label", "inputs", "seeds"]
    columns += [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    columns += [
        "paper_auc",
        "paper_ndcg@10",
        "paper_rank",
        "rank",
        "best_epochs",
        "epochs_run",
        "capped",
    ]
    name = name + opts.suffix
    folder = write_result(
        short,
        name,
        to_csv(rows, columns),
        md,
        results_dir=opts.results,
        data=str(proc),
        seeds=list(seeds_of(opts)),
        tuned=opts.tuned,
        models=present,
        comparisons=tests,
        rank_agreement=rank_agreement(rows),
        runs={j.run_dir.name: str(j.config) for j in mine},
        wall_time_s=round(time.perf_counter() - t0, 1),
    )
    mio.write_text(folder / f"{name}.comparisons.csv", to_csv(tests, COMPARISON_COLUMNS))
    mio.write_text(folder / f"{name}.tex", tex)
    print(md)
    return folder


def run_table(
    name: str, title: str, models: Sequence[str], reported: str, opts: Options, ours: str
) -> Path:
    """Run (or reuse) every model and seed, then write ``results/<dataset>/<name>.*``."""
    t0 = time.perf_counter()
    proc, short, jobs, results = run_models(models, opts, name)
    return write_table(name, title, models, reported, opts, proc, short, jobs, results, ours, t0)


def parse_options(argv: list[str] | None, doc: str) -> Options:
    p = Parser(description=doc.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help="synthetic-small (default), synthetic-tiny, cloth, toys, office or a prepared folder",
    )
    p.add_argument(
        "--seeds",
        type=int_range(1, 100),
        default=None,
        help="seeds 0..N-1 (default 3); with --tuned the first N of the config's "
        "tuning.table_seeds (default all: five seeds, never the tuning seed)",
    )
    p.add_argument(
        "--tuned",
        action="store_true",
        help="every model with its tuned settings (results/<dataset>/tuning/"
        "best.yaml, from python -m benchmarks.tune) on the tuned protocol's "
        "seeds; writes <table>_tuned.* beside the one-rule table",
    )
    p.add_argument(
        "--epochs", type=int_range(1, 100_000), default=None, help="override the configs' epochs"
    )
    p.add_argument(
        "--patience",
        type=int_range(0, 100_000),
        default=None,
        help="every model's early-stopping patience (epochs without a better validation GAUC)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=(),
        type=safe_name,
        help="run only these of the table's models (a partial table; use --tag)",
    )
    p.add_argument(
        "--max-steps", type=int_range(1, 10**9), default=None, help="cap steps per epoch"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 seed, 1 epoch of 8 steps, no full ranking, 2 jobs: a pipeline check "
        "in under a minute on 2 cores once the data is prepared (numbers are "
        "not meaningful)",
    )
    p.add_argument(
        "--jobs",
        type=int_range(1, 256),
        default=2,
        help="runs in parallel processes (default 2: on 2 cores two single-threaded "
        "runs beat one with 2 threads)",
    )
    add_executor_options(p)
    p.add_argument(
        "--threads",
        type=int_range(1, 1024),
        default=1,
        help="torch threads per run (default 1: a run's numbers then do not depend "
        "on the machine's number of cores)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dotted config override for every run of the table, e.g. "
        "loss.beta=4 (repeatable; with --tag, a sweep beside the table)",
    )
    p.add_argument(
        "--tag",
        default=None,
        type=safe_name,
        help="suffix for the outputs (table2_<tag>.csv ...), e.g. --set loss.beta=4 "
        "--tag beta4: a sweep beside the default table instead of over it",
    )
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    from mdr.config import parse_value

    extra: dict[str, Any] = {}
    for item in a.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--set {item!r}: expected KEY=VALUE")
        extra[key] = parse_value(value)
    opts = Options(
        dataset=a.dataset,
        seeds=a.seeds or 3,
        epochs=a.epochs,
        patience=a.patience,
        tuned=a.tuned,
        models=tuple(a.models),
        max_steps=a.max_steps,
        jobs=a.jobs,
        executor=a.executor,
        ray_address=a.ray_address,
        threads=a.threads,
        force=a.force,
        quiet=a.quiet,
        results=a.results,
        extra=extra,
    )
    if a.tuned:
        opts.suffix = "_tuned"
        opts.seeds = a.seeds or 0  # 0: every seed of the tuned protocol
    if a.tag:
        opts.suffix += f"_{a.tag}"
    if a.quick:
        opts.quick = True
        opts.seeds = a.seeds or 1
        opts.epochs = a.epochs or 1
        opts.max_steps = a.max_steps or 8
        opts.jobs = max(a.jobs, 2)
        opts.extra = {**opts.extra, "train.full_ranking": False}
        opts.suffix = "_quick" + opts.suffix
    return opts
