"""The photo shop: the embedded shop with every item a real product photo.

Most tests read the real corpus (``$MDR_FASHION_DIR`` or
``../shared/data/fashion-product-images-small``) and skip when it is absent; the
package data, the choosing rule (on drawn stand-in photos) and the missing-corpus
errors are tested everywhere.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mdr.data.shop as syn
from mdr.cli import main
from mdr.data import catalog
from mdr.data.fashion import default_fashion_dir
from mdr.data.labels import BASE_COLOURS
from mdr.data.parse import DataError, SkipLog, image_filename, iter_meta, iter_reviews
from mdr.data.shop import photos as ph
from mdr.data.shop.reviews import _tokens, filler_vocabulary

REPO = Path(__file__).resolve().parents[1]
REVIEWS = "reviews_Synthetic_5.json.gz"
META = "meta_Synthetic.json.gz"


def _corpus() -> Path:
    src = default_fashion_dir(REPO)
    if not (src / "styles.csv").is_file():
        pytest.skip(f"fashion corpus not found at {src} (set MDR_FASHION_DIR)")
    return src


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".mdr-output.json"
    }


@pytest.fixture(scope="module")
def corpus() -> Path:
    return _corpus()


@pytest.fixture(scope="module")
def shop(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("photo") / "tiny"
    summary = syn.generate("tiny", seed=0, out=out, progress=False, photos=corpus)
    assert summary["name"] == "photo-tiny" and summary["photos"]["undecodable"] == 0
    return out


@pytest.fixture(scope="module")
def factors(shop: Path) -> dict:
    return syn.load_factors(shop)


@pytest.fixture(scope="module")
def styles(corpus: Path) -> dict[int, tuple[str, str]]:
    """id -> (baseColour, articleType), read independently of mdr's parser."""
    with (corpus / "styles.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    head = rows[0]
    c, a = head.index("baseColour"), head.index("articleType")
    return {int(r[0]): (r[c], r[a]) for r in rows[1:] if len(r) == len(head)}


# --------------------------------------------------------------------------- the package data


def test_groupings_are_disjoint_and_named() -> None:
    assert set(ph.PHOTO_COLOURS) == set(BASE_COLOURS)  # the real-data weak labels' colours
    assert ph.PHOTO_COLOURS[:10] == syn.FACTOR_BY_NAME["colour"].values  # the drawn ones first
    for groups in (ph.COLOUR_GROUPS, ph.SHAPE_GROUPS):
        labels = [label for members in groups.values() for label in members]
        assert len(labels) == len(set(labels))  # each corpus label in one class at most
    assert set(ph.COMPLEMENTS) == set(ph.PHOTO_SHAPES)
    assert all(set(c) <= set(ph.PHOTO_SHAPES) - {s} for s, c in ph.COMPLEMENTS.items())
    assert len(ph.SHAPE_PRICE) == len(ph.PHOTO_SHAPES) and min(ph.SHAPE_PRICE) > 0
    assert [len(ph.VALUE_WORDS[f]) for f in ("colour", "shape")] == [12, 14]
    assert {f.name for f in ph.PHOTO.factors} == set(syn.FACTOR_BY_NAME)  # all drawn factors


def test_every_value_is_named_by_its_own_words() -> None:
    filler = filler_vocabulary(ph.PHOTO_TEMPLATES)
    owners: dict[str, set[str]] = {}
    for factor, vals in ph.VALUE_WORDS.items():
        for syns in vals:
            for t in {t for p in syns for t in _tokens(p)}:
                owners.setdefault(t, set()).add(factor)
    assert not {t for t, fs in owners.items() if len(fs) > 1}  # no word names two factors
    for factor in ("colour", "shape"):
        per_value = [{t for p in syns for t in _tokens(p)} for syns in ph.VALUE_WORDS[factor]]
        for k, syns in enumerate(ph.VALUE_WORDS[factor]):
            own = (
                per_value[k] - filler - set().union(*(o for j, o in enumerate(per_value) if j != k))
            )
            for phrase in syns:
                assert set(_tokens(phrase)) & own, (factor, phrase)


def test_groupings_have_enough_photos(corpus: Path) -> None:
    photos, counts = ph.corpus_photos(corpus)
    assert counts["candidates"] == len(photos) > 8_000
    colour = Counter(p.colour for p in photos)
    shape = Counter(p.shape for p in photos)
    assert min(colour[k] for k in range(len(ph.PHOTO_COLOURS))) >= 80  # orange: 88
    assert min(shape[k] for k in range(len(ph.PHOTO_SHAPES))) >= 200  # belts: 211


# --------------------------------------------------------------------------- the choosing rule


def _stand_ins(tmp_path: Path, n: int) -> list[ph.Photo]:
    """Candidates on drawn JPEGs: colour class k with weight 2^-k, shapes 9-13 with 4
    photos each, one undecodable file (id 25, a common shape)."""
    gen = np.random.default_rng(0)
    img = tmp_path / "ok.jpg"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(img)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    p_colour = 0.5 ** np.arange(len(ph.PHOTO_COLOURS))
    colour = gen.choice(len(p_colour), n, p=p_colour / p_colour.sum())
    shape = gen.integers(0, 9, n)
    shape[:20] = np.arange(20) % 5 + 9  # the rare shapes, 4 photos each
    return [
        ph.Photo(i, bad if i == 25 else img, f"name {i}", "x", "y", int(c), int(s))
        for i, (c, s) in enumerate(zip(colour, shape))
    ]


def test_choice_fills_every_class_then_follows_the_seeded_order(tmp_path: Path) -> None:
    cands = _stand_ins(tmp_path, 3000)
    n = 600
    chosen, undecodable = ph.choose_photos(cands, n, seed=0)
    assert len(chosen) == n and [p.id for p in chosen] == sorted(p.id for p in chosen)
    assert 25 not in {p.id for p in chosen} and undecodable <= 1
    colour = Counter(p.colour for p in chosen)
    shape = Counter(p.shape for p in chosen)
    available = Counter(p.colour for p in cands if p.id != 25)
    for k in range(len(ph.PHOTO_COLOURS)):  # quota n // 48, or every photo of a rare class
        assert colour[k] >= min(n // 48, available[k])
    assert all(shape[k] == 4 for k in range(9, 14))  # the quota (10) exceeds what exists
    assert colour[0] > colour[3] > colour[6]  # beyond the quotas: the candidates' proportions
    again, _ = ph.choose_photos(cands, n, seed=0)
    other, _ = ph.choose_photos(cands, n, seed=1)
    assert again == chosen and other != chosen
    with pytest.raises(DataError, match="needs 5,000 photos"):
        ph.choose_photos(cands, 5_000, seed=0)


# --------------------------------------------------------------------------- missing corpus


def test_a_missing_corpus_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    nowhere = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"{nowhere}.*MDR_FASHION_DIR"):
        syn.generate("tiny", seed=0, out=tmp_path / "out", progress=False, photos=nowhere)
    assert not (tmp_path / "out").exists()
    assert (
        main(
            [
                "data",
                "synth",
                "-q",
                "--size",
                "tiny",
                "--photos",
                str(nowhere),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(nowhere) in err and "MDR_FASHION_DIR" in err
    monkeypatch.setenv("MDR_FASHION_DIR", str(nowhere))  # the catalog's default place
    with pytest.raises(DataError, match=rf"{nowhere}.*MDR_FASHION_DIR"):
        catalog.resolve("photo-tiny", root=tmp_path / "data", progress=False)
    assert (
        main(["data", "synth", "-q", "--size", "tiny", "--photos", "--out", str(tmp_path / "out")])
        == 2
    )  # --photos alone: the default place
    assert str(nowhere) in capsys.readouterr().err


def test_a_damaged_corpus_reports_every_skipped_row(tmp_path: Path) -> None:
    src = tmp_path / "corpus"
    (src / "images").mkdir(parents=True)
    head = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage"
    rows = [
        "1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual",
        "2,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012",  # a field short
        "3,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual",
        "x4,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual",  # not an id
        "5,Men,Apparel,Bottomwear,Jeans,,Summer,2012,Casual",  # no colour
    ]
    (src / "styles.csv").write_text("\n".join([head, *rows]) + "\n", encoding="utf-8")
    names = ["productDisplayName", *(f"item {i}" for i in range(1, 6))]
    (src / "styles_text.csv").write_text("\n".join(names) + "\n", encoding="utf-8")
    for i in (1, 2, 3, 5):
        Image.new("RGB", (8, 8), (20, 20, 120)).save(src / "images" / f"{i}.jpg")
    photos, counts = ph.corpus_photos(src)
    assert [p.id for p in photos] == [1, 3]
    skipped = counts["skipped"]
    assert skipped["counts"] == {
        "malformed styles.csv row": 1,
        "no baseColour": 1,
        "styles.csv row with a non-integer id": 1,
    }
    assert any(e.startswith("styles.csv:3: malformed") for e in skipped["examples"])
    assert counts["without_label"] == 1  # photographed, well formed, no colour


def test_sizes_beyond_the_corpus_are_refused(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs 23,033 photos"):
        syn.generate("cloth", seed=0, out=tmp_path / "c", progress=False, photos=corpus)
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- the tiny photo shop


def test_layout_counts_and_images_are_the_photos(shop: Path, factors: dict, corpus: Path) -> None:
    cfg = syn.SIZES["tiny"]
    skips = SkipLog()
    reviews = list(iter_reviews(shop / REVIEWS, skips, strict=True))
    assert skips.total() == 0 and len(reviews) == cfg.n_behaviors
    users, items = Counter(r.user for r in reviews), Counter(r.asin for r in reviews)
    assert len(users) == cfg.n_users and min(users.values()) >= 5 and min(items.values()) >= 5
    metas = list(iter_meta(shop / META, fmt="amazon2014", strict=True))
    assert {m.asin for m in metas} == set(items) == set(factors["items"]) == set(factors["photos"])
    shapes = factors["factors"]["shape"]["values"]
    for m in metas:
        photo = factors["photos"][m.asin]
        assert m.leaf_category == shapes[factors["items"][m.asin]["shape"]]
        assert (shop / "images" / image_filename(m.asin)).read_bytes() == (
            corpus / "images" / f"{photo['id']}.jpg"
        ).read_bytes()  # the photo, unchanged
        assert m.title.endswith(f" by {m.brand} {m.brand[:2].upper()}-{m.title[-3:]}")
    assert len({p["id"] for p in factors["photos"].values()}) == cfg.n_items  # distinct photos
    assert (
        factors["photo_source"]["inputs"]["styles.csv"]
        == hashlib.sha256((corpus / "styles.csv").read_bytes()).hexdigest()
    )


def test_colour_and_shape_are_the_photos_labels(factors: dict, styles: dict, corpus: Path) -> None:
    kinds = {f: v["kind"] for f, v in factors["factors"].items()}
    assert kinds == {
        "colour": "visual_dominant",
        "size": "text_only",
        "shape": "visual_dominant",
        "material": "text_only",
        "occasion": "text_only",
        "brand": "text_only",
        "quality": "text_only",
    }
    colours = factors["factors"]["colour"]["values"]
    shapes = factors["factors"]["shape"]["values"]
    assert colours == list(ph.PHOTO_COLOURS) and shapes == list(ph.PHOTO_SHAPES)
    group_of = {
        "colour": {m: c for c, ms in ph.COLOUR_GROUPS.items() for m in ms},
        "shape": {m: s for s, ms in ph.SHAPE_GROUPS.items() for m in ms},
    }
    for asin, photo in factors["photos"].items():
        base, article = styles[photo["id"]]
        assert (photo["baseColour"], photo["articleType"]) == (base, article)
        assert colours[factors["items"][asin]["colour"]] == group_of["colour"][base]
        assert shapes[factors["items"][asin]["shape"]] == group_of["shape"][article]
    for f, names in (("colour", colours), ("shape", shapes)):  # every class has items
        assert {v[f] for v in factors["items"].values()} == set(range(len(names)))


def test_reviews_name_the_items_colour_and_shape(shop: Path, factors: dict) -> None:
    filler = filler_vocabulary(ph.PHOTO_TEMPLATES)
    for f in ("colour", "shape"):
        keys = [{t for p in syns for t in _tokens(p)} - filler for syns in ph.VALUE_WORDS[f]]
        keys = [
            k - set().union(*(o for j, o in enumerate(keys) if j != i)) for i, k in enumerate(keys)
        ]
        own = other = mentioned = 0
        reviews = list(iter_reviews(shop / REVIEWS, SkipLog()))
        for r in reviews:
            hits = {k for k, ks in enumerate(keys) if set(_tokens(r.text)) & ks}
            true = factors["items"][r.asin][f]
            own += true in hits
            other += len(hits - {true})
            mentioned += bool(hits)
        assert 0.15 < mentioned / len(reviews) < 0.6, f
        assert own > 8 * other, f


def test_byte_reproducible_and_seeded(shop: Path, corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    syn.generate("tiny", seed=0, out=again, progress=False, photos=corpus)
    assert _tree(again) == _tree(shop)
    other = tmp_path / "other"
    syn.generate("tiny", seed=1, out=other, progress=False, photos=corpus)

    def photo_ids(folder: Path) -> set[int]:
        doc = json.loads((folder / "factors.json").read_text())
        return {p["id"] for p in doc["photos"].values()}

    assert photo_ids(other) != photo_ids(shop)  # another seed, other photos


def test_photo_tiny_prepares_from_the_catalog(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mdr.data.dataset import ProcessedDataset

    monkeypatch.setenv("MDR_FASHION_DIR", str(corpus))
    proc = catalog.resolve("photo-tiny", root=tmp_path, progress=False)
    assert proc == tmp_path / "proc" / "photo-tiny"
    assert catalog.dataset_name("photo-tiny") == "photo-tiny"
    ds = ProcessedDataset.open(proc)
    m = ds.manifest
    assert m["name"] == "photo-tiny" and m["synthetic"]
    assert (m["config"]["image_size"], m["config"]["n_neg"]) == (catalog.SYNTHETIC_IMAGE_SIZE, 50)
    assert m["counts"]["items_with_image"] == syn.SIZES["tiny"].n_items
    assert set(m["factors"]) >= {"colour", "shape", "size", "brand"}
    assert catalog.resolve("photo-tiny", root=tmp_path, progress=False) == proc  # reused


# --------------------------------------------------------------------------- the pipeline, --quick


@pytest.fixture(scope="module")
def photo_pipeline(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tables 2 and 3, Figure 4 and the image sweep on the tiny photo shop, each as its quick
    pipeline check: what `--dataset photo-small` runs, on a shop that trains in seconds."""
    import os

    from tests.helpers import run_benchmark

    root = tmp_path_factory.mktemp("photo-pipeline")
    results = root / "results"
    env = {
        **os.environ,
        "MDR_DATA": str(root / "data"),
        "MDR_FASHION_DIR": str(corpus),
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
    }
    quick = ["--dataset", "photo-tiny", "--quick", "--jobs", "2", "-q"]

    def script(name: str, *args: str) -> str:
        res = run_benchmark(name, *args, "--results", str(results), env=env)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        return res.stdout

    script("table2", *quick)
    script("table3", *quick)
    folder = results / "photo-tiny"
    mdr_run, vae_run = (folder / "runs" / _table2_run(folder, m) for m in ("mdr-", "beta_"))
    script("figure4", "--run", str(mdr_run), "--compare", str(vae_run), "--effect-items", "20",
           "--probe-epochs", "1", "--dataset", "photo-tiny")  # fmt: skip
    sweep = ["--dataset", "photo-tiny", "--quick", "--variants", "base,size64"]
    assert "1 run(s) reused, 1 to train" in script("image_sweep", *sweep)  # base: Table 2's
    # what selects is validation alone: the same sweep after a test result is changed
    first = (results / "photo-tiny" / "image_sweep_quick.csv").read_bytes()
    manifest = json.loads((results / "photo-tiny" / "image_sweep_quick.manifest.json").read_text())
    test_json = Path(manifest["runs"]["size64"]) / "test.json"
    test_json.write_text(json.dumps({**json.loads(test_json.read_text()), "gauc": 0.99}))
    assert "2 run(s) reused, 0 to train" in script("image_sweep", *sweep)
    assert (results / "photo-tiny" / "image_sweep_quick.csv").read_bytes() == first
    return results / "photo-tiny"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_tables_run_on_the_photo_shop(photo_pipeline: Path) -> None:
    table2 = {r["model"]: r for r in _rows(photo_pipeline / "table2_quick.csv")}
    assert set(table2) == {"wide_deep", "pnn", "deepfm", "beta_vae", "abae", "din_pp", "din", "mdr"}
    assert all(0.0 <= float(r["gauc_mean"]) <= 1.0 for r in table2.values())
    assert table2["mdr"]["inputs"] == "image, text, weak labels"
    table3 = {r["model"] for r in _rows(photo_pipeline / "table3_quick.csv")}
    assert table3 == {"mdr", "mdr_wo_ic"}
    ablations = {r["model"] for r in _rows(photo_pipeline / "ablations_quick.csv")}
    assert {"mdr_wo_ws", "mdr_no_fusion", "mdr_image_only", "mdr_text_only"} <= ablations


def test_figure4_reads_the_photos_with_a_probe_trained_on_them(photo_pipeline: Path) -> None:
    rows = _rows(photo_pipeline / "figure4.csv")
    assert [(r["model"], r["slot"]) for r in rows] == [
        ("mdr", "colour"),
        ("mdr", "shape"),
        ("beta_vae", "colour"),
        ("beta_vae", "shape"),
    ]
    for r in rows:
        for f in ("colour", "shape"):
            assert 0.0 <= float(r[f"probe_acc_{f}"]) <= 1.0  # on held-out real photos
            assert 0.0 <= float(r[f"{f}_flip"]) <= 1.0
    md = (photo_pipeline / "figure4.md").read_text()
    assert "real product photo" in md and "Synthetic shop:" not in md
    assert sorted(p.name for p in (photo_pipeline / "figures").glob("figure4-*.png"))


def test_the_image_sweep_prepares_each_variant_and_selects_on_validation(
    photo_pipeline: Path,
) -> None:
    rows = {r["variant"]: r for r in _rows(photo_pipeline / "image_sweep_quick.csv")}
    assert set(rows) == {"base", "size64"}
    assert (rows["base"]["image_size"], rows["size64"]["image_size"]) == ("32", "64")
    assert rows["base"]["label_fraction"] == rows["size64"]["label_fraction"] == "0.1"
    for r in rows.values():
        assert 0.0 <= float(r["valid_gauc"]) <= 1.0 and r["epochs_run"] == "1"
    manifest = json.loads((photo_pipeline / "image_sweep_quick.manifest.json").read_text())
    assert manifest["chosen"] in rows and manifest["quick"] is True
    assert Path(manifest["runs"]["size64"]).parent == photo_pipeline / "runs"
    assert manifest["runs"]["base"] == str(photo_pipeline / "runs" / _table2_run(photo_pipeline))
    md = (photo_pipeline / "image_sweep_quick.md").read_text()
    assert "| size64 | 64x64 photos" in md and "Chosen for the tables:" in md
    assert not (photo_pipeline / "image_sweep.csv").exists()  # quick never overwrites


def _table2_run(folder: Path, prefix: str = "mdr-") -> str:
    runs = json.loads((folder / "table2_quick.manifest.json").read_text())["runs"]
    return next(r for r in runs if r.startswith(prefix))


def test_a_sweep_variant_is_its_own_dataset(photo_pipeline: Path) -> None:
    from mdr.data.dataset import ProcessedDataset

    manifest = json.loads((photo_pipeline / "image_sweep_quick.manifest.json").read_text())
    config = (Path(manifest["runs"]["size64"]) / "config.yaml").read_text()
    proc = Path(next(ln.split(": ", 1)[1] for ln in config.splitlines() if " data: " in ln))
    assert proc.name == "photo-tiny-size64"
    ds = ProcessedDataset.open(proc)
    assert ds.name == "photo-tiny-size64" and ds.manifest["config"]["image_size"] == 64


def test_the_sweep_keeps_the_base_unless_validation_clearly_prefers_another() -> None:
    from benchmarks.diagnostics.image_sweep import MARGIN, chosen

    base = {"variant": "base", "valid_gauc": 0.70}
    near = {"variant": "wide", "valid_gauc": 0.70 + MARGIN / 2}
    far = {"variant": "size64", "valid_gauc": 0.70 + 2 * MARGIN}
    assert chosen([base, near])[0] == "base"
    assert chosen([base, near, far])[0] == "size64"
    assert chosen([near, far])[0] == ""  # nothing to choose against
