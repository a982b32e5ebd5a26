"""The machinery behind Tables 2 and 3: run every (model, seed), reuse finished runs, aggregate.

A run is identified by its resolved config: ``results/<dataset>/runs/<model>-<hash>-s<seed>/``
(the hash covers the config and the dataset's name). A run folder with
``test.json`` is finished and reused (``--force`` reruns it); one with a
checkpoint is resumed; an interrupted table resumes where it stopped. Runs
execute as ``mdr train`` subprocesses, ``--jobs N`` of them at a time, each
with ``cores / N`` torch threads.

The paper's "AUC" is DIN's weighted AUC, i.e. our GAUC: the tables put our
GAUC beside it; global AUC, HR@10 and full-ranking NDCG@10 are in the CSV.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import CONFIGS, PAPER_NAME, REPORTED, RESULTS, read_csv, to_csv, write_result

from mdr.config import config_hash, load_run_config, to_dict
from mdr.data.catalog import DEFAULT_DATASET, dataset_name, resolve

LABELS = {
    "wide_deep": "Wide&Deep", "pnn": "PNN", "deepfm": "DeepFM", "beta_vae": "beta-VAE",
    "abae": "ABAE", "din_pp": "DIN++", "din": "DIN (ids)", "mdr": "MDR", "mdr_wo_ic": "w/o IC",
}
METRICS = ("gauc", "auc", "ndcg@10", "hr@10", "full_ndcg@10", "full_hr@10")


@dataclass(frozen=True)
class Job:
    model: str
    seed: int
    config: Path
    overrides: dict[str, Any]
    run_dir: Path


@dataclass
class Options:
    dataset: str = DEFAULT_DATASET
    seeds: int = 3
    epochs: int | None = None
    patience: int | None = None
    models: tuple[str, ...] = ()  # a subset of the table's models (default: all)
    max_steps: int | None = None
    jobs: int = 2
    force: bool = False
    quiet: bool = False
    results: Path = RESULTS
    suffix: str = ""  # "_quick" for --quick, so a quick run never overwrites the full table
    extra: dict[str, Any] = field(default_factory=dict)


def config_for(proc: Path) -> Path:
    """The config of a prepared dataset: ``mdr_synthetic.yaml`` for the embedded shop,
    ``mdr_amazon.yaml`` for real data. Every model of a table comes from this one file."""
    from mdr.data.dataset import ProcessedDataset

    synthetic = ProcessedDataset.open(proc).is_synthetic
    return CONFIGS / ("mdr_synthetic.yaml" if synthetic else "mdr_amazon.yaml")


def plan(models: Sequence[str], opts: Options, proc: Path, short: str) -> list[Job]:
    """One job per (model, seed): the model's resolved config (by name, from the dataset's
    config file) plus the table's own overrides (epochs, patience, steps)."""
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
    for model in models:
        for seed in range(opts.seeds):
            resolved = load_run_config(cfg_path, {**extra, "seed": seed}, model=model)
            key = config_hash({"model": model, "config": to_dict(resolved), "dataset": short})
            run_dir = opts.results / short / "runs" / f"{model}-{key}-s{seed}"
            jobs.append(Job(model, seed, cfg_path, extra, run_dir))
    return jobs


def _command(job: Job, proc: Path, threads: int) -> list[str]:
    """``mdr train`` for a job: the model by name, the table's overrides as ``--set``."""
    # -P: the installed package, never ./mdr of whatever folder the table runs from
    cmd = [sys.executable, "-P", "-m", "mdr.cli", "train", "-q", "--config", str(job.config),
           "--data", str(proc), "--out", str(job.run_dir), "--model", job.model,
           "--seed", str(job.seed), "--threads", str(threads)]
    for k, v in job.overrides.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    if (job.run_dir / "checkpoint.pt").is_file():
        cmd.append("--resume")
    return cmd


def run_jobs(jobs: list[Job], proc: Path, opts: Options) -> None:
    todo = []
    for job in jobs:
        if (job.run_dir / "test.json").is_file() and not opts.force:
            continue
        if opts.force and job.run_dir.exists():
            import shutil

            shutil.rmtree(job.run_dir)
        todo.append(job)
    print(f"{len(jobs) - len(todo)} run(s) reused, {len(todo)} to run with {opts.jobs} job(s)")
    threads = max(1, (os.cpu_count() or 1) // max(1, opts.jobs))

    def one(i_job: tuple[int, Job]) -> None:
        i, job = i_job
        t0 = time.perf_counter()
        job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        log = job.run_dir.parent / f"{job.run_dir.name}.log"
        with log.open("w") as fh:
            rc = subprocess.run(_command(job, proc, threads), stdout=fh, stderr=subprocess.STDOUT)
        took = time.perf_counter() - t0
        if rc.returncode != 0:
            raise RuntimeError(f"run {job.run_dir.name} failed (exit {rc.returncode}); see {log}")
        print(f"[{i + 1}/{len(todo)}] {job.model} seed {job.seed}: {took:.0f} s", flush=True)

    with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        list(pool.map(one, enumerate(todo)))


# --------------------------------------------------------------------------- aggregation


def collect(jobs: list[Job]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        res = json.loads((job.run_dir / "test.json").read_text())
        out.setdefault(job.model, []).append(res)
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summary_rows(results: dict[str, list[dict]], short: str, reported: str) -> list[dict]:
    """One row per model: mean and std of each metric over seeds, the paper's AUC/NDCG beside."""
    paper = {(r["model"], r["dataset"]): r for r in read_csv(REPORTED / reported)}
    rows = []
    for model, runs in results.items():
        row: dict[str, Any] = {"model": model, "label": LABELS.get(model, model),
                               "seeds": len(runs)}
        for m in METRICS:
            vals = [r[m] for r in runs if r.get(m) is not None]
            if vals:
                row[f"{m}_mean"], row[f"{m}_std"] = _mean_std(vals)
        p = paper.get((model, PAPER_NAME.get(short, "")))
        row["paper_auc"] = float(p["auc"]) if p else None
        row["paper_ndcg@10"] = float(p["ndcg@10"]) if p else None
        row["best_epochs"] = ";".join(str(r.get("best_epoch")) for r in runs)
        row["epochs_run"] = ";".join(str(r.get("epochs_run")) for r in runs)
        rows.append(row)
    return rows


def paired_test(results: dict[str, list[dict]], a: str, b: str, metric: str = "gauc") -> dict:
    """Paired t-test of ``a`` against ``b`` over seeds (seed i of a paired with seed i of b)."""
    from scipy import stats

    x = [r[metric] for r in results.get(a, [])]
    y = [r[metric] for r in results.get(b, [])]
    n = min(len(x), len(y))
    if n < 2:
        return {"a": a, "b": b, "metric": metric, "n": n, "p_value": None,
                "note": "needs at least 2 seeds"}
    diff = np.asarray(x[:n]) - np.asarray(y[:n])
    if np.allclose(diff, diff[0]):
        p = 0.0 if diff[0] != 0 else 1.0
    else:
        p = float(stats.ttest_rel(x[:n], y[:n]).pvalue)
    return {"a": a, "b": b, "metric": metric, "n": n, "mean_diff": float(diff.mean()),
            "p_value": p}


def _cell(row: dict, m: str, bold: bool, tex: bool = False) -> str:
    mean, std = row.get(f"{m}_mean"), row.get(f"{m}_std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{mean:.4f} ± {std:.4f}" if not tex else f"{mean:.4f} $\\pm$ {std:.4f}"
    if bold:
        return f"\\textbf{{{text}}}" if tex else f"**{text}**"
    return text


def render(rows: list[dict], title: str, short: str, test: dict, synthetic: bool,
           seeds: int) -> tuple[str, str]:
    """Markdown and LaTeX tables: reproduced mean ± std, the paper's number, the difference."""
    best = {m: max((r.get(f"{m}_mean", -1) for r in rows), default=None)
            for m in ("gauc", "ndcg@10")}
    md = [f"# {title} ({short})", ""]
    if synthetic:
        md += ["Synthetic data: the comparison with the paper is about the ORDERING of models,",
               "not the values (the paper's numbers are for Amazon Cloth/Toys/Office).", ""]
    md += [f"Mean ± std over {seeds} seed(s). AUC = GAUC (DIN's user-weighted AUC, the paper's "
           "metric); NDCG@10 on the sampled lists. Best reproduced value in bold.", "",
           "| model | AUC (ours) | AUC (paper) | diff | NDCG@10 (ours) | NDCG@10 (paper) | diff |"
           " full-rank NDCG@10 |", "|---|---|---|---|---|---|---|---|"]
    tex = ["\\begin{tabular}{lcccc}", "\\toprule",
           "Model & AUC (ours) & AUC (paper) & NDCG@10 (ours) & NDCG@10 (paper) \\\\", "\\midrule"]
    for r in rows:
        pa, pn = r.get("paper_auc"), r.get("paper_ndcg@10")
        da = f"{r['gauc_mean'] - pa:+.4f}" if pa is not None and "gauc_mean" in r else "-"
        dn = f"{r['ndcg@10_mean'] - pn:+.4f}" if pn is not None and "ndcg@10_mean" in r else "-"
        ba = r.get("gauc_mean") == best["gauc"]
        bn = r.get("ndcg@10_mean") == best["ndcg@10"]
        md.append(f"| {r['label']} | {_cell(r, 'gauc', ba)} | {pa if pa is not None else '-'} | "
                  f"{da} | {_cell(r, 'ndcg@10', bn)} | {pn if pn is not None else '-'} | {dn} | "
                  f"{_cell(r, 'full_ndcg@10', False)} |")
        label = r["label"].replace("&", "\\&").replace("beta", "$\\beta$")
        tex.append(f"{label} & {_cell(r, 'gauc', ba, True)} & {pa if pa is not None else '-'} & "
                   f"{_cell(r, 'ndcg@10', bn, True)} & {pn if pn is not None else '-'} \\\\")
    tex += ["\\bottomrule", "\\end{tabular}", ""]
    if test:
        p = test.get("p_value")
        md += ["", f"Paired t-test over seeds, {test['a']} vs {test['b']} on GAUC: "
               + (f"mean difference {test['mean_diff']:+.4f}, p = {p:.3g} (n = {test['n']})"
                  if p is not None else test.get("note", "n/a"))]
    return "\n".join(md) + "\n", "\n".join(tex)


def run_table(name: str, title: str, models: Sequence[str], reported: str, opts: Options,
              compare: tuple[str, Sequence[str]]) -> Path:
    """Run (or reuse) every model and seed, then write ``results/<dataset>/<name>.*``."""
    t0 = time.perf_counter()
    proc = resolve(opts.dataset, progress=not opts.quiet)
    short = dataset_name(opts.dataset)
    if opts.models:
        unknown = sorted(set(opts.models) - set(models))
        if unknown:
            raise SystemExit(f"{name}: --models {unknown} not in this table ({list(models)})")
        models = [m for m in models if m in opts.models]
    jobs = plan(models, opts, proc, short)
    run_jobs(jobs, proc, opts)
    results = collect(jobs)
    rows = summary_rows(results, short, reported)
    ours, others = compare
    candidates = [m for m in others if m in results]
    best_other = max(candidates, key=lambda m: np.mean([r["gauc"] for r in results[m]]),
                     default=None)
    test = paired_test(results, ours, best_other) if best_other and ours in results else {}
    from mdr.data.dataset import ProcessedDataset

    synthetic = ProcessedDataset.open(proc).is_synthetic
    md, tex = render(rows, title, short, test, synthetic, opts.seeds)
    columns = ["model", "label", "seeds"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    columns += ["paper_auc", "paper_ndcg@10", "best_epochs", "epochs_run"]
    name = name + opts.suffix
    folder = write_result(
        short, name, to_csv(rows, columns), md, results_dir=opts.results,
        data=str(proc), seeds=opts.seeds, models=list(models), paired_test=test,
        runs={j.run_dir.name: str(j.config) for j in jobs},
        wall_time_s=round(time.perf_counter() - t0, 1))
    from mdr import io as mio

    mio.write_text(folder / f"{name}.tex", tex)
    print(md)
    return folder


def parse_options(argv: list[str] | None, doc: str) -> Options:
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--dataset", default=DEFAULT_DATASET,
                   help="synthetic-small (default), synthetic-tiny, cloth, toys, office or a "
                        "prepared folder")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    p.add_argument("--patience", type=int, default=None,
                   help="every model's early-stopping patience (epochs without a better "
                        "validation GAUC)")
    p.add_argument("--models", nargs="+", default=(),
                   help="run only these of the table's models (a partial table; use --tag)")
    p.add_argument("--max-steps", type=int, default=None, help="cap steps per epoch")
    p.add_argument("--quick", action="store_true",
                   help="1 seed, 1 epoch of 8 steps, no full ranking, 2 jobs: a pipeline check "
                        "in about 3 minutes on 2 cores (numbers are not meaningful)")
    p.add_argument("--jobs", type=int, default=2,
                   help="runs in parallel processes, each with cores/jobs torch threads "
                        "(default 2: on 2 cores two single-threaded runs beat one with 2 threads)")
    p.add_argument("--tag", default="",
                   help="suffix for the outputs (table2_<tag>.csv ...), e.g. --epochs 6 --tag e6 "
                        "for the CTR baselines on the representation models' epoch budget, "
                        "beside the default table instead of over it")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    opts = Options(dataset=a.dataset, seeds=a.seeds, epochs=a.epochs, patience=a.patience,
                   models=tuple(a.models), max_steps=a.max_steps,
                   jobs=a.jobs, force=a.force, quiet=a.quiet, results=a.results)
    if a.tag:
        opts.suffix = f"_{a.tag}"
    if a.quick:
        opts.seeds = 1 if a.seeds == 3 else a.seeds
        opts.epochs = a.epochs or 1
        opts.max_steps = a.max_steps or 8
        opts.jobs = max(a.jobs, 2)
        opts.extra = {"train.full_ranking": False}
        opts.suffix = "_quick" + opts.suffix
    return opts
