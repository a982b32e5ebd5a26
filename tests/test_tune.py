"""The tuner (mdr.training.tuning, benchmarks.tune): validation only, resumable, the same
trials for the same data whatever the test lists hold."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.common import BenchmarkError
from mdr.data.dataset import TEST, ProcessedDataset
from mdr.data.parse import DataError
from tests.helpers import CONFIG

pytest.importorskip("optuna")
QUICK = ["--dataset", "synthetic-tiny", "--quick", "-q"]


def _tune(results: Path, *args: str) -> None:
    from benchmarks.paper import tune

    assert tune.main([*QUICK, "--results", str(results), *args]) == 0


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_validation_view_holds_no_test(tiny_proc: Path) -> None:
    from mdr.data.batches import eval_samples, user_seen

    full = ProcessedDataset.open(tiny_proc)
    view = full.validation_only()
    assert set(view.eval_lists) == {"valid"} and not view.has_test
    assert not np.any(view.behaviors["split"] == TEST)
    assert len(view.behaviors["user"]) == len(full.behaviors["user"]) - full.n_users
    assert eval_samples(view, "valid")["cands"].shape == full.eval_lists["valid"].shape
    for read in (lambda: eval_samples(view, "test"), lambda: user_seen(view, "test")):
        with pytest.raises(DataError, match="holds no test split"):
            read()


def test_quick_tuning_writes_every_table_and_a_best_yaml(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDR_DATA", str(data_root))
    _tune(tmp_path, "--models", "deepfm", "mdr")
    out = tmp_path / "synthetic-tiny" / "tuning_quick"
    rows = _rows(out / "mdr.csv")
    assert [r["trial"] for r in rows] == ["0", "1"]
    assert list(rows[0])[:2] == ["trial", "train.lr"] and list(rows[0])[-4:] == [
        "valid_gauc",
        "best_epoch",
        "epochs_run",
        "state",
    ]
    assert {r["state"] for r in rows} <= {"complete", "pruned", "fail"}
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert set(best) == {"deepfm", "mdr"}
    assert "model.slots.*.dim" in best["mdr"]["overrides"]
    assert best["deepfm"]["valid_gauc"] == max(
        float(r["valid_gauc"]) for r in _rows(out / "deepfm.csv")
    )
    md = (out / "tuning.md").read_text()
    assert "| mdr | yes | 2 |" in md and "cpu_min" in md
    # every trial trained on the validation-only view: its run scored no test
    for run in (out / "runs").iterdir():
        if (run / "test.json").is_file():
            assert '"test": "none: validation-only data"' in (run / "test.json").read_text()
    # rerunning resumes the studies: nothing more to run, the same tables
    before = (out / "mdr.csv").read_bytes()
    _tune(tmp_path, "--models", "deepfm", "mdr")
    assert (out / "mdr.csv").read_bytes() == before
    # the tuned table trains each model's chosen settings on the tuned protocol's seeds
    from benchmarks.paper import table2

    tuned = ["--dataset", "synthetic-tiny", "--quick", "--tuned", "-q", "--results", str(tmp_path)]
    assert table2.main([*tuned, "--models", "deepfm", "mdr"]) == 0
    table = tmp_path / "synthetic-tiny" / "table2_quick_tuned.csv"
    assert {r["model"] for r in _rows(table)} == {"deepfm", "mdr"}
    runs = sorted((tmp_path / "synthetic-tiny" / "runs").glob("mdr-*-s*"))
    runs = [r for r in runs if r.is_dir()]
    assert [r.name.rsplit("-", 1)[1] for r in runs] == ["s1"]  # never the tuning seed 0
    cfg = yaml.safe_load((runs[0] / "config.yaml").read_text())
    assert cfg["train"]["lr"] == best["mdr"]["overrides"]["train.lr"]
    assert cfg["train"]["patience"] == 10  # the tuned protocol's fixed patience
    assert cfg["provenance"]["flush_denormal"] is True  # and its subnormal-float mode
    # a dataset that was never tuned is one line naming the missing file
    (out / "best.yaml").rename(out / "best.yaml.moved")
    with pytest.raises(BenchmarkError, match=r"best\.yaml: not found - run"):
        table2.main([*tuned, "--models", "deepfm"])


def test_every_study_is_reported_and_one_under_way_is_not_chosen(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tuning a second model keeps the first one's choice; a study short of its trials is
    reported as under way and kept out of best.yaml; --report runs no trial; an
    interrupted tuning still writes the outputs."""
    from benchmarks.paper import table2, tune

    monkeypatch.setenv("MDR_DATA", str(data_root))
    out = tmp_path / "synthetic-tiny" / "tuning_quick"
    with pytest.raises(BenchmarkError, match=r"studies\.journal: no studies yet"):
        _tune(tmp_path, "--report")
    _tune(tmp_path, "--models", "pnn")
    _tune(tmp_path, "--models", "abae", "--trials", "1")  # stopped after one of two
    journal = (out / "studies.journal").read_bytes()
    _tune(tmp_path, "--report")
    assert (out / "studies.journal").read_bytes() == journal  # no trial ran
    assert set(yaml.safe_load((out / "best.yaml").read_text())) == {"pnn"}
    assert len(_rows(out / "abae.csv")) == 1 and len(_rows(out / "pnn.csv")) == 2
    md = (out / "tuning.md").read_text()
    assert "| pnn | yes | 2 |" in md and "| abae | no: 1 of 2 | 1 |" in md
    tuned = ["--dataset", "synthetic-tiny", "--quick", "--tuned", "-q", "--results", str(tmp_path)]
    with pytest.raises(BenchmarkError, match="no tuned settings for 'abae'"):
        table2.main([*tuned, "--models", "abae"])

    class Interrupted:
        def run(self, tasks) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(tune, "make_executor", lambda *a: Interrupted())
    (out / "tuning.md").unlink()
    with pytest.raises(KeyboardInterrupt):
        _tune(tmp_path, "--models", "abae")
    assert "| abae | no: 1 of 2 | 1 |" in (out / "tuning.md").read_text()


def test_other_test_lists_give_the_same_trials(
    tmp_path: Path, tiny_proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test set is out of reach: replace every test list AND every test behaviour by
    other items, and the tuning trials are the same, byte for byte."""
    from mdr.io import write_npz

    other = tmp_path / "other"
    shutil.copytree(tiny_proc, other)
    ds = ProcessedDataset.open(other)
    gen = np.random.default_rng(7)
    lists = dict(ds.eval_lists)
    lists["test"] = gen.integers(0, ds.n_items, lists["test"].shape).astype(np.int32)
    write_npz(other / "eval_lists.npz", **lists)
    b = dict(ds.behaviors)
    test = b["split"] == TEST
    b["item"] = b["item"].copy()
    b["item"][test] = gen.integers(0, ds.n_items, int(test.sum())).astype(b["item"].dtype)
    write_npz(other / "behaviors.npz", **b)
    from benchmarks.paper import tune

    for name, proc in (("same", tiny_proc), ("other", other)):
        assert (
            tune.main(
                [
                    "--dataset",
                    str(proc),
                    "--quick",
                    "-q",
                    "--models",
                    "mdr",
                    "pnn",
                    "--results",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
    for model in ("mdr", "pnn"):
        a = (tmp_path / "same" / "synthetic-tiny" / "tuning_quick" / f"{model}.csv").read_bytes()
        b_ = tmp_path / "other" / "synthetic-tiny" / "tuning_quick" / f"{model}.csv"
        assert a == b_.read_bytes(), model


def test_an_interrupted_study_resumes_to_the_same_trials(
    tmp_path: Path, tiny_proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker interrupted in its second trial redoes that trial (same parameters, the
    run folder resumed) and the study ends with the trials of an uninterrupted one."""
    from benchmarks.paper.tune import QUICK as SETTINGS
    from mdr.config import search_space
    from mdr.training import train as train_mod
    from mdr.training import tuning

    def spec(name: str) -> tuning.StudySpec:
        return tuning.StudySpec(
            CONFIG,
            "abae",
            tiny_proc,
            str(tmp_path / name / "s.journal"),
            "abae",
            3,
            0,
            tmp_path / name / "runs",
            "synthetic-tiny",
            dict(SETTINGS),
        )

    space = search_space(CONFIG, "abae")
    tuning.run_worker(spec("whole"), space)
    real, calls = train_mod.train, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second trial: one epoch, then Ctrl-C

            def stop(line):
                kwargs["on_epoch"](line)
                raise KeyboardInterrupt

            return real(*args, **{**kwargs, "on_epoch": stop})
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train", flaky)
    with pytest.raises(KeyboardInterrupt):
        tuning.run_worker(spec("cut"), space)
    monkeypatch.setattr(train_mod, "train", real)
    tuning.run_worker(spec("cut"), space)

    def trials(name: str) -> list[tuple]:
        study = tuning.open_study(spec(name))
        return [(t.params, t.value, t.state.name) for t in tuning.counted_trials(study)]

    assert trials("cut") == trials("whole")
