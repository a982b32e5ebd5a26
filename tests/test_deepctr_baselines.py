"""Wide&Deep / PNN / DeepFM as registered models (baselines.deepctr_models), trained by the
one trainer, and the quiet deepctr import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from baselines.deepctr_models import NETWORKS, DeepCTRRecommender, compact_history
from mdr.config import RunConfig, apply_overrides
from mdr.metrics import auc, sampled_list_metrics
from mdr.models.base import ItemFeatures, RecModel
from mdr.training.registry import build_model, task_of
from mdr.training.runs import RunFolder, evaluate_run
from mdr.training.train import train
from tests.fixtures_proc import random_sequences, write_tiny_proc

U, N_ITEMS, C, H = 20, 30, 4, 5  # users, items, categories, history length
ITEM_CATEGORY = np.arange(N_ITEMS) % C
TIME_KEYS = {"train_s", "valid_s", "epoch_s", "elapsed_s", "samples_per_s"}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one intra-op thread is faster and keeps timings stable."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- learnable data


def _liked(gen: np.random.Generator, u: int, n: int) -> np.ndarray:
    return gen.choice(np.flatnonzero(u % C == ITEM_CATEGORY), n)


def _other(gen: np.random.Generator, u: int, n: int) -> np.ndarray:
    return gen.choice(np.flatnonzero(u % C != ITEM_CATEGORY), n)


def _history(gen: np.random.Generator, u: int) -> tuple[np.ndarray, np.ndarray]:
    """A right-aligned history of 1..H items of the user's liked category, padded with 0."""
    n = int(gen.integers(1, H + 1))
    hist, mask = np.zeros(H, np.int64), np.zeros(H, bool)
    hist[H - n :], mask[H - n :] = _liked(gen, u, n), True
    return hist, mask


def make_training(seed: int = 0, per_user: int = 30) -> dict[str, torch.Tensor]:
    """User u likes category u % C: positives from it, negatives from the others."""
    gen = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("user", "hist", "hist_mask", "cand", "label")}
    for u in range(U):
        for _ in range(per_user):
            hist, mask = _history(gen, u)
            for cand, label in ((_liked(gen, u, 1)[0], 1.0), (_other(gen, u, 1)[0], 0.0)):
                for k, v in (
                    ("user", u),
                    ("hist", hist),
                    ("hist_mask", mask),
                    ("cand", cand),
                    ("label", label),
                ):
                    rows[k].append(v)
    out = {k: torch.as_tensor(np.array(v)) for k, v in rows.items()}
    out["label"] = out["label"].float()
    return out


def make_eval(seed: int = 1, n_neg: int = 5) -> dict[str, torch.Tensor]:
    gen = np.random.default_rng(seed)
    hists = [_history(gen, u) for u in range(U)]
    return {
        "user": torch.arange(U),
        "hist": torch.as_tensor(np.stack([h for h, _ in hists])),
        "hist_mask": torch.as_tensor(np.stack([m for _, m in hists])),
        "cands": torch.as_tensor(
            np.stack([np.r_[_liked(gen, u, 1), _other(gen, u, n_neg)] for u in range(U)])
        ),
    }


def _features(
    n_users: int = U,
    n_items: int = N_ITEMS,
    n_categories: int = C,
    category: np.ndarray = ITEM_CATEGORY,
) -> ItemFeatures:
    return ItemFeatures(
        n_items=n_items,
        n_users=n_users,
        n_categories=n_categories,
        category=torch.as_tensor(category),
    )


def _cfg(kind: str, seed: int = 0, max_hist: int = H) -> RunConfig:
    return apply_overrides(
        RunConfig(), {"model.name": kind, "train.max_hist": max_hist, "seed": seed}
    )


def _model(kind: str, seed: int = 0) -> DeepCTRRecommender:
    model = build_model(kind, _cfg(kind, seed), _features())  # through the registry
    assert isinstance(model, DeepCTRRecommender)
    return model


def _score(m: DeepCTRRecommender, ev: dict[str, torch.Tensor]) -> np.ndarray:
    reps = m.encode_items(torch.arange(N_ITEMS))
    return m.score(reps, ev["hist"], ev["hist_mask"], ev["cands"], ev["user"]).numpy()


def _fit(
    m: DeepCTRRecommender,
    data: dict[str, torch.Tensor],
    epochs: int,
    lr: float = 1e-2,
    batch: int = 64,
) -> list[float]:
    """A few plain Adam epochs on calculate_loss (the trainer's step, without the trainer)."""
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    losses = []
    n = len(data["label"])
    for _ in range(epochs):
        perm, total = torch.randperm(n, generator=gen), 0.0
        for lo in range(0, n, batch):
            rows = perm[lo : lo + batch]
            loss = m.calculate_loss({k: v[rows] for k, v in data.items()})["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
        losses.append(total / n)
    return losses


# --------------------------------------------------------------------------- quiet import

_PROBE = textwrap.dedent("""
    import json, socket, sys, threading
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(threading.current_thread().name)
        raise OSError("network disabled by the test")
    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    socket.socket.connect = refuse
    if sys.argv[1] == "quiet":
        import baselines._deepctr_import as quiet
        suppressed = quiet.VERSION_CHECK_SUPPRESSED
        noop = quiet.deepctr_torch.utils.check_version.__name__ == "_no_version_check"
    else:
        import deepctr_torch
        suppressed, noop = False, False
    for t in threading.enumerate():
        if t is not threading.main_thread():
            t.join(timeout=30)
    print(json.dumps({"attempts": attempts, "suppressed": suppressed, "noop": noop}))
""")


def _probe(mode: str, tmp_path: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", _PROBE, mode],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_quiet_import_opens_no_connection_and_warns_nothing(tmp_path):
    """Imported through _deepctr_import (with -W error), no thread tries the network."""
    result = _probe("quiet", tmp_path)
    assert result == {"attempts": [], "suppressed": True, "noop": True}


def test_plain_import_does_try_the_network(tmp_path):
    """Control: the probe above can fail - a plain import makes its thread try PyPI."""
    result = _probe("plain", tmp_path)
    assert result["attempts"], "deepctr's version check no longer runs; the probe is void"
    assert all(name != "MainThread" for name in result["attempts"])


# --------------------------------------------------------------------------- input layout


def test_registered_with_the_recommendation_interface():
    for kind in NETWORKS:
        assert task_of(kind) == "recommendation"
        assert isinstance(_model(kind), RecModel)


def test_feature_index_and_input_tensor_known_answer():
    cat = (np.arange(10) * 2 + 1) % 3  # item -> category: 1 0 2 1 0 2 1 0 2 1
    m = DeepCTRRecommender(
        "deepfm",
        _cfg("deepfm", max_hist=3),
        _features(n_users=6, n_items=10, n_categories=3, category=cat),
    )
    assert m.feature_index == {
        "user": (0, 1),
        "item": (1, 2),
        "category": (2, 3),
        "hist_item": (3, 6),
        "hist_len": (6, 7),
        "hist_category": (7, 10),
    }
    x = m.input_tensor(
        user=torch.tensor([4, 2, 5]),
        cand=torch.tensor([7, 0, 3]),
        hist=torch.tensor([[0, 5, 8], [0, 0, 9], [3, 4, 6]]),
        hist_mask=torch.tensor([[False, True, True], [False, False, True], [True, False, True]]),
    )
    expected = torch.tensor(
        [
            # user item cat | hist_item | len | hist_category
            [4, 7, 0, 5, 8, 0, 2, 2, 2, 0],  # right-aligned, 2 real items
            [2, 0, 1, 9, 0, 0, 1, 1, 0, 0],  # one real item
            [5, 3, 1, 3, 6, 0, 2, 1, 1, 0],  # a hole in the middle is compacted too
        ],
        dtype=torch.float32,
    )
    assert x.dtype == torch.float32
    assert torch.equal(x, expected)


def test_compact_history_keeps_order_and_zeroes_padding():
    hist = torch.tensor([[7, 1, 2, 3], [9, 9, 9, 9], [4, 5, 6, 8]])
    mask = torch.tensor([[False, True, False, True], [False] * 4, [True] * 4])
    left, length = compact_history(hist, mask)
    assert torch.equal(left, torch.tensor([[1, 3, 0, 0], [0, 0, 0, 0], [4, 5, 6, 8]]))
    assert torch.equal(length, torch.tensor([2, 0, 4]))


@pytest.mark.parametrize("kind", NETWORKS)
def test_history_features_share_and_mean_pool_the_item_and_category_embeddings(kind):
    m = _model(kind)
    net = m.net
    assert set(net.embedding_dict) == {"user", "item", "category"}
    assert set(net.linear_model.embedding_dict) == (
        set() if kind == "pnn" else {"user", "item", "category"}
    )
    with torch.no_grad():  # distinct rows, so a wrong lookup cannot go unnoticed
        for emb in net.embedding_dict.values():
            emb.weight.copy_(
                torch.randn(emb.weight.shape, generator=torch.Generator().manual_seed(3))
            )
    ev = make_eval()
    x = m.input_tensor(ev["user"], ev["cands"][:, 0], ev["hist"], ev["hist_mask"])
    fields, _ = net.input_from_feature_columns(x, net.dnn_feature_columns, net.embedding_dict)
    assert len(fields) == 5  # user, item, category, hist_item (pooled), hist_category (pooled)
    item_w, cat_w = net.embedding_dict["item"].weight, net.embedding_dict["category"].weight
    for u in range(U):
        real = ev["hist"][u][ev["hist_mask"][u]]
        want_item = item_w[real].mean(0)
        want_cat = cat_w[torch.as_tensor(ITEM_CATEGORY[real.numpy()])].mean(0)
        torch.testing.assert_close(fields[3][u, 0], want_item, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fields[4][u, 0], want_cat, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fields[1][u, 0], item_w[int(ev["cands"][u, 0])])


@pytest.mark.parametrize("kind", NETWORKS)
def test_scores_ignore_padding_ids_and_history_alignment(kind):
    m = _model(kind)
    _fit(m, make_training(per_user=3), epochs=1, batch=32)
    ev = make_eval()
    base = _score(m, ev)
    noisy = dict(ev, hist=torch.where(ev["hist_mask"], ev["hist"], 17))  # junk in padding
    order = torch.argsort((~ev["hist_mask"]).to(torch.int8), dim=1, stable=True)
    left = dict(
        ev,
        hist=torch.gather(ev["hist"], 1, order),
        hist_mask=torch.gather(ev["hist_mask"], 1, order),
    )
    np.testing.assert_allclose(_score(m, noisy), base, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_score(m, left), base, rtol=1e-6, atol=1e-6)
    assert not np.allclose(_score(m, dict(ev, hist_mask=torch.zeros_like(ev["hist_mask"]))), base)


# --------------------------------------------------------------------------- the model learns


@pytest.mark.parametrize("kind", NETWORKS)
def test_learns_the_category_preference(kind):
    m = _model(kind)
    losses = _fit(m, make_training(), epochs=4)
    assert losses[-1] < losses[0]
    scores = _score(m, make_eval())  # (U, 6): column 0 the liked-category positive
    labels = np.zeros_like(scores)
    labels[:, 0] = 1
    assert auc(labels.ravel(), scores.ravel()) > 0.7
    assert sampled_list_metrics(scores)["gauc"] > 0.7


@pytest.mark.parametrize("kind", NETWORKS)
def test_init_depends_on_the_seed_only(kind):
    rng_state = torch.get_rng_state()
    a, b, c = _model(kind, seed=7), _model(kind, seed=7), _model(kind, seed=8)
    assert torch.equal(torch.get_rng_state(), rng_state), "construction touched the global RNG"
    ev = make_eval()
    for m in (a, b, c):
        with torch.no_grad():  # deepctr initialises at 1e-4: scale up to see the difference
            for p in m.net.parameters():
                p.mul_(1e3)
    assert np.array_equal(_score(a, ev), _score(b, ev))
    assert not np.array_equal(_score(a, ev), _score(c, ev))


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="unknown deepctr network"):
        DeepCTRRecommender("fm", _cfg("fm"), _features())
    with pytest.raises(ValueError, match="categories"):
        DeepCTRRecommender("pnn", _cfg("pnn"), _features(category=ITEM_CATEGORY[:-1]))
    with pytest.raises(ValueError, match="categories"):
        DeepCTRRecommender("pnn", _cfg("pnn"), _features(n_categories=2))
    with pytest.raises(ValueError, match="user ids"):
        m = _model("pnn")
        ev = make_eval()
        m.score(m.encode_items(torch.arange(3)), ev["hist"], ev["hist_mask"], ev["cands"])


# --------------------------------------------------------------------------- the one trainer


@pytest.fixture(scope="module")
def tiny_proc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("proc")
    return write_tiny_proc(root, random_sequences(24, 36, seed=0), n_neg_eval=8)


def _run_cfg(kind: str, **overrides: Any) -> RunConfig:
    return apply_overrides(
        RunConfig(),
        {
            "model.name": kind,
            "train.epochs": 3,
            "train.patience": 2,
            "train.batch_size": 32,
            "train.lr": 0.01,
            "train.max_hist": 5,
            "train.eval_batch_size": 8,
            "train.num_threads": 1,
            "seed": 0,
            **overrides,
        },
    )


def _lines(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


@pytest.mark.parametrize("kind", NETWORKS)
def test_trained_by_the_one_trainer_into_the_one_run_folder(kind, tiny_proc, tmp_path):
    run = tmp_path / "run"
    result = train(_run_cfg(kind), tiny_proc, run, progress=False)
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt", "test.json", "DONE"):
        assert (run / name).is_file(), name
    assert json.loads((run / "test.json").read_text()) == result
    for key in ("gauc", "auc", "ndcg@10", "hr@10", "full_ndcg@10", "full_hr@10"):
        assert 0.0 <= result[key] <= 1.0, key
    lines = _lines(run)
    assert [ln["epoch"] for ln in lines] == list(range(1, result["epochs_run"] + 1))
    gaucs = [ln["valid/gauc"] for ln in lines]
    assert result["best_epoch"] == 1 + int(np.argmax(gaucs))
    assert result["best_valid_gauc"] == max(gaucs)
    assert all(np.isfinite(ln["train/loss"]) for ln in lines)
    cfg, provenance = RunFolder(run).read_config()
    assert cfg.model.name == kind and provenance["seed"] == 0 and provenance["data_fingerprint"]
    rescored = evaluate_run(run, full_ranking=True, progress=False)
    for key in ("gauc", "ndcg@10", "full_ndcg@10"):
        assert rescored[key] == result[key]


def test_same_seed_same_test_json_and_the_seed_is_honoured(tiny_proc, tmp_path):
    a = train(_run_cfg("deepfm", seed=5), tiny_proc, tmp_path / "a", progress=False)
    train(_run_cfg("deepfm", seed=5), tiny_proc, tmp_path / "b", progress=False)
    c = train(_run_cfg("deepfm", seed=6), tiny_proc, tmp_path / "c", progress=False)
    assert (tmp_path / "a" / "test.json").read_bytes() == (
        tmp_path / "b" / "test.json"
    ).read_bytes()
    assert a["seed"] == 5 and c["seed"] == 6
    assert _lines(tmp_path / "a") != _lines(tmp_path / "c")


def test_resume_after_a_kill_equals_an_uninterrupted_run(tiny_proc, tmp_path):
    cfg = _run_cfg("wide_deep", **{"train.patience": 0})
    full = train(cfg, tiny_proc, tmp_path / "full", progress=False)
    steps = _lines(tmp_path / "full")[0]["step"]

    class Killed(Exception):
        pass

    def kill(epoch: int, step: int) -> None:
        if epoch == 2 and step == steps + 2:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tiny_proc, tmp_path / "r", progress=False, on_step=kill)
    assert train(cfg, tiny_proc, tmp_path / "r", resume=True, progress=False) == full
    assert _lines(tmp_path / "r") == _lines(tmp_path / "full")


# --------------------------------------------------------------------------- factorised scoring


def _randomise(m: DeepCTRRecommender, seed: int = 5) -> None:
    """Weights of order 1 (deepctr initialises at 1e-4, where any scorer looks equal)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("kind", NETWORKS)
def test_factorised_scores_equal_deepctrs_plain_forward(kind):
    m = _model(kind)
    _randomise(m)
    ev = make_eval()
    n_users, n_cands = ev["cands"].shape
    scores = _score(m, ev)
    x = m.input_tensor(
        ev["user"].repeat_interleave(n_cands),
        ev["cands"].reshape(-1),
        ev["hist"].repeat_interleave(n_cands, dim=0),
        ev["hist_mask"].repeat_interleave(n_cands, dim=0),
    )
    with torch.no_grad():
        plain = m.net(x).reshape(n_users, n_cands).numpy()
    assert plain.std() > 0.1  # a real, non-degenerate check
    np.testing.assert_allclose(scores, plain, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(
            m.predict(
                {
                    "user": ev["user"],
                    "hist": ev["hist"],
                    "hist_mask": ev["hist_mask"],
                    "cand": ev["cands"][:, 2],
                }
            ).numpy(),
            plain[:, 2],
            rtol=1e-5,
            atol=1e-5,
        )
    assert "input_from_feature_columns" not in vars(m.net), "injection leaked"


def test_factorised_scoring_guards_itself(monkeypatch):
    import baselines.deepctr_models as dm

    m = _model("wide_deep")
    _randomise(m)
    real = dm._mean_pool
    monkeypatch.setattr(dm, "_mean_pool", lambda emb, ids, length: 2 * real(emb, ids, length))
    with pytest.raises(RuntimeError, match="factorised scoring differs"):
        _score(m, make_eval())
