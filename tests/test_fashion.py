"""Real product photos: the fashion-images loader (the image side's model and training on
them: tests/test_image_side.py).

Most tests use a small FIXTURE corpus in the public layout (styles.csv,
styles_text.csv, images/<id>.jpg drawn with PIL) with every hazard the real
files have or could have: a malformed row, a missing and a corrupt photo, an
NA colour, display names with quoted and unquoted commas, a photo without a
row. One test reads the real corpus (``$MDR_FASHION_DIR`` or
``../shared/data/fashion-product-images-small``) and skips when it is absent.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mdr.data.fashion import (
    OTHER,
    FashionImages,
    class_names,
    default_fashion_dir,
    prepare_fashion,
)
from mdr.data.parse import DataError

REPO = Path(__file__).resolve().parents[1]
HEADER = [
    "id",
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "year",
    "usage",
]
RGB = {"Red": (220, 30, 30), "Blue": (30, 40, 220), "Green": (30, 180, 40), "Pink": (250, 150, 200)}
N_GOOD = 48  # well-formed rows with a good photo (ids 1..48)
COMMA_NAME = "Nike Women's Tempo 3.5\", Pink Short"  # quoted in the file
UNQUOTED_NAME = "Puma Men, Black Tshirt"  # written raw: csv splits it in two


# --------------------------------------------------------------------------- fixture corpus


def _draw(colour: str, article: str, path: Path) -> None:
    """A 48x40 (non-square) photo: a coloured square (Tshirts) or disc (Watches) on white."""
    img = Image.new("RGB", (48, 40), (255, 255, 255))
    d = ImageDraw.Draw(img)
    box = (10, 6, 38, 34)
    (d.rectangle if article == "Tshirts" else d.ellipse)(box, fill=RGB[colour])
    img.save(path, quality=95)


def make_corpus(root: Path, n_good: int = N_GOOD) -> Path:
    """Write the fixture corpus; returns its folder."""
    (root / "images").mkdir(parents=True)
    rows, names = [], []
    for i in range(1, n_good + 1):
        colour = ("Red", "Blue", "Green")[i % 3] if i != 7 else "Pink"  # Pink: a rare colour
        article = ("Tshirts", "Watches")[(i // 3) % 2]
        rows.append(
            [str(i), "Men", "Apparel", "Topwear", article, colour, "Fall", "2012", "Casual"]
        )
        names.append(f"Brand{i} Men {colour} {article}")
        _draw(colour, article, root / "images" / f"{i}.jpg")
    names[4] = COMMA_NAME  # id 5
    names[5] = UNQUOTED_NAME  # id 6
    extra = [
        (
            ["61", "Men", "Apparel", "Topwear", "Tshirts", "Red", "Fall", "2012", "Casual", "X"],
            "malformed",
        ),  # 10 fields: line N_GOOD + 2
        (
            ["62", "Men", "Apparel", "Topwear", "Tshirts", "Red", "Fall", "2012", "Casual"],
            "no photo",
        ),
        (
            ["63", "Men", "Apparel", "Topwear", "Tshirts", "Blue", "Fall", "2012", "Casual"],
            "corrupt photo",
        ),
        (
            ["64", "Men", "Apparel", "Topwear", "Watches", "NA", "Fall", "2012", "Casual"],
            "NA colour",
        ),
    ]
    for row, name in extra:
        rows.append(row)
        names.append(name)
    (root / "images" / "63.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 3)
    _draw("Red", "Tshirts", root / "images" / "64.jpg")
    _draw("Red", "Tshirts", root / "images" / "999.jpg")  # a photo without a row
    with (root / "styles.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows)
    with (root / "styles_text.csv").open("w", newline="", encoding="utf-8") as fh:
        fh.write("productDisplayName\n")
        for name in names:
            if name == UNQUOTED_NAME:
                fh.write(name + "\n")
            else:
                csv.writer(fh, lineterminator="\n").writerow([name])
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("fashion") / "src")


@pytest.fixture(scope="module")
def proc(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fashion-proc") / "proc"
    prepare_fashion(corpus, out, image_size=16, min_count=3, label_fraction=0.5, progress=False)
    return out


# --------------------------------------------------------------------------- loader


def test_prepare_counts_skips_and_joins_names(proc: Path) -> None:
    ds = FashionImages.open(proc)
    m = ds.manifest
    assert m["kind"] == "images-only"
    assert ds.n_items == N_GOOD  # 61 malformed, 62 no photo, 63 corrupt, 64 NA colour
    assert m["counts"]["styles_rows"] == N_GOOD + 4
    assert m["counts"]["rows_without_image"] == 1  # id 62
    skips = m["skips"]["counts"]
    assert skips == {
        "image corrupt or truncated": 1,
        "malformed styles.csv row": 1,
        "no baseColour": 1,
        "photo without a styles.csv row": 1,
    }
    examples = "\n".join(m["skips"]["examples"])
    assert f"styles.csv:{N_GOOD + 2}: malformed styles.csv row" in examples
    assert "images/63.jpg" in examples
    assert [it["id"] for it in ds.items] == list(range(1, N_GOOD + 1))
    assert ds.items[4]["name"] == COMMA_NAME
    assert ds.items[5]["name"] == UNQUOTED_NAME
    assert ds.images.shape == (N_GOOD, 16, 16, 3) and ds.images.dtype == np.uint8


def test_labels_factors_and_rare_classes(proc: Path) -> None:
    ds = FashionImages.open(proc)
    # Pink (1 item) is below min_count=3: merged into "other", which comes last
    assert ds.factor_names["colour"][-1] == OTHER
    assert set(ds.factor_names["colour"]) == {"Red", "Blue", "Green", OTHER}
    assert ds.label_names["article"] == ["Tshirts", "Watches"] or ds.label_names["article"] == [
        "Watches",
        "Tshirts",
    ]
    colour = np.array(ds.factor_names["colour"])[ds.factors["colour"]]
    expected = [it["baseColour"] if it["baseColour"] != "Pink" else OTHER for it in ds.items]
    assert colour.tolist() == expected
    # the photo shows its colour: the centre pixel of every Red item is reddish
    centre = ds.images[:, 8, 8].astype(int)
    red = colour == "Red"
    assert (centre[red, 0] > 150).all() and (centre[red, 2] < 100).all()
    # corners are the white background (a 48x40 photo padded on white, not cropped)
    assert (ds.images[:, 0, 0] > 240).all()
    # weak labels: a seeded half of the items keep each label; the kept ones are the truth
    for name in ("colour", "article"):
        weak, truth = ds.labels[name], ds.factors[name]
        kept = weak >= 0
        assert kept.sum() == N_GOOD // 2
        assert (weak[kept] == truth[kept]).all() and (weak[~kept] == -1).all()
    assert not np.array_equal(ds.labels["colour"] >= 0, ds.labels["article"] >= 0)


def test_class_names_order_and_drop(corpus: Path, tmp_path: Path) -> None:
    assert class_names(["b", "a", "b", "c", "a", "b"], 2) == (["b", "a"], {"c"})
    m = prepare_fashion(
        corpus, tmp_path / "p", image_size=16, min_count=3, rare="drop", progress=False
    )
    assert m["counts"]["items"] == N_GOOD - 1
    assert m["skips"]["counts"]["rare baseColour (< min_count)"] == 1
    assert OTHER not in m["labels"]["colour"]


def _tree(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_prepare_is_byte_reproducible(corpus: Path, proc: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    prepare_fashion(corpus, again, image_size=16, min_count=3, label_fraction=0.5, progress=False)
    assert _tree(again) == _tree(proc)
    other_seed = tmp_path / "seed1"
    prepare_fashion(
        corpus, other_seed, image_size=16, min_count=3, label_fraction=0.5, seed=1, progress=False
    )
    assert _tree(other_seed)["labels.npz"] != _tree(proc)["labels.npz"]
    assert _tree(other_seed)["images.npy"] == _tree(proc)["images.npy"]


def test_strict_and_structural_errors(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"styles.csv:{N_GOOD + 2}: malformed"):
        prepare_fashion(corpus, tmp_path / "s", image_size=16, strict=True, progress=False)
    bad = make_corpus(tmp_path / "bad", n_good=6)
    lines = (bad / "styles_text.csv").read_text(encoding="utf-8").splitlines()
    (bad / "styles_text.csv").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="aligned row by row"):
        prepare_fashion(bad, tmp_path / "b", image_size=16, progress=False)
    (bad / "styles.csv").write_text("id,colour\n1,Red\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"styles.csv:1: missing column"):
        prepare_fashion(bad, tmp_path / "b", image_size=16, progress=False)
    with pytest.raises(DataError, match="not found"):
        prepare_fashion(tmp_path / "nowhere", tmp_path / "n", progress=False)
    with pytest.raises(DataError, match=r"no dataset\.json"):
        FashionImages.open(tmp_path)
    assert not (tmp_path / "s").exists() and not (tmp_path / "b").exists()


def test_limit_and_cli(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mdr.cli import main

    assert (
        main(
            [
                "data",
                "fashion-images",
                "-q",
                "--dir",
                str(corpus),
                "--out",
                str(tmp_path / "cli"),
                "--image-size",
                "16",
                "--limit",
                "10",
                "--min-count",
                "2",
            ]
        )
        == 0
    )
    ds = FashionImages.open(tmp_path / "cli")
    assert [it["id"] for it in ds.items] == list(range(1, 11))
    assert ds.manifest["config"]["limit"] == 10
    assert "10 photos" in capsys.readouterr().out


def test_default_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MDR_FASHION_DIR", str(tmp_path))
    assert default_fashion_dir() == tmp_path
    monkeypatch.delenv("MDR_FASHION_DIR")
    assert (
        default_fashion_dir(REPO)
        == (REPO / ".." / "shared" / "data" / "fashion-product-images-small").resolve()
    )


def test_real_corpus_subset(tmp_path: Path) -> None:
    src = default_fashion_dir(REPO)
    if not (src / "styles.csv").is_file():
        pytest.skip(f"fashion corpus not found at {src} (set MDR_FASHION_DIR)")
    m = prepare_fashion(src, tmp_path / "real", image_size=32, limit=200, progress=False)
    ds = FashionImages.open(tmp_path / "real")
    assert 190 <= ds.n_items <= 200 and ds.images.shape[1:] == (32, 32, 3)
    assert m["counts"]["styles_rows"] == 44446 and m["counts"]["photos"] == 9583
    ids = [it["id"] for it in ds.items]
    assert ids == sorted(ids)
    # each item's labels are its own styles.csv row's (naive lookup: styles.csv has no commas)
    table = {}
    with (src / "styles.csv").open(encoding="utf-8") as fh:
        for line in fh.read().splitlines()[1:]:
            f = line.split(",")
            table[int(f[0])] = (f[4], f[5])
    for it in ds.items:
        assert (it["articleType"], it["baseColour"]) == table[it["id"]]
    # photos are product shots on a light background
    assert ds.images[:, 0, 0].mean() > 200


def test_the_fashion_benchmark_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nox -s fashion` on 400 real photos, one epoch: every stage runs (prepare, train,
    scores, Figure 4, and the traversal effect read by a probe fit on reconstructions)."""
    import json

    src = default_fashion_dir(REPO)
    if not (src / "styles.csv").is_file():
        pytest.skip(f"fashion corpus not found at {src} (set MDR_FASHION_DIR)")
    monkeypatch.setenv("MDR_DATA", str(tmp_path / "data"))
    from benchmarks.diagnostics import fashion

    results = tmp_path / "results"
    assert (
        fashion.main(
            [
                "--dir",
                str(src),
                "--limit",
                "400",
                "--epochs",
                "1",
                "--variants",
                "image",
                "--results",
                str(results),
                "--quiet",
            ]
        )
        == 0
    )
    out = results / "fashion-images"
    manifest = json.loads((out / "fashion.manifest.json").read_text())
    assert manifest["dataset"] == "fashion-images"
    effect = (out / "traversal_effect.csv").read_text().splitlines()
    assert len(effect) > 1 and "colour" in effect[0]
    assert list((out / "figures").glob("figure4-image-*.png"))
