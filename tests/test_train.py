"""Trainer, evaluation and registry tests on a tiny prepared folder and a tiny test model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mdr import metrics
from mdr.config import ConfigError, RunConfig, apply_overrides, load_yaml
from mdr.data.batches import eval_samples, user_seen
from mdr.data.dataset import ProcessedDataset
from mdr.models.base import ItemFeatures, RecModel
from mdr.training import evaluate as evaluate_mod
from mdr.training.evaluate import evaluate_model
from mdr.training.registry import build_model, known_models, register
from mdr.training.runs import RunError, RunFolder, evaluate_run, load_run
from mdr.training.tasks import data_fingerprint, item_features
from mdr.training.train import train
from tests.fixtures_proc import random_sequences, write_tiny_proc

TIME_KEYS = {"train_s", "valid_s", "epoch_s", "elapsed_s", "samples_per_s"}


# --------------------------------------------------------------------------- test models


class TinyRec(nn.Module):
    """Id embeddings, mean-pooled history (+ user), dot product; dropout uses the torch RNG."""

    def __init__(self, cfg: RunConfig, features: ItemFeatures) -> None:
        super().__init__()
        d = cfg.model.id_dim
        self.item = nn.Embedding(features.n_items, d)
        self.user = nn.Embedding(features.n_users, d)
        self.drop = nn.Dropout(0.3)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def encode_items(self, items: Tensor) -> Tensor:
        return self.item(items)  # (n, D)

    def score(
        self,
        reps: Tensor,
        hist: Tensor,
        hist_mask: Tensor,
        cands: Tensor,
        user: Tensor | None = None,
    ) -> Tensor:
        m = hist_mask.unsqueeze(-1).float()  # (B, H, 1)
        q = (reps[hist] * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
        if user is not None:
            q = q + self.user(user)
        q = self.drop(q)
        return (reps[cands] * q.unsqueeze(1)).sum(-1)  # (B, C)

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        return self.score(
            self.item.weight,
            batch["hist"],
            batch["hist_mask"],
            batch["cand"].unsqueeze(1),
            batch["user"],
        )[:, 0]

    def target(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["label"]

    def calculate_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        self.steps += 1
        bce = F.binary_cross_entropy_with_logits(self.predict(batch), self.target(batch))
        l2 = 1e-4 * self.item.weight.pow(2).sum(1).mean()
        return {"loss": bce + l2, "bce": bce.detach(), "l2": l2.detach()}


class SaboteurRec(TinyRec):
    """Learns for its first 6 steps, then learns the flipped labels: validation gets worse."""

    def target(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["label"] if int(self.steps) <= 6 else 1.0 - batch["label"]


register("tiny_test", lambda cfg, f: TinyRec(cfg, f), replace=True)
register("saboteur_test", lambda cfg, f: SaboteurRec(cfg, f), replace=True)


def make_cfg(**overrides: Any) -> RunConfig:
    base = {
        "model.name": "tiny_test",
        "model.id_dim": 8,
        "train.epochs": 3,
        "train.batch_size": 16,
        "train.lr": 0.05,
        "train.patience": 10,
        "train.max_hist": 5,
        "train.eval_batch_size": 8,
        "seed": 3,
    }
    return apply_overrides(RunConfig(), base | overrides)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    seqs = random_sequences(40, 30, seed=1, min_len=5, max_len=10)
    return write_tiny_proc(tmp_path_factory.mktemp("proc"), seqs, n_items=30, n_neg_eval=9)


def lines(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def read_test_json(run: Path) -> dict[str, Any]:
    return json.loads((run / "test.json").read_text())


# --------------------------------------------------------------------------- registry


def test_registry_names_and_unknown_model() -> None:
    assert {
        "mdr",
        "beta_vae",
        "abae",
        "din_pp",
        "din",
        "tiny_test",
        "image_factors",
        "wide_deep",
        "pnn",
        "deepfm",
    } <= set(known_models())  # the last 3: entry points
    with pytest.raises(ConfigError, match=r"unknown model 'nope'.*abae.*mdr"):
        build_model("nope", RunConfig(), ItemFeatures(n_items=3, n_users=2))
    with pytest.raises(ValueError, match="already registered"):
        register("mdr", lambda cfg, f: nn.Linear(1, 1))


def test_item_features(data: Path) -> None:
    ds = ProcessedDataset.open(data)
    f = item_features(ds)
    assert (f.n_items, f.n_users, f.n_categories) == (30, 40, 2)
    assert f.images is not None and f.images.dtype == torch.uint8
    assert tuple(f.images.shape) == (30, 16, 16, 3)
    assert f.tokens is not None and f.tokens.dtype == torch.long and f.tokens.shape == (30, 6)
    assert f.lengths is not None and f.lengths.tolist() == ds.text["lengths"].tolist()
    assert f.word_vectors is not None and f.word_vectors.dtype == torch.float32
    assert f.image_mask is not None and f.image_mask.dtype == torch.bool
    assert f.label_classes == {"colour": 3, "shape": 2}
    assert f.labels["colour"].tolist() == ds.labels["colour"].tolist()
    assert f.category is not None and f.category.tolist() == ds.item_category.tolist()
    assert isinstance(TinyRec(make_cfg(), f), RecModel)


# --------------------------------------------------------------------------- training runs


def test_run_folder_contents(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg()
    result = train(cfg, data, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt", "test.json", "DONE"):
        assert (run / name).is_file(), name
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    n_pos = sum(len(s) - 3 for s in ProcessedDataset.open(data).user_sequences)
    steps = -(-2 * n_pos // 16)
    assert [r["step"] for r in rows] == [steps, 2 * steps, 3 * steps]
    for r in rows:
        assert {
            "train/loss",
            "train/bce",
            "train/l2",
            "valid/gauc",
            "valid/auc",
            "valid/ndcg@10",
            "valid/hr@10",
            "best_epoch",
        } <= set(r)
        assert set(r) >= TIME_KEYS and r["samples_per_s"] > 0 and r["train_samples"] == 2 * n_pos
        assert r["train/loss"] == pytest.approx(r["train/bce"] + r["train/l2"], rel=1e-5)
    assert result == read_test_json(run)
    for key in ("gauc", "auc", "ndcg@10", "hr@10", "full_ndcg@10", "full_hr@10"):
        assert 0.0 <= result[key] <= 1.0
    assert result["dataset"] == "tiny-fixture" and result["n_users"] == 40
    gaucs = [r["valid/gauc"] for r in rows]
    assert result["best_epoch"] == int(np.argmax(gaucs)) + 1
    assert result["gauc"] > 0.6  # the fixture's structure is learnable
    # config.yaml: resolved config + provenance, readable back
    back, provenance = RunFolder(run).read_config()
    assert back == cfg and Path(provenance["data"]) == data.resolve()
    ds = ProcessedDataset.open(data)
    assert provenance["data_fingerprint"] == data_fingerprint(ds.manifest)
    assert provenance["task"] == "recommendation"
    text = (run / "config.yaml").read_text()
    assert "git_commit:" in text and "torch:" in text and "dataset: tiny-fixture" in text
    assert "seed: 3" in text


def test_same_seed_same_numbers(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg(**{"train.epochs": 2})
    a = train(cfg, data, tmp_path / "a", progress=False)
    b = train(cfg, data, tmp_path / "b", progress=False)
    assert a == b and lines(tmp_path / "a") == lines(tmp_path / "b")
    c = train(apply_overrides(cfg, {"seed": 4}), data, tmp_path / "c", progress=False)
    assert lines(tmp_path / "c") != lines(tmp_path / "a")
    assert c["gauc"] != a["gauc"] or c["ndcg@10"] != a["ndcg@10"]


class Killed(Exception):
    pass


def kill_at(epoch: int, step_in_epoch: int, steps_per_epoch: int) -> Any:
    def hook(e: int, step: int) -> None:
        if e == epoch and step == (epoch - 1) * steps_per_epoch + step_in_epoch:
            raise Killed

    return hook


def test_resume_gives_exactly_the_uninterrupted_metrics(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg()
    full = train(cfg, data, tmp_path / "full", progress=False)
    steps = lines(tmp_path / "full")[0]["step"]

    # stop after epoch 1 (a finished 1-epoch run), then resume to 3 epochs
    one = apply_overrides(cfg, {"train.epochs": 1})
    train(one, data, tmp_path / "r1", progress=False)
    assert (tmp_path / "r1" / "DONE").is_file()
    resumed = train(cfg, data, tmp_path / "r1", resume=True, progress=False)
    assert resumed == full
    assert lines(tmp_path / "r1") == lines(tmp_path / "full")

    # killed in the middle of epoch 2 (after epoch 1's checkpoint), then resumed
    with pytest.raises(Killed):
        train(cfg, data, tmp_path / "r2", progress=False, on_step=kill_at(2, 3, steps))
    assert not (tmp_path / "r2" / "DONE").is_file()
    assert [r["epoch"] for r in lines(tmp_path / "r2")] == [1]
    resumed = train(cfg, data, tmp_path / "r2", resume=True, progress=False)
    assert resumed == full
    assert lines(tmp_path / "r2") == lines(tmp_path / "full")  # no duplicate epoch lines

    # killed after the metrics line of epoch 3 was written but before its checkpoint
    (tmp_path / "r3").mkdir()
    with pytest.raises(Killed):
        train(cfg, data, tmp_path / "r3", progress=False, on_step=kill_at(3, 1, steps))
    with (tmp_path / "r3" / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"epoch": 3, "step": 999}) + "\n" + '{"epoch": 4, "ste')
    assert train(cfg, data, tmp_path / "r3", resume=True, progress=False) == full
    assert lines(tmp_path / "r3") == lines(tmp_path / "full")

    # resuming a finished run returns its result without training
    assert train(cfg, data, tmp_path / "r3", resume=True, progress=False) == full


def test_resume_refuses_a_different_config(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg(**{"train.epochs": 1})
    train(cfg, data, tmp_path / "run", progress=False)
    with pytest.raises(RunError, match=r"different config \(train.lr differ"):
        train(
            apply_overrides(cfg, {"train.lr": 0.1, "train.epochs": 2}),
            data,
            tmp_path / "run",
            resume=True,
            progress=False,
        )


def test_refuses_to_overwrite_unless_asked(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg(**{"train.epochs": 1})
    first = train(cfg, data, tmp_path / "run", progress=False)
    with pytest.raises(RunError, match="finished run"):
        train(cfg, data, tmp_path / "run", progress=False)
    again = train(cfg, data, tmp_path / "run", progress=False, overwrite=True)
    assert again == first

    def kill_in_epoch_2(epoch: int, step: int) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(make_cfg(), data, tmp_path / "started", progress=False, on_step=kill_in_epoch_2)
    with pytest.raises(RunError, match="started run"):
        train(make_cfg(), data, tmp_path / "started", progress=False)


@pytest.mark.parametrize("content", ["garbage", "foreign", "pickle"])
def test_corrupt_or_foreign_checkpoint_is_a_clear_error(
    data: Path, tmp_path: Path, content: str
) -> None:
    cfg = make_cfg(**{"train.epochs": 1})
    run = tmp_path / "run"
    train(cfg, data, run, progress=False)
    ckpt = run / "checkpoint.pt"
    if content == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint at all")
    elif content == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, ckpt)
    else:
        torch.save({"format": "mdr-checkpoint", "obj": Killed()}, ckpt)  # needs full unpickling
    with pytest.raises(RunError, match=r"checkpoint\.pt: not"):
        train(apply_overrides(cfg, {"train.epochs": 2}), data, run, resume=True, progress=False)
    (run / "best.pt").write_bytes(b"junk")
    with pytest.raises(RunError, match=r"best\.pt: not a readable checkpoint"):
        evaluate_run(run, progress=False)


def test_early_stopping_selects_best_epoch_and_tests_best_weights(
    data: Path, tmp_path: Path
) -> None:
    cfg = make_cfg(
        **{
            "model.name": "saboteur_test",
            "train.epochs": 8,
            "train.patience": 2,
            "train.max_steps_per_epoch": 6,
        }
    )
    run = tmp_path / "run"
    result = train(cfg, data, run, progress=False)
    rows = lines(run)
    gaucs = [r["valid/gauc"] for r in rows]
    assert [r["step"] for r in rows] == [6 * (i + 1) for i in range(len(rows))]
    assert result["best_epoch"] == 1 and result["epochs_run"] == 3 and result["stopped_early"]
    assert gaucs[0] > max(gaucs[1:])
    assert result["best_valid_gauc"] == gaucs[0]
    # test.json is the best epoch's model, not the last one
    rescored = evaluate_run(run, split="test", full_ranking=True, progress=False)
    for key in ("gauc", "auc", "ndcg@10", "hr@10", "full_ndcg@10", "full_hr@10"):
        assert rescored[key] == result[key], key
    valid = evaluate_run(run, split="valid", progress=False)
    assert valid["gauc"] == gaucs[0]
    ds = ProcessedDataset.open(data)
    last = SaboteurRec(cfg, item_features(ds))
    last.load_state_dict(torch.load(run / "checkpoint.pt", weights_only=True)["model"])
    assert evaluate_model(last, ds, "valid", 5, 8)["gauc"] == gaucs[-1] != gaucs[0]
    # patience 0 disables early stopping; the selection still uses the best epoch
    never = train(
        apply_overrides(cfg, {"train.patience": 0, "train.epochs": 4}),
        data,
        tmp_path / "never",
        progress=False,
    )
    assert never["epochs_run"] == 4 and never["best_epoch"] == 1 and not never["stopped_early"]


# --------------------------------------------------------------------------- evaluation


def test_full_ranking_matches_brute_force(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = ProcessedDataset.open(data)
    torch.manual_seed(0)
    model = TinyRec(make_cfg(), item_features(ds))
    # blocks of 2 users x 6 items: users and items both split across calls
    monkeypatch.setattr(evaluate_mod, "_FULL_RANK_BLOCK", {"cpu": (2, 6)})
    got = evaluate_model(model, ds, "test", max_hist=5, batch_size=3, full_ranking=True)
    model.eval()
    s = eval_samples(ds, "test", 5)
    with torch.no_grad():
        reps = model.item.weight
        cands = torch.arange(ds.n_items).expand(ds.n_users, -1)
        scores = model.score(
            reps,
            torch.from_numpy(s["hist"]),
            torch.from_numpy(s["hist_mask"]),
            cands,
            torch.from_numpy(s["user"]),
        ).numpy()
        listed = model.score(
            reps,
            torch.from_numpy(s["hist"]),
            torch.from_numpy(s["hist_mask"]),
            torch.from_numpy(s["cands"]),
            torch.from_numpy(s["user"]),
        ).numpy()
    seen = user_seen(ds, "test").toarray()
    pos = s["cands"][:, 0]
    ranks = []
    for u in range(ds.n_users):
        others = np.setdiff1d(np.flatnonzero(~seen[u]), [pos[u]])
        ranks.append(int((scores[u, others] >= scores[u, pos[u]]).sum()))
    expect = metrics.full_rank_metrics(np.array(ranks), 10)
    assert got["full_ndcg@10"] == pytest.approx(expect["ndcg@10"], abs=1e-12)
    assert got["full_hr@10"] == pytest.approx(expect["hr@10"], abs=1e-12)
    sampled = metrics.sampled_list_metrics(listed.astype(np.float64), 10)
    for k, v in sampled.items():
        assert got[k] == pytest.approx(v, abs=1e-6)


def test_evaluate_model_restores_training_mode(data: Path) -> None:
    ds = ProcessedDataset.open(data)
    model = TinyRec(make_cfg(), item_features(ds))
    model.train()
    evaluate_model(model, ds, "valid", 5, 8)
    assert model.training
    model.eval()
    evaluate_model(model, ds, "valid", 5, 8)
    assert not model.training


def test_cuda_unavailable_is_a_clear_error(data: Path, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RunError, match="CUDA is not available"):
        train(make_cfg(**{"train.device": "cuda"}), data, tmp_path / "run", progress=False)


# --------------------------------------------------------------------------- the real model


def test_mdr_one_epoch_smoke(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("mdr.models.mdr", reason="mdr/models/mdr.py not written yet")
    cfg = apply_overrides(
        RunConfig(),
        {
            "train.epochs": 1,
            "train.batch_size": 32,
            "train.max_hist": 5,
            "train.eval_batch_size": 16,
            "model.n_aspects": 4,
            "model.max_text_len": 6,
            "seed": 0,
        },
    )
    result = train(cfg, data, tmp_path / "run", progress=False)
    row = lines(tmp_path / "run")[0]
    assert np.isfinite(row["train/loss"])
    assert 0.0 <= result["gauc"] <= 1.0 and 0.0 <= result["full_hr@10"] <= 1.0


def test_mdr_resume_equality(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("mdr.models.mdr", reason="mdr/models/mdr.py not written yet")
    cfg = apply_overrides(
        RunConfig(),
        {
            "train.epochs": 2,
            "train.batch_size": 32,
            "train.max_hist": 5,
            "train.eval_batch_size": 16,
            "train.max_steps_per_epoch": 3,
            "model.n_aspects": 4,
            "model.max_text_len": 6,
            "model.image_channels": [8, 8, 8, 8],
            "model.text_hidden": 8,
            "model.att_hidden": [8],
            "model.mlp_hidden": [16, 8],
            "seed": 1,
        },
    )
    full = train(cfg, data, tmp_path / "full", progress=False)
    with pytest.raises(Killed):
        train(cfg, data, tmp_path / "resumed", progress=False, on_step=kill_at(2, 2, 3))
    assert train(cfg, data, tmp_path / "resumed", resume=True, progress=False) == full
    assert lines(tmp_path / "resumed") == lines(tmp_path / "full")


# --------------------------------------------------------------------------- RNG states, amp


def test_rng_states_round_trip_on_the_cpu() -> None:
    import random

    from mdr.training.runs import rng_states, set_rng_states

    torch.manual_seed(11)
    states = rng_states()
    assert "cuda" not in states  # the CUDA generator is saved only when training on CUDA
    draws = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    set_rng_states(states, torch.device("cpu"))
    again = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2])


def test_amp_changes_nothing_on_the_cpu(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg(**{"train.epochs": 1})
    plain = train(cfg, data, tmp_path / "fp32", progress=False)
    amp = train(apply_overrides(cfg, {"train.amp": True}), data, tmp_path / "amp", progress=False)
    assert amp == plain
    assert lines(tmp_path / "amp") == lines(tmp_path / "fp32")


# --------------------------------------------------------------------------- the run's data


def _other_data(data: Path, tmp: Path) -> Path:
    """A copy of the prepared folder ``data`` whose manifest differs (other data)."""
    import shutil

    other = tmp / "other"
    shutil.copytree(data, other)
    manifest = json.loads((other / "dataset.json").read_text())
    manifest["counts"]["behaviors"] += 1  # what another preparation would change
    (other / "dataset.json").write_text(json.dumps(manifest))
    return other


def test_a_run_is_tied_to_its_data(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg(**{"train.epochs": 1})
    run = tmp_path / "run"
    train(cfg, data, run, progress=False)
    other = _other_data(data, tmp_path)
    with pytest.raises(
        RunError,
        match=r"trained on .*fingerprint.*other data.*"
        r"--allow-other-data",
    ):
        evaluate_run(run, data=other, progress=False)
    with pytest.raises(RunError, match="other data"):
        load_run(run, other)
    with pytest.raises(RunError, match="other data"):
        train(apply_overrides(cfg, {"train.epochs": 2}), other, run, resume=True, progress=False)
    assert evaluate_run(run, data=other, progress=False, allow_other_data=True)["gauc"] > 0
    # the same data elsewhere (a copy of the folder) is the same data
    import shutil

    shutil.copytree(data, tmp_path / "copy")
    assert (
        evaluate_run(run, data=tmp_path / "copy", progress=False)["gauc"]
        == evaluate_run(run, progress=False)["gauc"]
    )


def test_flushing_denormals_is_recorded_and_a_run_resumes_only_in_its_mode(
    data: Path, tmp_path: Path
) -> None:
    from mdr.seeding import denormals_flushed, flush_denormals

    subnormal = torch.tensor([1e-39])
    cfg = make_cfg(**{"train.epochs": 1})
    try:
        flush_denormals()
        assert denormals_flushed() and (subnormal * 1.0).item() == 0.0
        train(cfg, data, tmp_path / "run", progress=False)
        assert load_yaml(tmp_path / "run" / "config.yaml")["provenance"]["flush_denormal"]
        flush_denormals(False)
        assert not denormals_flushed() and (subnormal * 1.0).item() > 0.0
        more = apply_overrides(cfg, {"train.epochs": 2})
        with pytest.raises(RunError, match=r"trained with --flush-denormals; resume it with"):
            train(more, data, tmp_path / "run", resume=True, progress=False)
        assert (tmp_path / "run" / "DONE").is_file()  # refused before anything was touched
        flush_denormals()
        assert train(more, data, tmp_path / "run", resume=True, progress=False)["epochs_run"] == 2
    finally:
        flush_denormals(False)  # the mode is the process's: leave it as every other test has it


def test_an_unfinished_run_is_refused_unless_asked(data: Path, tmp_path: Path) -> None:
    steps = -(-2 * sum(len(s) - 3 for s in ProcessedDataset.open(data).user_sequences) // 16)
    with pytest.raises(Killed):
        train(make_cfg(), data, tmp_path / "run", progress=False, on_step=kill_at(2, 1, steps))
    with pytest.raises(RunError, match=r"unfinished run.*--resume.*--allow-unfinished"):
        evaluate_run(tmp_path / "run", progress=False)
    got = evaluate_run(tmp_path / "run", progress=False, allow_unfinished=True)
    assert got["unfinished"] and got["best_epoch"] == 1


def test_never_trains_into_a_file_or_a_foreign_folder(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg(**{"train.epochs": 1})
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(RunError, match="not a folder"):
        train(cfg, data, tmp_path / "a-file", progress=False, overwrite=True)
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "config.yaml").write_text("chapter: 1\n")
    with pytest.raises(RunError, match="not a run folder"):
        train(cfg, data, thesis, progress=False, overwrite=True)
    assert (thesis / "config.yaml").read_text() == "chapter: 1\n"
    assert (tmp_path / "a-file").read_text() == "mine"


# --------------------------------------------------------------------------- pretraining


class ItemRec(TinyRec):
    """TinyRec whose items carry a loss of their own (an L2 pull of the item embeddings)."""

    trains_items = True

    def calculate_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if "label" in batch:
            return super().calculate_loss(batch)
        pull = self.item(batch["item"]).pow(2).sum(1).mean()
        return {"loss": pull, "bce": pull.new_zeros(()), "l2": pull.detach()}


register("item_rec_test", lambda cfg, f: ItemRec(cfg, f), replace=True)


def test_item_level_pretraining_is_epoch_0_and_resumes_exactly(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg(
        **{
            "model.name": "item_rec_test",
            "train.pretrain_epochs": 3,
            "train.pretrain_batch_size": 8,
        }
    )
    full = train(cfg, data, tmp_path / "full", progress=False)
    rows = lines(tmp_path / "full")
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["stage"] == "pretrain" and rows[0]["step"] == 3 * -(-30 // 8)
    assert rows[0]["train/loss"] > 0 and "valid/gauc" in rows[0]
    assert full["best_epoch"] >= 1  # the pretrained state is logged, never selected
    # killed in the first joint epoch, after the pretraining's checkpoint: exact resume
    with pytest.raises(Killed):
        train(
            cfg,
            data,
            tmp_path / "r",
            progress=False,
            on_step=lambda e, s: (_ for _ in ()).throw(Killed()) if e == 1 else None,
        )
    assert [r["epoch"] for r in lines(tmp_path / "r")] == [0]
    assert train(cfg, data, tmp_path / "r", resume=True, progress=False) == full
    assert lines(tmp_path / "r") == rows
    # killed during the pretraining: it starts again, with the same numbers
    with pytest.raises(Killed):
        train(
            cfg,
            data,
            tmp_path / "p",
            progress=False,
            on_step=lambda e, s: (_ for _ in ()).throw(Killed()) if s == 5 else None,
        )
    assert train(cfg, data, tmp_path / "p", resume=True, progress=False) == full


def test_models_without_item_losses_skip_the_pretraining(data: Path, tmp_path: Path) -> None:
    cfg = make_cfg(**{"train.pretrain_epochs": 3, "train.epochs": 1})
    train(cfg, data, tmp_path / "run", progress=False)
    assert [r["epoch"] for r in lines(tmp_path / "run")] == [1]
