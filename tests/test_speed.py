"""The speed suite (benchmarks/performance/speed.py): a --quick smoke, FLOP counting, exactness of the
evaluation's blocking against a straightforward reference."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from tests.helpers import CONFIG


@pytest.fixture(scope="module")
def speed() -> Iterator[ModuleType]:
    """The speed suite, :mod:`benchmarks.performance.speed`."""
    from benchmarks.performance import speed as module

    yield module


# --------------------------------------------------------------------------- FLOP counting


def test_count_flops_linear_known_answer(speed: ModuleType) -> None:
    """Linear(8 -> 4) on 5 rows: forward 2*5*8*4 = 320 FLOPs; backward adds the weight
    gradient (320) and, when the input needs it, the input gradient (320)."""
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(5, 8)
    total, _ = speed.count_flops(lambda: layer(x))
    assert total == 320
    total, _ = speed.count_flops(lambda: layer(x).sum().backward())
    assert total == 640
    xg = torch.randn(5, 8, requires_grad=True)
    total, by_module = speed.count_flops(lambda: layer(xg).sum().backward())
    assert total == 960
    assert by_module == {"Linear": 960}


def test_count_flops_conv_known_answer(speed: ModuleType) -> None:
    """conv2d 3 -> 2 channels, 3x3, padding 1, on 2 x 4x4 images: 2 * N*Co*Ho*Wo*Ci*k*k."""
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        total, _ = speed.count_flops(lambda: conv(x))
    assert total == 2 * 2 * 2 * 4 * 4 * 3 * 3 * 3


def test_rate_median_and_mean(speed: ModuleType) -> None:
    r = speed.rate([100, 100, 100], [1.0, 2.0, 0.5])
    assert r["samples_per_s"] == 100.0  # median of 100, 50, 200
    assert r["samples_per_s_mean"] == pytest.approx(300 / 3.5, abs=0.1)
    assert r["steps"] == 3 and r["step_s_min"] == 0.5


# --------------------------------------------------------------------------- exactness


@pytest.fixture(scope="module")
def tiny_model(tiny_proc: Path) -> tuple:
    """An (untrained, eval-mode) MDR on the tiny shop, its item reps and the test samples."""
    from mdr.config import load_run_config
    from mdr.data.batches import eval_samples
    from mdr.data.dataset import ProcessedDataset
    from mdr.training.evaluate import item_representations
    from mdr.training.registry import build_model
    from mdr.training.tasks import item_features

    torch.set_num_threads(1)
    ds = ProcessedDataset.open(tiny_proc)
    model = build_model("mdr", load_run_config(CONFIG), item_features(ds)).eval()
    reps = item_representations(model, ds.n_items, 64, "cpu")
    return ds, model, reps, eval_samples(ds, "test", 20)


def _reference_scores(
    model: torch.nn.Module, reps: torch.Tensor, samples: dict[str, np.ndarray], rows: int
) -> np.ndarray:
    """The straightforward scoring: ``rows`` users per model.score call, in order."""
    out = []
    with torch.no_grad():
        for lo in range(0, len(samples["user"]), rows):
            t = {k: torch.from_numpy(v[lo : lo + rows]) for k, v in samples.items()}
            out.append(model.score(reps, t["hist"], t["hist_mask"], t["cands"], t["user"]))
    return torch.cat(out).double().numpy()


def test_sampled_scores_match_reference(tiny_model: tuple) -> None:
    """Blocked list scoring gives exactly the scores of scoring ``batch_size`` users a call
    (the code before the change) and, to float rounding, one user a call."""
    from mdr.training.evaluate import _list_users_per_call, sampled_scores

    ds, model, reps, samples = tiny_model
    n_cands = samples["cands"].shape[1]
    dev = torch.device("cpu")
    # the CPU block is smaller than the batch size: the blocking is exercised
    assert _list_users_per_call(dev, 512, n_cands) < min(512, ds.n_users)
    got = sampled_scores(model, reps, samples, 512, dev)
    assert got.shape == (ds.n_users, n_cands) and got.dtype == np.float64
    np.testing.assert_array_equal(got, _reference_scores(model, reps, samples, 512))
    np.testing.assert_allclose(got, _reference_scores(model, reps, samples, 1), rtol=0, atol=1e-5)
    assert model.training is False


def test_list_users_per_call_bounds() -> None:
    from mdr.training.evaluate import _list_users_per_call

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _list_users_per_call(cpu, 512, 101) == 4096 // 101
    assert _list_users_per_call(cpu, 8, 101) == 8  # never more than batch_size
    assert _list_users_per_call(cpu, 512, 10**6) == 1  # at least one user
    assert _list_users_per_call(cuda, 512, 101) == 512  # GPU: the batch size, as before


def test_evaluate_model_metrics_unchanged(tiny_model: tuple) -> None:
    """evaluate_model's sampled metrics equal those computed from the reference scores."""
    from mdr import metrics
    from mdr.training.evaluate import evaluate_model

    ds, model, reps, samples = tiny_model
    got = evaluate_model(model, ds, "test", 20, 512, "cpu")
    want = metrics.sampled_list_metrics(_reference_scores(model, reps, samples, 512), k=10)
    assert got == want


# --------------------------------------------------------------------------- smoke


def _numbers(obj: object) -> Iterator[float]:
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield float(obj)


def test_quick_suite_smoke(speed: ModuleType, tmp_path: Path) -> None:
    """``speed.py --quick`` on the tiny shop writes a JSON with every section, finite
    positive rates, and a markdown report with a before/after table when asked."""
    out = tmp_path / "speed"
    assert speed.main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    (js,) = out.glob("*.json")
    assert js.name.endswith("-quick.json")
    r = json.loads(js.read_text())
    for key in (
        "created",
        "git_commit",
        "versions",
        "device",
        "data",
        "loader",
        "training",
        "encoding",
        "evaluation",
        "efficiency",
        "headline",
    ):
        assert key in r, key
    assert r["dataset"] == "synthetic-tiny" and r["quick"] is True
    assert all(math.isfinite(v) for v in _numbers(r))
    rates = [
        r["loader"]["samples_per_s"],
        r["evaluation"]["sampled_users_per_s"],
        r["evaluation"]["full_rank_users_per_s"],
        r["efficiency"]["mdr_achieved_gflops"],
        r["efficiency"]["matmul"]["gflops"],
        r["efficiency"]["conv2d"]["gflops"],
        r["encoding"]["naive"]["samples_per_s"],
        r["data"]["prepare"]["wall_s"],
        r["data"]["prepare"]["peak_rss_mb"],
    ]
    rates += [r["training"][k]["samples_per_s"] for k in ("mdr", "din", "deepctr_din")]
    assert all(v > 0 for v in rates), rates
    assert r["evaluation"]["full_rank_users"] == r["evaluation"]["users"] == 150
    assert r["efficiency"]["mdr_flops_per_sample"] > 0
    assert all(v is not None for v in r["headline"].values())
    md = js.with_suffix(".md").read_text()
    assert "deepctr-torch DIN" in md and "Before / after" not in md
    # the same figures compared with themselves: a before/after table
    text = speed.markdown(r, before=r)
    assert "Before / after" in text and "| train: MDR samples/s |" in text
    assert "not measured (--skip-data)" in speed.markdown({**r, "data": None}, before=None)
