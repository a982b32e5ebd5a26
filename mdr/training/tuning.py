"""Tuning on validation only: one Optuna study per model, its trials trained by the one
trainer on the data's validation-only view.

A trial samples the model's search space (:func:`mdr.config.search_space`, the
``search:`` section of its config file) with a seeded TPE sampler, trains the model on
the tuning seed with the sampled overrides into its own run folder, reports the
validation GAUC of every epoch to a median pruner (a trial whose curve falls below the
median of earlier trials at the same epoch stops, so the budget goes to promising
settings), and scores its best validation GAUC. The data it trains on holds no test
behaviour and no test list (:meth:`mdr.data.dataset.ProcessedDataset.validation_only`):
nothing a trial does can depend on the test.

The study lives in a storage that several processes and machines can share: by
default an Optuna journal file (its own file lock, safe on a shared filesystem), or any
Optuna RDB URL. A worker (:func:`run_worker`) runs trials one after another until the
study holds ``trials`` counted trials (complete, pruned, or failed by the run itself,
e.g. a diverged one); several workers on one study each ask the storage for a new trial,
so no two run the same one (with W workers the count may overshoot by at most W - 1).

Interrupted trials are redone, not lost: a worker that is interrupted marks its trial
failed with ``interrupted`` and queues the same parameters again; a worker killed outright
leaves its trial RUNNING with its host and pid, and the next worker on that host that
finds the pid gone does the same. The queued trial trains into the same run folder and
resumes its checkpoint. With one worker the sampler is reseeded before each trial from
the number of counted trials, so an interrupted and resumed study proposes exactly the
trials an uninterrupted one does.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mdr.config import RunConfig, SearchParam, config_hash, load_run_config, to_dict

MONITOR = "valid/gauc"
TPE_STARTUP = 5  # random trials before TPE models the space
PRUNE_STARTUP = 5  # complete trials before the pruner judges
PRUNE_WARMUP = 5  # epochs a trial always gets


@dataclass(frozen=True)
class StudySpec:
    """Everything a worker needs to run trials of one model's study."""

    config: Path  # the config file: the model's config, search space and tuning section
    model: str  # a model name of the config file
    data: Path  # the prepared folder (its validation-only view is what trials see)
    storage: str  # an Optuna storage URL, or a journal file path
    study: str  # the study's name in the storage
    trials: int  # counted trials the study should hold
    seed: int  # the tuning seed: every trial trains on it; the sampler derives from it
    runs: Path  # where the trials' run folders go
    dataset: str  # the dataset's short name (part of a run folder's identity)
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed for every trial


def storage_of(url: str) -> Any:
    """An Optuna storage: a journal file (a path) or an RDB URL (``sqlite:///...``,
    ``postgresql://...``)."""
    import optuna

    if "://" in url:
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_study(spec: StudySpec) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=spec.study,
        storage=storage_of(spec.storage),
        direction="maximize",
        load_if_exists=True,
        sampler=_sampler(spec, 0),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNE_STARTUP, n_warmup_steps=PRUNE_WARMUP
        ),
    )


def _sampler(spec: StudySpec, counted: int) -> Any:
    """TPE seeded from (tuning seed, study, trials so far): reproducible across restarts,
    and different studies do not propose the same first points."""
    import optuna

    from mdr.seeding import rng

    seed = int(rng(spec.seed, "tpe", spec.study, counted).integers(2**31))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP)


# --------------------------------------------------------------------------- trials


INTERRUPTED = "interrupted_trials"  # study attribute: numbers of the trials that are redone


def counted_trials(study: Any) -> list[Any]:
    """The trials that count towards the budget, in the order they were asked (row ``i``
    of the trials table): complete, pruned, or failed by the run itself, not those that
    were interrupted and are redone."""
    import optuna

    redone = set(study.user_attrs.get(INTERRUPTED, []))
    ok = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL,
    )
    return [
        t
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        if t.state in ok and t.number not in redone
    ]


def sample(trial: Any, space: Mapping[str, SearchParam]) -> dict[str, Any]:
    """One point of the search space as dotted config overrides."""
    out: dict[str, Any] = {}
    for key, p in space.items():
        if p.choices is not None:
            out[key] = trial.suggest_categorical(key, list(p.choices))
        elif p.is_int:
            out[key] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log)
        else:
            out[key] = trial.suggest_float(key, float(p.low), float(p.high), log=p.log)
    return out


def trial_config(spec: StudySpec, params: Mapping[str, Any]) -> RunConfig:
    """The run config of a trial: the model's config, the study's fixed overrides, then the
    sampled parameters, on the tuning seed."""
    return load_run_config(
        spec.config, {**spec.overrides, **params, "seed": spec.seed}, model=spec.model
    )


def trial_run_dir(spec: StudySpec, cfg: RunConfig) -> Path:
    key = config_hash(
        {
            "model": spec.model,
            "config": to_dict(cfg),
            "dataset": spec.dataset,
            "view": "validation-only",
        }
    )
    return spec.runs / f"{spec.model}-{key}-s{cfg.seed}"


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def run_trial(
    spec: StudySpec, trial: Any, space: Mapping[str, SearchParam], progress: bool = False
) -> float:
    """Train one trial; returns its best validation GAUC (raises ``optuna.TrialPruned``)."""
    import optuna

    from mdr.training.train import train

    params = sample(trial, space)
    cfg = trial_config(spec, params)
    run = trial_run_dir(spec, cfg)
    trial.set_user_attr("run", run.name)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    best = {"value": float("-inf"), "epoch": 0, "epochs": 0}
    reported: set[int] = set()
    cpu0, wall0 = time.process_time(), time.perf_counter()

    def seen(line: dict[str, Any]) -> None:
        if line.get("stage") == "pretrain" or MONITOR not in line:
            return
        epoch, value = int(line["epoch"]), float(line[MONITOR])
        if epoch in reported:
            return
        reported.add(epoch)
        best["epochs"] = epoch
        if value > best["value"]:
            best["value"], best["epoch"] = value, epoch
        trial.report(value, step=epoch)

    def on_epoch(line: dict[str, Any]) -> None:
        seen(line)
        if trial.should_prune():
            _record(trial, best, cpu0, wall0, hit_cap=False)
            raise optuna.TrialPruned(f"epoch {line['epoch']}: below the median")

    for line in _read_lines(run / "metrics.jsonl"):  # a resumed trial reports its past
        seen(line)
    result = train(
        cfg, spec.data, run, resume=True, progress=progress, on_epoch=on_epoch, validation_only=True
    )
    for line in _read_lines(run / "metrics.jsonl"):  # a run that was already finished
        seen(line)
    _record(trial, best, cpu0, wall0, hit_cap=bool(result.get("hit_epoch_cap")))
    return float(result["best_valid_gauc"])


def _record(trial: Any, best: dict[str, Any], cpu0: float, wall0: float, hit_cap: bool) -> None:
    trial.set_user_attr("best_valid_gauc", best["value"])
    trial.set_user_attr("best_epoch", best["epoch"])
    trial.set_user_attr("epochs_run", best["epochs"])
    trial.set_user_attr("hit_epoch_cap", hit_cap)
    trial.set_user_attr("cpu_s", round(time.process_time() - cpu0, 1))
    trial.set_user_attr("wall_s", round(time.perf_counter() - wall0, 1))


# --------------------------------------------------------------------------- workers


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def requeue_dead(study: Any) -> int:
    """RUNNING trials of workers on this host whose process is gone: failed as
    ``interrupted`` and their parameters queued again. Returns how many."""
    import optuna

    host, n = socket.gethostname(), 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or pid is None or _pid_alive(int(pid)):
            continue
        _redo(study, t.number, t.params)
        n += 1
    return n


def _redo(study: Any, number: int, params: dict[str, Any]) -> None:
    """Fail an interrupted trial without counting it, and queue its parameters again."""
    import optuna

    study.set_user_attr(INTERRUPTED, [*study.user_attrs.get(INTERRUPTED, []), number])
    study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial(params, skip_if_exists=False)


def run_worker(
    spec: StudySpec,
    space: Mapping[str, SearchParam],
    progress: bool = False,
    on_trial: Callable[[int, str], None] | None = None,
) -> int:
    """Run trials of ``spec``'s study until it holds ``spec.trials`` counted trials;
    returns how many this worker ran. ``on_trial(index, state)`` after each."""
    import optuna

    from mdr.config import ConfigError
    from mdr.training.runs import RunError

    study = open_study(spec)
    requeue_dead(study)
    ran = 0
    while True:
        done = counted_trials(study)
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if len(done) + len(running) >= spec.trials:
            return ran
        study.sampler = _sampler(spec, len(done))
        trial = study.ask()
        try:
            value = run_trial(spec, trial, space, progress)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            state = "pruned"
        except RunError as e:  # the run itself failed (e.g. diverged): a result, counted
            trial.set_user_attr("error", str(e)[:500])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            state = "failed"
        except ConfigError as e:  # a search space that builds no valid config: stop here
            trial.set_user_attr("error", str(e)[:500])
            study.set_user_attr(INTERRUPTED, [*study.user_attrs.get(INTERRUPTED, []), trial.number])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        except BaseException:  # interrupted: redone by the next worker, not counted
            _redo(study, trial.number, trial.params)
            raise
        else:
            study.tell(trial, value)
            state = "complete"
        ran += 1
        if on_trial is not None:
            on_trial(len(done), state)


__all__ = [
    "INTERRUPTED",
    "MONITOR",
    "StudySpec",
    "counted_trials",
    "open_study",
    "requeue_dead",
    "run_trial",
    "run_worker",
    "sample",
    "storage_of",
    "trial_config",
    "trial_run_dir",
]
