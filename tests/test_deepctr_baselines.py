"""Wide&Deep / PNN / DeepFM baselines (baselines.deepctr_models) and the quiet deepctr import."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml

from baselines.deepctr_models import (
    KINDS,
    DeepCTRBaseline,
    compact_history,
    run_deepctr,
)
from mdr.metrics import auc, sampled_list_metrics

U, N_ITEMS, C, H = 20, 30, 4, 5  # users, items, categories, history length
ITEM_CATEGORY = np.arange(N_ITEMS) % C


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
    hist[H - n:], mask[H - n:] = _liked(gen, u, n), True
    return hist, mask


def make_training(seed: int = 0, per_user: int = 30) -> dict[str, np.ndarray]:
    """User u likes category u % C: positives from it, negatives from the others."""
    gen = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("user", "hist", "hist_mask", "cand", "label")}
    for u in range(U):
        for _ in range(per_user):
            hist, mask = _history(gen, u)
            for cand, label in ((_liked(gen, u, 1)[0], 1.0), (_other(gen, u, 1)[0], 0.0)):
                for k, v in (("user", u), ("hist", hist), ("hist_mask", mask),
                             ("cand", cand), ("label", label)):
                    rows[k].append(v)
    out = {k: np.array(v) for k, v in rows.items()}
    out["label"] = out["label"].astype(np.float32)
    return out


def make_eval(seed: int = 1, n_neg: int = 5) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    hists = [_history(gen, u) for u in range(U)]
    return {
        "user": np.arange(U),
        "hist": np.stack([h for h, _ in hists]),
        "hist_mask": np.stack([m for _, m in hists]),
        "cands": np.stack([np.r_[_liked(gen, u, 1), _other(gen, u, n_neg)] for u in range(U)]),
    }


def _model(kind: str, seed: int = 0, **kw) -> DeepCTRBaseline:
    return DeepCTRBaseline(kind, U, N_ITEMS, C, ITEM_CATEGORY, max_hist=H, seed=seed, **kw)


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
    proc = subprocess.run([sys.executable, "-W", "error", "-c", _PROBE, mode], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
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


def test_feature_index_and_input_tensor_known_answer():
    cat = (np.arange(10) * 2 + 1) % 3  # item -> category: 1 0 2 1 0 2 1 0 2 1
    m = DeepCTRBaseline("deepfm", 6, 10, 3, cat, max_hist=3)
    assert m.feature_index == {"user": (0, 1), "item": (1, 2), "category": (2, 3),
                               "hist_item": (3, 6), "hist_len": (6, 7),
                               "hist_category": (7, 10)}
    x = m.input_tensor(
        user=np.array([4, 2, 5]), cand=np.array([7, 0, 3]),
        hist=np.array([[0, 5, 8], [0, 0, 9], [3, 4, 6]]),
        hist_mask=np.array([[False, True, True], [False, False, True], [True, False, True]]))
    expected = torch.tensor([
        # user item cat | hist_item | len | hist_category
        [4, 7, 0, 5, 8, 0, 2, 2, 2, 0],  # right-aligned, 2 real items
        [2, 0, 1, 9, 0, 0, 1, 1, 0, 0],  # one real item
        [5, 3, 1, 3, 6, 0, 2, 1, 1, 0],  # a hole in the middle is compacted too
    ], dtype=torch.float32)
    assert x.dtype == torch.float32
    assert torch.equal(x, expected)


def test_compact_history_keeps_order_and_zeroes_padding():
    hist = torch.tensor([[7, 1, 2, 3], [9, 9, 9, 9], [4, 5, 6, 8]])
    mask = torch.tensor([[False, True, False, True], [False] * 4, [True] * 4])
    left, length = compact_history(hist, mask)
    assert torch.equal(left, torch.tensor([[1, 3, 0, 0], [0, 0, 0, 0], [4, 5, 6, 8]]))
    assert torch.equal(length, torch.tensor([2, 0, 4]))


@pytest.mark.parametrize("kind", KINDS)
def test_history_features_share_and_mean_pool_the_item_and_category_embeddings(kind):
    m = _model(kind)
    net = m.net
    assert set(net.embedding_dict) == {"user", "item", "category"}
    assert set(net.linear_model.embedding_dict) == (
        set() if kind == "pnn" else {"user", "item", "category"})
    with torch.no_grad():  # distinct rows, so a wrong lookup cannot go unnoticed
        for emb in net.embedding_dict.values():
            emb.weight.copy_(torch.randn(emb.weight.shape, generator=torch.Generator().manual_seed(3)))
    samples = make_eval()
    x = m.input_tensor(samples["user"], samples["cands"][:, 0], samples["hist"],
                       samples["hist_mask"])
    fields, _ = net.input_from_feature_columns(x, net.dnn_feature_columns, net.embedding_dict)
    assert len(fields) == 5  # user, item, category, hist_item (pooled), hist_category (pooled)
    item_w, cat_w = net.embedding_dict["item"].weight, net.embedding_dict["category"].weight
    for u in range(U):
        real = samples["hist"][u][samples["hist_mask"][u]]
        want_item = item_w[torch.as_tensor(real)].mean(0)
        want_cat = cat_w[torch.as_tensor(ITEM_CATEGORY[real])].mean(0)
        torch.testing.assert_close(fields[3][u, 0], want_item, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fields[4][u, 0], want_cat, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fields[1][u, 0], item_w[int(samples["cands"][u, 0])])


@pytest.mark.parametrize("kind", KINDS)
def test_scores_ignore_padding_ids_and_history_alignment(kind):
    m = _model(kind)
    m.fit_epoch(make_training(per_user=3), batch_size=32)
    ev = make_eval()
    base = m.score(ev)
    noisy = dict(ev, hist=np.where(ev["hist_mask"], ev["hist"], 17))  # junk in padded slots
    order = np.argsort(~ev["hist_mask"], axis=1, kind="stable")  # left-aligned copy
    left = dict(ev, hist=np.take_along_axis(ev["hist"], order, 1),
                hist_mask=np.take_along_axis(ev["hist_mask"], order, 1))
    np.testing.assert_allclose(m.score(noisy), base, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.score(left), base, rtol=1e-6, atol=1e-6)
    assert not np.allclose(m.score(dict(ev, hist_mask=np.zeros_like(ev["hist_mask"]))), base)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("kind", KINDS)
def test_learns_the_category_preference(kind):
    m = _model(kind, lr=1e-2)
    ev = make_eval()
    train = make_training()
    losses = [m.fit_epoch(train, batch_size=64) for _ in range(4)]
    assert losses[-1] < losses[0]
    scores = m.score(ev)  # (U, 6): column 0 the liked-category positive
    labels = np.zeros_like(scores)
    labels[:, 0] = 1
    assert auc(labels.ravel(), scores.ravel()) > 0.7
    assert sampled_list_metrics(scores)["gauc"] > 0.7


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_identical_scores(kind):
    train, ev = make_training(per_user=5), make_eval()
    rng_state = torch.get_rng_state()
    a, b, c = _model(kind, seed=7), _model(kind, seed=7), _model(kind, seed=8)
    assert torch.equal(torch.get_rng_state(), rng_state), "construction touched the global RNG"
    for m in (a, b, c):
        m.fit_epoch(train, batch_size=16)
    assert np.array_equal(a.score(ev), b.score(ev))
    assert not np.array_equal(a.score(ev), c.score(ev))


def test_state_dict_round_trip_continues_identically():
    train, ev = make_training(per_user=5), make_eval()
    a = _model("wide_deep", lr=1e-2)
    a.fit_epoch(train, batch_size=32)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = _model("wide_deep", seed=99, lr=1e-2)  # other init, overwritten by the load
    with pytest.raises(ValueError, match="does not match"):
        b.load_state_dict(torch.load(buf, weights_only=True))
    buf.seek(0)
    b = _model("wide_deep", lr=1e-2)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert b.epochs_done == 1
    assert np.array_equal(a.score(ev), b.score(ev))
    a.fit_epoch(train, batch_size=32)  # Adam state and shuffle stream restored too
    b.fit_epoch(train, batch_size=32)
    assert np.array_equal(a.score(ev), b.score(ev))


def test_max_steps_caps_the_epoch():
    train = make_training(per_user=5)  # 200 rows
    a, b = _model("pnn"), _model("pnn")
    a.fit_epoch(train, batch_size=10, max_steps=2)
    b.fit_epoch({k: v[:0] for k, v in train.items()}, batch_size=10)  # no step at all
    assert a.epochs_done == b.epochs_done == 1
    moved = any(not torch.equal(p, q) for p, q in
                zip(a.net.state_dict().values(), _model("pnn").net.state_dict().values()))
    assert moved


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.pop("cands"), "missing keys"),
    (lambda s: s.update(user=s["user"] + U), "user"),
    (lambda s: s.update(cands=s["cands"] - 1), "cands"),
    (lambda s: s.update(hist=s["hist"][:, :2], hist_mask=s["hist_mask"][:, :2]), "hist"),
])
def test_bad_samples_are_rejected_with_the_key_named(change, message):
    ev = make_eval()
    ev["cands"] = ev["cands"].copy()
    ev["cands"][0, 0] = 0  # so "cands - 1" reaches -1
    change(ev)
    with pytest.raises(ValueError, match=message):
        _model("deepfm").score(ev)


def test_bad_training_labels_are_rejected():
    train = make_training(per_user=2)
    train["label"] = train["label"] * 2
    with pytest.raises(ValueError, match="label"):
        _model("wide_deep").fit_epoch(train)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="unknown deepctr baseline"):
        DeepCTRBaseline("fm", U, N_ITEMS, C, ITEM_CATEGORY)
    with pytest.raises(ValueError, match="item_category"):
        DeepCTRBaseline("pnn", U, N_ITEMS, C, ITEM_CATEGORY[:-1])
    with pytest.raises(ValueError, match="item_category"):
        DeepCTRBaseline("pnn", U, N_ITEMS, 2, ITEM_CATEGORY)


# --------------------------------------------------------------------------- run_deepctr


def _fixtures() -> ModuleType:
    """tests/fixtures_proc.py, loaded by path (pytest's importlib mode adds no sys.path entry)."""
    spec = importlib.util.spec_from_file_location("fixtures_proc",
                                                  Path(__file__).with_name("fixtures_proc.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_proc(tmp_path_factory) -> Path:
    fx = _fixtures()
    root = tmp_path_factory.mktemp("proc")
    return fx.write_tiny_proc(root, fx.random_sequences(24, 36, seed=0), n_neg_eval=8)


_TIMING = ("epoch_s", "wall_s", "train_wall_s", "test_wall_s")


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _TIMING}


def _lines(path: Path) -> list[dict]:
    return [_strip(json.loads(ln)) for ln in path.read_text().splitlines()]


@pytest.mark.parametrize("kind", KINDS)
def test_run_deepctr_writes_every_output(kind, tiny_proc, tmp_path):
    result = run_deepctr(kind, tiny_proc, tmp_path, seed=0, epochs=3, patience=2,
                         batch_size=32, progress=False, lr=1e-2)
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt", "test.json"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "test.json").read_text()) == result
    for key in ("gauc", "auc", "ndcg@10", "hr@10", "full_ndcg@10", "full_hr@10"):
        assert 0.0 <= result[key] <= 1.0, key
    lines = _lines(tmp_path / "metrics.jsonl")
    assert [ln["epoch"] for ln in lines] == list(range(1, result["epochs_run"] + 1))
    gaucs = [ln["valid"]["gauc"] for ln in lines]
    assert result["best_epoch"] == 1 + int(np.argmax(gaucs))
    assert result["best_valid_gauc"] == max(gaucs)
    assert all(np.isfinite(ln["loss"]) for ln in lines)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["model"] == kind and config["seed"] == 0
    assert config["config_hash"] == result["config_hash"]
    assert "versions" in config["manifest"]


def test_run_deepctr_resumes_exactly_after_an_interruption(tiny_proc, tmp_path, monkeypatch):
    kwargs = {"seed": 3, "epochs": 3, "patience": 3, "batch_size": 16, "progress": False}
    straight = run_deepctr("deepfm", tiny_proc, tmp_path / "a", **kwargs)

    real_fit = DeepCTRBaseline.fit_epoch
    calls = {"n": 0}

    def interrupted(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_fit(self, *args, **kw)

    monkeypatch.setattr(DeepCTRBaseline, "fit_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_deepctr("deepfm", tiny_proc, tmp_path / "b", **kwargs)
    assert not (tmp_path / "b" / "test.json").exists()
    assert len(_lines(tmp_path / "b" / "metrics.jsonl")) == 2
    monkeypatch.setattr(DeepCTRBaseline, "fit_epoch", real_fit)
    resumed = run_deepctr("deepfm", tiny_proc, tmp_path / "b", resume=True, **kwargs)

    assert _strip(resumed) == _strip(straight)
    assert _lines(tmp_path / "b" / "metrics.jsonl") == _lines(tmp_path / "a" / "metrics.jsonl")

    def no_training(self, *args, **kw):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(DeepCTRBaseline, "fit_epoch", no_training)
    assert run_deepctr("deepfm", tiny_proc, tmp_path / "b", resume=True, **kwargs) == resumed
    with pytest.raises(ValueError, match="config"):
        run_deepctr("deepfm", tiny_proc, tmp_path / "b", resume=True, **{**kwargs, "seed": 4})


# --------------------------------------------------------------------------- factorised scoring


def _randomise(m: DeepCTRBaseline, seed: int = 5) -> None:
    """Weights of order 1 (deepctr initialises at 1e-4, where any scorer looks equal)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("kind", KINDS)
def test_factorised_scores_equal_deepctrs_plain_forward(kind):
    m = _model(kind)
    _randomise(m)
    ev = make_eval()
    n_users, n_cands = ev["cands"].shape
    scores = m.score(ev, batch_rows=7 * n_cands)  # several chunks
    x = m.input_tensor(np.repeat(ev["user"], n_cands), ev["cands"].reshape(-1),
                       np.repeat(ev["hist"], n_cands, axis=0),
                       np.repeat(ev["hist_mask"], n_cands, axis=0))
    with torch.no_grad():
        plain = m.net(x).reshape(n_users, n_cands).numpy()
    assert plain.std() > 0.1  # a real, non-degenerate check
    np.testing.assert_allclose(scores, plain, rtol=1e-5, atol=1e-5)
    assert not hasattr(m.net, "input_from_feature_columns") or (
        "input_from_feature_columns" not in vars(m.net)), "injection leaked"


def test_factorised_scoring_guards_itself(monkeypatch):
    import baselines.deepctr_models as dm

    m = _model("wide_deep")
    _randomise(m)
    real = dm._mean_pool
    monkeypatch.setattr(dm, "_mean_pool", lambda emb, ids, length: 2 * real(emb, ids, length))
    with pytest.raises(RuntimeError, match="factorised scoring differs"):
        m.score(make_eval())
