"""Latent traversals (Figure 4) and their measured effect: known answers with a hand-built
decoder, then the MDR decoder and the figure script on the tiny shop."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mdr.explain.drawing import draw_traversal
from mdr.explain.effect import traversal_effect
from mdr.explain.probe import as_images, fit_probe
from mdr.explain.traversal import (
    NoImageDecoderError,
    image_decoder,
    item_codes,
    slot_columns,
    traversal_values,
    traverse,
)

REPO = Path(__file__).resolve().parent.parent
S = 16  # side of the hand-drawn images
RGB = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.9]])  # red, green, blue
_YY, _XX = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
SQUARE = ((_YY - 7.5).abs() <= 5) & ((_XX - 7.5).abs() <= 5)  # (S, S)
BAR = ((_YY - 7.5).abs() <= 2) & ((_XX - 7.5).abs() <= 6)  # a wide bar


def colour_of(code: torch.Tensor) -> torch.Tensor:
    """dim 0 -> colour class: < -0.5 red, [-0.5, 0.5) green, >= 0.5 blue."""
    return torch.bucketize(code[:, 0].contiguous(), torch.tensor([-0.5, 0.5]), right=True)


def shape_of(code: torch.Tensor) -> torch.Tensor:
    """dim 1 -> shape class: < 0 square (0), >= 0 bar (1)."""
    return (code[:, 1] >= 0).long()


def hand_decode(code: torch.Tensor) -> torch.Tensor:
    """A known decoder: dim 0 sets the fill colour, dim 1 the shape, dim 2 nothing.
    (m, 3) -> (m, 3, S, S) on a white background."""
    colour = RGB[colour_of(code)]  # (m, 3)
    mask = torch.where(shape_of(code)[:, None, None].bool(), BAR, SQUARE)  # (m, S, S)
    img = torch.ones(code.shape[0], 3, S, S)
    return torch.where(mask[:, None], colour[:, :, None, None], img)


class HandProbe:
    """An exact reader of the hand-drawn images (one-hot probabilities)."""

    factors = ("colour", "shape")

    def __init__(self) -> None:
        self.holdout_accuracy: dict[str, float] = {}  # not trained: nothing held out

    def predict_proba(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        centre = images[:, :, 8, 8]  # (n, 3): inside both shapes
        colour = centre.argmax(1)  # red/green/blue by the dominant channel
        corner = images[:, :, 3, 3]  # inside the square only
        bar = (corner > 0.95).all(1).long()
        return {"colour": np.eye(3)[colour.numpy()], "shape": np.eye(2)[bar.numpy()]}


SLOTS = {"colour": [0], "shape": [1], "nuisance": [2]}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the 2-core machine is shared, and tiny ops only lose to threading."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_codes(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(-2, 2, (n, 3))).float()


# --------------------------------------------------------------------------- traverse


def test_traverse_shapes_range_and_values() -> None:
    code = torch.tensor([1.0, -1.0, 0.3])
    grid = traverse(hand_decode, code, [0, 1], n_steps=10, span=2.0)
    assert grid.shape == (2, 10, 3, S, S)
    assert float(grid.min()) >= 0.0 and float(grid.max()) <= 1.0
    values = traversal_values([0, 1], 10, span=2.0)
    assert torch.allclose(values[0], torch.linspace(-2, 2, 10))
    # row 0 varies dim 0 only: the shape stays a square, the colour goes red -> green -> blue
    rows = torch.stack(
        [torch.linspace(-2, 2, 10), torch.full((10,), -1.0), torch.full((10,), 0.3)], 1
    )
    assert torch.equal(grid[0], hand_decode(rows))
    assert traversal_values([0], 5, span=(1.0, 3.0))[0].tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]


def test_traverse_reference_quantiles() -> None:
    ref = torch.zeros(101, 3)
    ref[:, 0] = torch.arange(101.0)  # quantiles 5 and 95 exactly
    ref[:, 1] = -torch.arange(101.0) / 10
    values = traversal_values([0, 1], 10, reference=ref)
    assert values.shape == (2, 10)
    assert values[0, 0].item() == pytest.approx(5.0) and values[0, -1].item() == pytest.approx(95.0)
    assert values[1, 0].item() == pytest.approx(-9.5) and values[1, -1].item() == pytest.approx(
        -0.5
    )
    grid = traverse(hand_decode, ref[3], [0], n_steps=4, reference=ref)
    assert grid.shape == (1, 4, 3, S, S)


def test_traverse_is_deterministic() -> None:
    code = torch.tensor([0.2, 0.4, -1.0])
    a = traverse(hand_decode, code, [0, 1, 2], reference=random_codes(50))
    b = traverse(hand_decode, code, [0, 1, 2], reference=random_codes(50))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"columns": [3]}, "out of range"),
        ({"columns": []}, "at least one"),
        ({"n_steps": 1}, "at least 2"),
        ({"span": 1.0, "reference": torch.zeros(4, 3)}, "not both"),
        ({"span": (1.0, -1.0)}, "increasing"),
        ({"code": torch.zeros(2, 3)}, r"\(d,\)"),
    ],
)
def test_traverse_rejects_bad_input(kwargs: dict, match: str) -> None:
    args = {"decode": hand_decode, "code": torch.zeros(3), "columns": [0], **kwargs}
    with pytest.raises(ValueError, match=match):
        traverse(**args)


# --------------------------------------------------------------------------- measured effect


def test_effect_matrix_known_answer() -> None:
    """span 2, 10 steps: dim 0 goes red (4 steps) -> green (2) -> blue (4), so 6 of the 9
    later steps differ from the first; dim 1 turns square -> bar at 5 of 9; dim 2
    changes nothing. The exact probe must give exactly that matrix."""
    codes = random_codes(30)
    labels = {"colour": colour_of(codes).numpy(), "shape": shape_of(codes).numpy()}
    eff = traversal_effect(hand_decode, codes, range(10), SLOTS, HandProbe(), labels, span=2.0)
    expected = np.array([[6 / 9, 0.0], [0.0, 5 / 9], [0.0, 0.0]])
    assert eff.slots == ("colour", "shape", "nuisance") and eff.factors == ("colour", "shape")
    np.testing.assert_allclose(eff.flip, expected)
    np.testing.assert_allclose(eff.tv, expected)  # one-hot probabilities: TV == flips
    assert eff.pixel_change[0] > 0.05 and eff.pixel_change[1] > 0.01
    assert eff.pixel_change[2] == 0.0
    assert eff.recon_accuracy == {"colour": 1.0, "shape": 1.0}
    assert eff.n_items == 10 and eff.n_steps == 10
    assert eff.rows()[0]["colour_flip"] == pytest.approx(6 / 9)


def test_effect_shows_a_decoder_that_ignores_the_code() -> None:
    def constant(code: torch.Tensor) -> torch.Tensor:
        return hand_decode(torch.zeros_like(code))  # green bar, whatever the code

    codes = random_codes(20)
    labels = {"colour": colour_of(codes).numpy(), "shape": shape_of(codes).numpy()}
    eff = traversal_effect(constant, codes, range(20), SLOTS, HandProbe(), labels)
    assert not eff.flip.any() and not eff.pixel_change.any()
    assert eff.recon_accuracy["colour"] == pytest.approx(float(np.mean(labels["colour"][:20] == 1)))


def test_fitted_probe_recovers_the_effect_and_is_deterministic() -> None:
    codes = random_codes(160, seed=1)
    images = hand_decode(codes)  # the "real" images of this toy shop
    labels = {"colour": colour_of(codes).numpy(), "shape": shape_of(codes).numpy()}
    kw = {"epochs": 10, "lr": 5e-3, "seed": 0, "width": (8, 16, 16)}
    probe = fit_probe(images, labels, **kw)
    assert probe.holdout_accuracy["colour"] >= 0.95 and probe.holdout_accuracy["shape"] >= 0.95
    held = probe.holdout_index  # the rows it never trained on: 20 % of 160, each once
    assert len(held) == 32 and len(set(held.tolist())) == 32 and list(held) == sorted(held)
    preds = probe.predict_proba(as_images(images[held]))["colour"].argmax(1)
    assert np.mean(preds == labels["colour"][held]) == probe.holdout_accuracy["colour"]
    again = fit_probe(images, labels, **kw)
    for p, q in zip(probe.parameters(), again.parameters()):
        assert torch.equal(p, q)
    eff = traversal_effect(hand_decode, codes, range(12), SLOTS, probe, labels, span=2.0)
    assert eff.flip[0, 0] == pytest.approx(6 / 9, abs=0.1)  # colour slot -> colour
    assert eff.flip[1, 1] == pytest.approx(5 / 9, abs=0.1)  # shape slot -> shape
    assert eff.flip[0, 1] < 0.1 and eff.flip[1, 0] < 0.1  # and not the other factor
    assert eff.probe_accuracy == probe.holdout_accuracy


def test_fit_probe_rejects_bad_labels() -> None:
    images = hand_decode(random_codes(10))
    with pytest.raises(ValueError, match="shape"):
        fit_probe(images, {"colour": np.zeros(9, dtype=int)}, epochs=1)
    with pytest.raises(ValueError, match="no labelled"):
        fit_probe(images, {"colour": -np.ones(10, dtype=int)}, epochs=1)


def test_draw_traversal_writes_a_png(tmp_path: Path) -> None:
    grid = traverse(hand_decode, torch.zeros(3), [0, 1], span=2.0)
    path = draw_traversal(grid, tmp_path / "t.png", "hand", ["dim 0", "dim 1"], original=grid[0, 0])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < 60_000
    with pytest.raises(ValueError, match="row labels"):
        draw_traversal(grid, tmp_path / "u.png", row_labels=["one"])


# --------------------------------------------------------------------------- MDR runs


def test_image_decoder_on_the_tiny_run(tiny_mdr_run: Path) -> None:
    from mdr.training.runs import load_run

    torch.set_num_threads(1)
    lr = load_run(tiny_mdr_run)
    model = lr.model
    codes = item_codes(model)
    assert codes.shape == (lr.ds.n_items, model.rep_dim)
    slots = slot_columns(model, ["colour", "shape"])
    visual = set(model.fusion.visual_index.tolist())
    assert slots["colour"] and set(slots["colour"]) <= visual and set(slots["shape"]) <= visual
    decode = image_decoder(model)
    items = torch.arange(5)
    with torch.no_grad():  # the decoder reads exactly what the training loss decodes (Eq. 9)
        enc = model._encode(items, sample=False)
        want = model.image.decode(enc["r_content"][:, model.fusion.visual_index])
        assert torch.allclose(decode(codes[:5]), want.clamp(0, 1), atol=1e-6)
    grid = traverse(decode, codes[0], slots["colour"], reference=codes)
    size = lr.ds.images.shape[1]
    assert grid.shape == (len(slots["colour"]), 10, 3, size, size)
    assert torch.equal(grid, traverse(decode, codes[0], slots["colour"], reference=codes))
    with pytest.raises(ValueError, match="not in the model's slots"):
        slot_columns(model, ["nope"])
    with pytest.raises(ValueError, match="no columns read by the image decoder"):
        slot_columns(model, ["material"])  # text-only: the image decoder never reads it


def test_image_decoder_needs_an_image_side() -> None:
    with pytest.raises(NoImageDecoderError, match="no image decoder"):
        image_decoder(torch.nn.Linear(2, 2))


@pytest.fixture()
def figure4(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    from benchmarks.paper import figure4 as module

    return module


def test_figure4_script_on_the_tiny_run(figure4, tiny_mdr_run: Path, tmp_path: Path) -> None:
    args = [
        "--run",
        str(tiny_mdr_run),
        "--results",
        str(tmp_path),
        "--items",
        "2",
        "--effect-items",
        "8",
        "--probe-epochs",
        "1",
        "--steps",
        "4",
    ]
    assert figure4.main(args) == 0
    out = tmp_path / "synthetic-tiny"
    pngs = sorted(p.name for p in (out / "figures").glob("figure4-*.png"))
    assert len(pngs) == 4 and pngs[0].startswith("figure4-colour-item")
    with (out / "figure4.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["slot"] for r in rows] == ["colour", "shape"] and rows[0]["role"] == "main"
    for r in rows:
        for key in ("colour_flip", "shape_flip", "colour_tv", "shape_tv", "recon_acc_colour"):
            assert 0.0 <= float(r[key]) <= 1.0
        assert r["n_items"] == "8" and r["n_steps"] == "4"
    md = (out / "figure4.md").read_text()
    assert "| mdr | colour |" in md and "Probe accuracy on the reconstructions" in md
    assert (out / "figure4.manifest.json").is_file()


def _one_line_error(figure4, args: list[str], capsys: pytest.CaptureFixture) -> str:
    """What a user of ``python -m benchmarks.figure4 ARGS`` reads: exit 2 and one line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        figure4.run_script("figure4", lambda: figure4.main(args))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("figure4: error: ") and err.count("\n") == 1, err
    return err


def test_figure4_refuses_a_run_without_images(
    figure4,
    tiny_proc: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from tests.helpers import train_tiny

    run = train_tiny(tiny_proc, tmp_path / "abae", "abae", epochs=1, steps=1)
    err = _one_line_error(figure4, ["--run", str(run), "--results", str(tmp_path / "res")], capsys)
    assert "no image decoder" in err


def test_figure4_needs_a_table2_manifest(
    figure4, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = _one_line_error(
        figure4, ["--results", str(tmp_path), "--dataset", "synthetic-tiny"], capsys
    )
    assert "table2.manifest.json: not found" in err


def test_figure4_names_a_slot_the_model_lacks(
    figure4,
    tiny_proc: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from tests.helpers import train_tiny

    run = train_tiny(tiny_proc, tmp_path / "mdr", "mdr", epochs=1, steps=1)
    err = _one_line_error(
        figure4, ["--run", str(run), "--slots", "hue", "--results", str(tmp_path / "res")], capsys
    )
    assert "--slots: slot 'hue' not in the model's slots" in err


def test_figure4_of_a_table_without_images_is_skipped(
    figure4,
    tiny_proc: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """Real review files have no images: `nox -s figures` skips Figure 4 and goes on."""
    import json
    import shutil

    from tests.helpers import train_tiny

    proc = tmp_path / "proc"
    shutil.copytree(tiny_proc, proc)
    np.save(proc / "image_mask.npy", np.zeros_like(np.load(proc / "image_mask.npy")))
    runs = tmp_path / "res" / "synthetic-tiny" / "runs"
    train_tiny(proc, runs / "mdr-000000000000-s0", "mdr_text_only", epochs=1, steps=1)
    (runs.parent / "table2.manifest.json").write_text(
        json.dumps({"dataset": "synthetic-tiny", "runs": {"mdr-000000000000-s0": "config.yaml"}})
    )
    capsys.readouterr()
    args = ["--dataset", "synthetic-tiny", "--results", str(tmp_path / "res")]
    assert figure4.main(args) == 0
    assert "has no images" in capsys.readouterr().out
    assert not (runs.parent / "figure4.csv").exists()
    # a run named explicitly is still refused: the user asked for that run's traversals
    _one_line_error(figure4, ["--run", str(runs / "mdr-000000000000-s0"), *args[2:]], capsys)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
