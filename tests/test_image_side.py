"""The image side alone (model ``image_factors``) and its training by the one trainer (the
``images`` task), on the fixture photo corpus of test_fashion.py and on the tiny shop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mdr.config import ConfigError, RunConfig, apply_overrides, load_run_config
from mdr.data.fashion import prepare_fashion
from mdr.models.base import ItemFeatures
from mdr.models.image_factors import ImageFactorModel
from mdr.training.registry import build_model, task_of
from mdr.training.runs import RunError, load_run
from mdr.training.tasks import ImageTask, open_task
from mdr.training.train import train
from tests.test_fashion import N_GOOD, make_corpus

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "configs" / "fashion.yaml"
TIME_KEYS = {"train_s", "valid_s", "epoch_s", "elapsed_s", "samples_per_s"}


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = make_corpus(tmp_path_factory.mktemp("fashion") / "src")
    out = tmp_path_factory.mktemp("fashion-proc") / "proc"
    prepare_fashion(corpus, out, image_size=16, min_count=3, label_fraction=0.5, progress=False)
    return out


# --------------------------------------------------------------------------- the model


def _model_cfg(**overrides: Any) -> RunConfig:
    slots = [
        {"name": "colour", "kind": "visual_dominant", "dim": 3, "label": "colour"},
        {"name": "shape", "kind": "visual_only", "dim": 2, "label": "article"},
        {"name": "pattern", "kind": "visual_only", "dim": 2},
    ]
    return apply_overrides(
        RunConfig(),
        {
            "model.name": "image_factors",
            "model.slots": slots,
            "model.image_blackbox_dim": 3,
            "model.image_channels": [4, 4, 4, 4],
            **overrides,
        },
    )


def _features(n: int = 5) -> ItemFeatures:
    images = torch.randint(
        0, 256, (n, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    labels = {
        "colour": torch.tensor([0, -1, 2, -1, -1]),
        "article": torch.tensor([-1, 1, -1, -1, 0]),
    }
    return ItemFeatures(
        n_items=n,
        n_users=0,
        images=images,
        image_mask=torch.ones(n, dtype=torch.bool),
        labels=labels,
        label_classes={"colour": 4, "article": 2},
    )


def test_layout_encode_decode_and_weak_supervision_known_answer() -> None:
    assert task_of("image_factors") == "images"
    m = build_model(None, _model_cfg(), _features())
    assert isinstance(m, ImageFactorModel)
    assert m.r_columns() == {
        "colour": [0, 1, 2],
        "shape": [3, 4],
        "pattern": [5, 6],
        "blackbox": [7, 8, 9],
    }
    assert m.weak is not None and set(m.weak.classifiers) == {"colour", "shape"}
    items = torch.arange(5)
    f = m.encode_items(items)
    assert f.shape == (5, 10)
    assert m.decode_images(f).shape == (5, 3, 16, 16)
    # ws = summed CE of the labelled (slot, item) pairs / items with an image (Eq. 13)
    terms = m.loss_terms(items, sample=False)
    ce_c = torch.nn.functional.cross_entropy(
        m.weak.classifiers["colour"](f[[0, 2]][:, :3]), torch.tensor([0, 2]), reduction="sum"
    )
    ce_s = torch.nn.functional.cross_entropy(
        m.weak.classifiers["shape"](f[[1, 4]][:, 3:5]), torch.tensor([1, 0]), reduction="sum"
    )
    assert torch.allclose(terms["ws"], (ce_c + ce_s).detach() / 5, atol=1e-5)
    assert float(m.loss_terms(torch.tensor([3]), sample=False)["ws"].detach()) == 0.0  # unlabelled
    same = build_model(None, _model_cfg(), _features())
    assert all(
        torch.equal(a, b) for a, b in zip(m.state_dict().values(), same.state_dict().values())
    )
    without = build_model(None, _model_cfg(**{"model.weak_supervision": False}), _features())
    assert without.weak is None and without.predict_labels(f) == {}


def test_the_image_side_is_the_image_branch_of_mdr() -> None:
    """One image branch: the same encoder/decoder module (and standardised decoder output)."""
    from mdr.models.image_vae import ImageVAE

    m = build_model(None, _model_cfg(), _features())
    assert isinstance(m.image, ImageVAE)
    assert not any(isinstance(x, torch.nn.Sigmoid) for x in m.modules())


def test_bad_slots_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one slot of an image kind"):
        build_model(
            None,
            _model_cfg(**{"model.slots": [{"name": "brand", "kind": "text_only", "dim": 2}]}),
            _features(),
        )
    with pytest.raises(ValueError, match="weak label 'colour' not in"):
        feats = _features()
        feats.label_classes = {"x": 3}
        build_model(None, _model_cfg(), feats)


# --------------------------------------------------------------------------- the one trainer


def _cfg(epochs: int, **overrides: Any) -> RunConfig:
    return load_run_config(
        CONFIG,
        {
            "model.image_channels": [8, 8, 8, 8],
            "model.image_blackbox_dim": 2,
            "train.epochs": epochs,
            "train.batch_size": 16,
            "train.valid_fraction": 0.25,
            "train.lr": 0.01,
            **overrides,
        },
    )


def _lines(run: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(s).items() if k not in TIME_KEYS}
        for s in (run / "metrics.jsonl").read_text().splitlines()
    ]


def test_trains_through_the_one_trainer_and_resumes_exactly(proc: Path, tmp_path: Path) -> None:
    full = train(_cfg(2), proc, tmp_path / "full", progress=False)
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt", "test.json", "DONE"):
        assert (tmp_path / "full" / name).is_file(), name
    half = tmp_path / "half"
    one = train(_cfg(1), proc, half, progress=False)
    assert one["epochs_run"] == 1
    with pytest.raises(RunError, match="finished"):
        train(_cfg(2), proc, half, progress=False)
    resumed = train(_cfg(2), proc, half, resume=True, progress=False)
    assert resumed == full and _lines(half) == _lines(tmp_path / "full")
    line = _lines(half)[-1]
    for key in (
        "train/rec",
        "train/kl",
        "train/ws",
        "valid/loss",
        "valid/acc_colour",
        "valid/acc_shape",
        "valid/chance_colour",
    ):
        assert np.isfinite(line[key]), key
    assert 0.0 <= line["valid/acc_shape"] <= 1.0
    assert full["n_valid"] == round(0.25 * N_GOOD) and full["best_valid_loss"] > 0
    with pytest.raises(RunError, match="different config"):
        train(_cfg(3, **{"train.lr": 0.02}), proc, half, resume=True, progress=False)
    run = load_run(half)
    assert isinstance(run.task, ImageTask) and not run.model.training
    assert run.model.encode_items(torch.arange(3)).shape == (3, 4 + 4 + 4 + 2)


def test_learns_colour_from_weak_labels(proc: Path, tmp_path: Path) -> None:
    """On the fixture a colour is one flat fill: 25 epochs at 16x16 (a few seconds) are
    enough for the colour slot's classifier to beat the majority rate on held-out items."""
    result = train(_cfg(25), proc, tmp_path / "r", progress=False)
    assert result["acc_colour"] > result["chance_colour"] + 0.2


def test_the_image_task_also_reads_a_prepared_shop(tiny_proc: Path, tmp_path: Path) -> None:
    cfg = _cfg(
        1,
        **{
            "model.slots": [
                {"name": "colour", "kind": "visual_dominant", "dim": 4, "label": "colour"},
                {"name": "shape", "kind": "visual_only", "dim": 4, "label": "shape"},
            ]
        },
    )
    result = train(cfg, tiny_proc, tmp_path / "r", progress=False)
    assert result["n_items"] == 100 and {"acc_colour", "acc_shape"} <= set(result)


def test_models_and_data_of_different_tasks_are_a_clear_error(proc: Path) -> None:
    with pytest.raises(ConfigError, match="image corpus without users"):
        open_task(apply_overrides(RunConfig(), {"model.name": "mdr"}), proc)
