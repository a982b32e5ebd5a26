"""Equal tuning on validation only: every model of Table 2 gets the same number of trials.

    python -m benchmarks.tune [--dataset synthetic-small|magazine|PROC] [--models ...]
                              [--trials N] [--quick] [--jobs N] [--executor local|ray]
                              [--storage FILE|URL] [--results DIR]

One Optuna study per model (:mod:`mdr.training.tuning`: seeded TPE over the model's
search space in its config file, a median pruner on the per-epoch validation GAUC,
trials trained on the tuning seed over the data's validation-only view, which holds no
test behaviour and no test list). The studies live in one journal file under
``results/<dataset>/tuning/`` (or ``--storage``): rerunning resumes them, and several
workers, machines included (``--executor ray``), can share them. Each model's study is
one task of the executor; its trials run one after another, so a study is reproducible.

Outputs under ``results/<dataset>/tuning/`` (``tuning_quick/`` with ``--quick``):
``<model>.csv`` (one row per trial: ``trial``, each parameter, ``valid_gauc``,
``best_epoch``, ``epochs_run``, ``state``), ``best.yaml`` (each model's chosen
overrides: its best complete trial by validation GAUC; the tuned tables read it),
``tuning.md`` and a manifest (trials by state, the CPU time of each study, runs that
reached the epoch cap, and what a shorter patience would have lost on the trials'
validation curves). The trials' run folders go to ``tuning/runs/`` (not committed).

The outputs cover every model with a study in the storage, not only ``--models``: tuning
one model never drops another's choice. A study short of its trials is reported as
under way and kept out of ``best.yaml``, so no tuned table reads a choice made on fewer
trials than the others had. An interrupted tuning (Ctrl-C, a failed worker) still writes
the outputs as the studies stand; ``--report`` writes them without running a trial.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import RESULTS, BenchmarkError, run_script, to_csv, to_markdown
from benchmarks.executor import Task, add_executor_options, make_executor
from benchmarks.paper.table2 import MODELS
from benchmarks.paper.tables import config_for, expected_cost, without_images
from mdr import io as mio
from mdr.argtypes import Parser, int_range, safe_name
from mdr.config import load_run_config, load_tuning, search_space
from mdr.data.catalog import DEFAULT_DATASET, dataset_name, resolve
from mdr.provenance import manifest

QUICK = {"train.epochs": 2, "train.max_steps_per_epoch": 4, "train.patience": 2}
QUICK_TRIALS = 2
PATIENCES = (3, 5)  # what a shorter patience would have lost, on the trials' curves
CSV_TAIL = ["valid_gauc", "best_epoch", "epochs_run", "state"]


@dataclass(frozen=True)
class Options:
    dataset: str
    models: tuple[str, ...]
    trials: int | None
    quick: bool
    jobs: int
    executor: str
    ray_address: str | None
    storage: str | None
    results: Path
    threads: int
    quiet: bool
    report: bool = False


def parse(argv: list[str] | None) -> Options:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        default=DEFAULT_DATASET,
        help="a catalog name (synthetic-small, magazine, ...) or a prepared folder",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=(),
        type=safe_name,
        help="tune only these of Table 2's models",
    )
    p.add_argument(
        "--trials",
        type=int_range(1, 10_000),
        default=None,
        help="trials per model (default: the config's tuning.trials)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_TRIALS} trials (unless --trials) of 2 short epochs per model, into "
        "tuning_quick/: "
        "a pipeline check (numbers not meaningful)",
    )
    p.add_argument(
        "--jobs",
        type=int_range(1, 256),
        default=2,
        help="studies tuned at the same time (local executor; default 2)",
    )
    add_executor_options(p)
    p.add_argument(
        "--storage",
        default=None,
        help="an Optuna journal file or RDB URL shared by the workers (default: "
        "results/<dataset>/tuning/studies.journal)",
    )
    p.add_argument("--threads", type=int_range(1, 1024), default=1, help="torch threads per trial")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument(
        "--report",
        action="store_true",
        help="run no trial: write the outputs from the studies as they stand (e.g. while "
        "workers elsewhere tune)",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    return Options(
        a.dataset,
        tuple(a.models),
        a.trials,
        a.quick,
        a.jobs,
        a.executor,
        a.ray_address,
        a.storage,
        a.results,
        a.threads,
        a.quiet,
        a.report,
    )


# --------------------------------------------------------------------------- planning


def folder(opts: Options, short: str) -> Path:
    return opts.results / short / ("tuning_quick" if opts.quick else "tuning")


def plan(opts: Options, proc: Path, short: str) -> tuple[Path, dict[str, dict[str, Any]], int]:
    """The config file, each model's fixed overrides (the dataset's: e.g. no image side
    without images; the quick settings), and the trials per model."""
    cfg_path = config_for(proc)
    models = list(MODELS)
    if opts.models:
        unknown = sorted(set(opts.models) - set(models))
        if unknown:
            raise BenchmarkError(f"--models {unknown}: not in Table 2 ({models})")
        models = [m for m in models if m in opts.models]
    kept, _ = without_images(models, cfg_path, proc)
    extra = QUICK if opts.quick else {}
    for m in kept:
        search_space(cfg_path, m)  # a broken search space is refused before any work
    tuning = load_tuning(cfg_path)
    trials = opts.trials or (QUICK_TRIALS if opts.quick else tuning.trials)
    return cfg_path, {m: {**ov, **extra} for m, ov in kept.items()}, trials


def worker_task(
    opts: Options,
    cfg_path: Path,
    proc: Path,
    model: str,
    overrides: dict[str, Any],
    storage: str,
    runs: Path,
    trials: int,
    out: Path,
    device: str = "cpu",
) -> Task:
    """The study worker of ``model`` as an executor task (``device``: its runs'
    ``train.device``, so that Ray gives a CUDA study a GPU)."""
    import json

    argv = [
        sys.executable,
        "-P",
        "-m",
        "mdr.cli",
        "tune",
        "--config",
        str(cfg_path),
        "--data",
        str(proc),
        "--model",
        model,
        "--storage",
        storage,
        "--study",
        model,
        "--trials",
        str(trials),
        "--runs",
        str(runs),
        "--threads",
        str(opts.threads),
    ]
    for k, v in overrides.items():
        argv += ["--set", f"{k}={json.dumps(v)}"]
    return Task(
        f"tune {model}",
        tuple(argv),
        out / "logs" / f"{model}.log",
        cpus=opts.threads,
        device=device,
    )


# --------------------------------------------------------------------------- reporting


def study_rows(study: Any, keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per counted trial, in the order they were asked."""
    from mdr.training.tuning import counted_trials

    rows = []
    for i, t in enumerate(counted_trials(study)):
        row: dict[str, Any] = {"trial": i}
        row.update({k: t.params.get(k) for k in keys})
        value = t.value if t.value is not None else t.user_attrs.get("best_valid_gauc")
        row["valid_gauc"] = value if value is None or math.isfinite(value) else None
        row["best_epoch"] = t.user_attrs.get("best_epoch")
        row["epochs_run"] = t.user_attrs.get("epochs_run")
        row["state"] = t.state.name.lower()
        rows.append(row)
    return rows


def chosen(rows: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any] | None:
    """The best complete trial by validation GAUC (ties: the earlier trial)."""
    complete = [r for r in rows if r["state"] == "complete" and r["valid_gauc"] is not None]
    if not complete:
        return None
    best = max(complete, key=lambda r: (r["valid_gauc"], -r["trial"]))
    return {
        "trial": best["trial"],
        "valid_gauc": best["valid_gauc"],
        "overrides": {k: best[k] for k in keys},
    }


def patience_losses(study: Any, patience: int) -> tuple[float, int, int]:
    """On the complete trials' validation curves: the mean validation GAUC that stopping
    after ``patience`` epochs without improvement would have lost, the number of trials
    where it would have lost any, and the number of curves."""
    from mdr.training.tuning import counted_trials

    losses = []
    for t in counted_trials(study):
        if t.state.name != "COMPLETE" or not t.intermediate_values:
            continue
        curve = [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
        best, since, seen = -math.inf, 0, -math.inf
        for v in curve:
            if v > best:
                best, since = v, 0
            else:
                since += 1
            seen = best
            if since >= patience:
                break
        losses.append(max(curve) - seen)
    if not losses:
        return math.nan, 0, 0
    return sum(losses) / len(losses), sum(x > 0 for x in losses), len(losses)


def summary(studies: dict[str, Any], rows: dict[str, list[dict]], budget: int) -> tuple[str, dict]:
    """tuning.md and the manifest's per-model figures (``budget``: the trials per model)."""
    table, info = [], {}
    for model, study in studies.items():
        from mdr.training.tuning import counted_trials

        trials = counted_trials(study)
        states = [r["state"] for r in rows[model]]
        cpu = sum(float(t.user_attrs.get("cpu_s") or 0.0) for t in trials)
        capped = sum(bool(t.user_attrs.get("hit_epoch_cap")) for t in trials)
        best = chosen(rows[model], [])
        rec: dict[str, Any] = {
            "model": model,
            "finished": "yes" if len(trials) >= budget else f"no: {len(trials)} of {budget}",
            "trials": len(trials),
            "complete": states.count("complete"),
            "pruned": states.count("pruned"),
            "failed": states.count("fail"),
            "best_valid_gauc": best["valid_gauc"] if best else None,
            "best_trial": best["trial"] if best else None,
            "cpu_min": round(cpu / 60, 1),
            "hit_epoch_cap": capped,
        }
        for p in PATIENCES:
            loss, hurt, n = patience_losses(study, p)
            rec[f"patience{p}_loss"] = None if math.isnan(loss) else round(loss, 5)
            rec[f"patience{p}_hurt"] = f"{hurt}/{n}"
        table.append(rec)
        info[model] = rec
    cols = list(table[0]) if table else []
    md = [
        "# Tuning on validation only",
        "",
        "Each model's study: whether it has its trials (a study under way is not in "
        "best.yaml), trials counted (complete, pruned by the median rule, failed "
        "by the run itself), its best validation GAUC and trial, the CPU time of all its "
        "trials (from the study file), the trials that reached the epoch cap (must be 0), "
        "and, on the complete trials' validation curves, the mean validation GAUC a "
        "patience of 3 or 5 epochs would have lost and in how many trials.",
        "",
        to_markdown(table, cols),
    ]
    return "\n".join(md), info


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    t0 = time.perf_counter()
    proc = resolve(opts.dataset, progress=not opts.quiet)
    short = dataset_name(opts.dataset)
    cfg_path, models, trials = plan(opts, proc, short)
    out = folder(opts, short)
    storage = opts.storage or str(out / "studies.journal")
    runs = out / "runs"
    if opts.report:
        return report(opts, cfg_path, proc, short, storage, trials, t0)
    configs = {m: load_run_config(cfg_path, models[m], model=m) for m in models}
    order = sorted(models, key=lambda m: -expected_cost(configs[m]))
    tasks = [
        worker_task(
            opts, cfg_path, proc, m, models[m], storage, runs, trials, out, configs[m].train.device
        )
        for m in order
    ]
    print(
        f"tuning {len(tasks)} model(s) x {trials} trials on {short} "
        f"({opts.executor} executor, {opts.jobs} job(s)); studies in {storage}"
    )
    try:
        make_executor(opts.executor, opts.jobs, opts.ray_address).run(tasks)
    except (KeyboardInterrupt, BenchmarkError):
        # the finished trials are in the storage: show them (if any), and how to go on
        if "://" in storage or Path(storage).is_file():
            report(opts, cfg_path, proc, short, storage, trials, t0)
        print(
            "tuning stopped before every study had its trials; the same command resumes it",
            file=sys.stderr,
        )
        raise
    return report(opts, cfg_path, proc, short, storage, trials, t0)


def report(
    opts: Options, cfg_path: Path, proc: Path, short: str, storage: str, trials: int, t0: float
) -> int:
    """Write every output from the studies in ``storage`` of the dataset's models."""
    import optuna

    from mdr.training.tuning import storage_of

    out = folder(opts, short)
    if "://" not in storage and not Path(storage).is_file():
        raise BenchmarkError(f"{storage}: no studies yet - run python -m benchmarks.tune first")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage_of(storage)
    names = set(optuna.get_all_study_names(storage=store))
    every, _ = without_images(list(MODELS), cfg_path, proc)
    studies, rows, best = {}, {}, {}
    for m in every:  # Table 2's order
        if m not in names:
            continue
        # loaded, not opened: a report appends nothing to the storage
        study = studies[m] = optuna.load_study(study_name=m, storage=store)
        keys = list(search_space(cfg_path, m))
        rows[m] = study_rows(study, keys)
        mio.write_text(out / f"{m}.csv", to_csv(rows[m], ["trial", *keys, *CSV_TAIL]))
        pick = chosen(rows[m], keys)
        if pick is not None and len(rows[m]) >= trials:  # a row per counted trial
            best[m] = pick
    mio.write_text(
        out / "best.yaml",
        "# the chosen overrides per model (python -m benchmarks.tune): its best "
        "complete trial by validation GAUC, for the models whose study has its "
        f"{trials} trials\n" + yaml.safe_dump(best, sort_keys=False),
    )
    md, info = summary(studies, rows, trials)
    mio.write_text(out / "tuning.md", md)
    mio.write_json(
        out / "tuning.manifest.json",
        manifest(
            dataset=short,
            data=str(proc),
            config=str(cfg_path),
            storage=storage,
            trials_per_model=trials,
            models=info,
            tuning=dict(load_tuning(cfg_path).fixed),
            ran_trials=not opts.report,  # --report: wall_time_s is the report's alone
            wall_time_s=round(time.perf_counter() - t0, 1),
        ),
    )
    print(md)
    return 0


if __name__ == "__main__":
    run_script("tune", main)
