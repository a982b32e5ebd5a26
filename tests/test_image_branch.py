"""The image-branch diagnostics: known answers, and an end-to-end run on the tiny shop."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from benchmarks.diagnostics import image_branch


def test_reconstruction_stats_known_answers() -> None:
    x = torch.zeros(2, 3, 4, 4)
    x[1] = 1.0  # two images: black and white; the mean image is 0.5 everywhere
    same = image_branch.reconstruction_stats(x, x.clone())
    assert same["mse_per_pixel"] == 0.0 and same["mean_image_mse_per_pixel"] == 0.25
    grey = image_branch.reconstruction_stats(x, torch.full_like(x, 0.5))
    assert grey["mse_per_pixel"] == pytest.approx(0.25) and grey["across_item_std"] == 0.0


def test_dead_fraction_counts_units_that_never_fire() -> None:
    from mdr.models.image_vae import ImageDecoder

    dec = ImageDecoder(8, 3, (4, 4), hidden=5)
    codes = torch.randn(16, 3)
    with torch.no_grad():
        for m in dec.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d)):
                m.weight.zero_()
                m.bias.fill_(-1.0)  # every pre-activation is -1: every ReLU unit is dead
    assert image_branch.dead_fraction(dec, codes) == 1.0
    with torch.no_grad():
        for m in dec.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d)):
                m.bias.fill_(1.0)
    assert image_branch.dead_fraction(dec, codes) == 0.0


def test_image_branch_on_the_tiny_run(tiny_mdr_run: Path, tmp_path: Path) -> None:
    args = [
        "--run",
        str(tiny_mdr_run),
        "--vae-epochs",
        "2",
        "--batch",
        "16",
        "--threads",
        "1",
        "--results",
        str(tmp_path),
    ]
    assert image_branch.main(args) == 0
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    with (folder / "image_branch.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["source"] for r in rows] == [
        "run",
        "vae alone (held out)",
        "vae alone (held out)",
        "vae alone",
    ]
    assert [r["epoch"] for r in rows[1:3]] == ["1", "2"]
    for r in rows[1:3]:
        assert math.isfinite(float(r["heldout_rec"])) and float(r["heldout_rec"]) >= 0.0
    for r in (rows[0], rows[-1]):
        for k in (
            "mse_per_pixel",
            "mean_image_mse_per_pixel",
            "across_item_std",
            "dead_relu_fraction",
        ):
            assert math.isfinite(float(r[k])) and float(r[k]) >= 0.0
    # the VAE alone is a run of the one trainer, reused on a rerun
    (alone,) = (folder / "runs").iterdir()
    assert (alone / "DONE").is_file() and alone.name.startswith("vae-alone-")
    before = (alone / "test.json").read_bytes()
    assert image_branch.main(args) == 0
    assert (alone / "test.json").read_bytes() == before


def test_a_run_without_an_image_decoder_is_one_clear_error(tiny_proc: Path, tmp_path: Path) -> None:
    from mdr.training.runs import RunError, load_run
    from tests.helpers import train_tiny

    abae = load_run(train_tiny(tiny_proc, tmp_path / "abae-s0", "abae", epochs=1, steps=1))
    with pytest.raises(
        RunError,
        match=r"abae-s0: model 'abae' has no image decoder; the "
        r"image-branch diagnostics decode",
    ):
        image_branch.decoder_diagnostics(abae)
