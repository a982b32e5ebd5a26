"""Known-answer tests for ``mdr data prepare`` (mdr.data.preprocess, text, images, labels)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdr.config import PrepareConfig
from mdr.data import images as mimages
from mdr.data import labels as mlabels
from mdr.data import preprocess as pp
from mdr.data import text as mtext
from mdr.data.dataset import REQUIRED_FILES, TEST, TRAIN, VALID, ProcessedDataset
from mdr.data.parse import DataError, SkipLog, image_filename, iter_meta, iter_reviews
from mdr.seeding import rng
from tests import fixtures_raw as fx

CFG = PrepareConfig(
    image_size=8,
    n_neg=3,
    k_core=3,
    max_text_len=6,
    w2v_dim=8,
    w2v_min_count=1,
    w2v_epochs=1,
    label_fraction=1.0,
    image_workers=2,
)


def _prepare(raw: fx.RawFixture, out: Path, cfg: PrepareConfig = CFG, **kw) -> dict:
    return pp.prepare(raw.root, out, category=raw.category, cfg=cfg, progress=False, **kw)


@pytest.fixture(scope="module")
def raw14(tmp_path_factory: pytest.TempPathFactory) -> fx.RawFixture:
    root = tmp_path_factory.mktemp("raw14")
    return fx.write_raw_2014(root / "raw", malicious_target=root / "pwned")


@pytest.fixture(scope="module")
def proc14(raw14: fx.RawFixture, tmp_path_factory: pytest.TempPathFactory) -> ProcessedDataset:
    out = tmp_path_factory.mktemp("proc14") / "ds"
    _prepare(raw14, out)
    return ProcessedDataset.open(out)


@pytest.fixture(scope="module")
def raw18(tmp_path_factory: pytest.TempPathFactory) -> fx.RawFixture:
    return fx.write_raw_2018(tmp_path_factory.mktemp("raw18") / "raw")


@pytest.fixture(scope="module")
def proc18(raw18: fx.RawFixture, tmp_path_factory: pytest.TempPathFactory) -> ProcessedDataset:
    out = tmp_path_factory.mktemp("proc18") / "ds"
    _prepare(raw18, out)
    return ProcessedDataset.open(out)


def _sequences(ds: ProcessedDataset) -> dict[str, list[str]]:
    asins = [it["asin"] for it in ds.items]
    return {ds.user_ids[u]: [asins[i] for i in seq] for u, seq in enumerate(ds.user_sequences)}


# --------------------------------------------------------------------------- parsing, both formats


def test_2014_known_answer(proc14: ProcessedDataset, raw14: fx.RawFixture) -> None:
    assert proc14.user_ids == sorted(fx.USERS)
    assert [it["asin"] for it in proc14.items] == sorted(fx.ITEMS)
    assert _sequences(proc14) == raw14.sequences
    assert [it["category"] for it in proc14.items] == fx.EXPECTED_LEAF  # categories[-1][-1]
    cats = proc14.category_names
    assert [cats[c] for c in proc14.item_category] == fx.EXPECTED_LEAF
    assert proc14.items[0] == {
        "asin": fx.ITEMS[0],
        "title": "Navy Cotton Dress",
        "category": "Dresses",
        "brand": "Brand0",
    }
    assert proc14.items[9]["title"] == ""  # no meta line: kept, counted
    m = proc14.manifest
    assert m["name"] == "amazon2014-Tiny" and m["synthetic"] is False
    assert m["source"]["format"] == "amazon2014"
    assert set(m["source"]["inputs"]) == {raw14.reviews_file.name, raw14.meta_file.name}
    skips = m["skips"]["counts"]
    assert skips["malformed review line"] == 1
    assert skips["malformed meta line"] == 2  # the code-injection line and the truncated one
    assert skips["item without meta (kept: empty title, category <unknown>)"] == 1
    assert skips["behaviour removed by 3-core filtering"] == 6
    assert m["counts"]["reviews_parsed"] == 46


def test_malformed_line_names_file_and_line(proc14: ProcessedDataset, raw14: fx.RawFixture) -> None:
    examples = proc14.manifest["skips"]["examples"]
    assert f"{raw14.reviews_file.name}:{raw14.malformed_review_line}: malformed review line" in (
        " ".join(examples)
    )
    for line in raw14.malformed_meta_lines:
        assert any(
            e.startswith(f"{raw14.meta_file.name}:{line}: malformed meta line") for e in examples
        )


def test_strict_raises_naming_file_and_line(raw14: fx.RawFixture, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"{raw14.reviews_file.name}:6: malformed review line"):
        _prepare(raw14, tmp_path / "out", strict=True)
    assert not (tmp_path / "out").exists()


def test_malicious_meta_line_executes_nothing(raw14: fx.RawFixture, tmp_path: Path) -> None:
    target = raw14.root.parent / "pwned"
    items = list(iter_meta(raw14.meta_file, "amazon2014"))
    assert not target.exists()
    assert fx.ITEMS[0] in {m.asin for m in items}
    with gzip.open(raw14.meta_file, "rt") as fh:
        assert "__import__('os')" in fh.read()
    _prepare(raw14, tmp_path / "out")  # the full pipeline, too
    assert not target.exists()


def test_2018_known_answer(proc18: ProcessedDataset, raw18: fx.RawFixture) -> None:
    assert _sequences(proc18) == raw18.sequences
    assert [it["category"] for it in proc18.items] == fx.EXPECTED_LEAF
    m = proc18.manifest
    assert m["source"]["format"] == "amazon2018"
    c = m["counts"]
    assert c["exact_duplicates_removed"] == 2 and c["repeated_pairs_removed"] == 1
    # Table 1 counts the published lines (repeats included), the splits one per pair
    assert c["behaviors"] == 43 and c["behaviors_distinct"] == 40
    assert c["train"] + c["valid"] + c["test"] == 40 == proc18.behaviors["user"].size
    assert c["reviews_without_text"] == 1
    skips = m["skips"]["counts"]
    assert skips["duplicate review removed (same user, item, time, text)"] == 2
    assert skips["repeated (user, item) review removed (earliest kept)"] == 1
    assert skips["review without text (behaviour kept)"] == 1
    assert skips["malformed meta line"] == 1
    assert "second" not in proc18.vocab  # the later review of a repeated pair is dropped
    assert "five" in proc18.vocab  # summaries count as review text


def test_2018_review_fields_parse(raw18: fx.RawFixture) -> None:
    reviews = list(iter_reviews(raw18.reviews_file))
    assert len(reviews) == 46 + 3
    no_text = [r for r in reviews if r.text == ""]
    assert len(no_text) == 1 and no_text[0].user == "U3"
    u2 = next(r for r in reviews if (r.user, r.asin) == raw18.extra["summary_only"])
    assert u2.text == "Five Stars" and u2.rating == 5.0


# --------------------------------------------------------------------------- k-core, ids, splits


def test_k_core_hand_example() -> None:
    # users 0-2 form a 2-core with items 0-1; user 3 shares item 2 only with user 4, who
    # has a single behaviour: round 1 drops user 4, round 2 item 2, round 3 user 3.
    user = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4])
    item = np.array([0, 1, 0, 1, 0, 1, 2, 0, 2])
    keep, rounds = pp.k_core(user, item, 2)
    assert keep.tolist() == [True] * 6 + [False] * 3
    assert rounds == 3
    keep, rounds = pp.k_core(user[:6], item[:6], 2)
    assert keep.all() and rounds == 0  # already 2-core
    keep, _ = pp.k_core(user, item, 4)
    assert not keep.any()


def test_k_core_report(proc14: ProcessedDataset) -> None:
    k = proc14.manifest["counts"]["k_core"]
    assert k == {
        "k": 3,
        "already_k_core": False,
        "rounds": 2,
        "users_removed": 2,
        "items_removed": 1,
        "behaviors_removed": 6,
    }
    assert "Z9" not in proc14.user_ids and "W1" not in proc14.user_ids
    assert fx.REMOVED_ITEM not in {it["asin"] for it in proc14.items}


def test_ids_do_not_depend_on_file_order() -> None:
    names, codes = pp.codes(["b", "a", "c", "a"])
    assert names == ["a", "b", "c"] and codes.tolist() == [1, 0, 2, 0]


def test_splits_and_time_tie(proc14: ProcessedDataset) -> None:
    b = proc14.behaviors
    assert b["user"].dtype == np.int32 and b["time"].dtype == np.int64
    assert b["split"].dtype == np.int8
    assert np.all(np.diff(b["user"]) >= 0)
    for u in range(proc14.n_users):
        s = b["split"][b["user"] == u]
        assert s.tolist() == [TRAIN] * (len(s) - 2) + [VALID, TEST]
        t = b["time"][b["user"] == u]
        assert np.all(np.diff(t) >= 0)
    u0 = proc14.user_sequences[proc14.user_ids.index("U0")]
    asins = [proc14.items[i]["asin"] for i in u0]
    assert asins[1:3] == [fx.ITEMS[4], fx.ITEMS[2]]  # equal times: file line decides
    c = proc14.manifest["counts"]
    assert (c["train"], c["valid"], c["test"]) == (24, 8, 8)


# --------------------------------------------------------------------------- leakage, negatives


def test_valid_and_test_text_never_reach_text_or_vocab(proc14: ProcessedDataset) -> None:
    for word in (fx.VALID_WORD, fx.TEST_WORD, fx.REMOVED_WORD):
        assert word not in proc14.vocab
    assert proc14.vocab[:2] == ["<pad>", "<unk>"]
    # every token of an item's text comes from that item's TRAINING reviews
    train_words: dict[str, set[str]] = {}
    for r in fx.core_behaviours():
        if r["j"] < 3:
            train_words.setdefault(r["asin"], set()).update(mtext.tokenize(r["text"]))
    tokens, lengths = proc14.text["tokens"], proc14.text["lengths"]
    for i, it in enumerate(proc14.items):
        words = {proc14.vocab[t] for t in tokens[i, : lengths[i]]}
        assert words <= train_words.get(it["asin"], set())
        assert np.all(tokens[i, lengths[i] :] == 0)
    assert lengths.max() <= CFG.max_text_len


def test_eval_lists(proc14: ProcessedDataset) -> None:
    ev = proc14.eval_lists
    b = proc14.behaviors
    for name, code in (("valid", VALID), ("test", TEST)):
        lst = ev[name]
        assert lst.shape == (proc14.n_users, 1 + CFG.n_neg) and lst.dtype == np.int32
        for u in range(proc14.n_users):
            history = set(b["item"][b["user"] == u].tolist())
            pos = b["item"][(b["user"] == u) & (b["split"] == code)]
            assert lst[u, 0] == pos[0]
            negs = lst[u, 1:].tolist()
            assert len(set(negs)) == CFG.n_neg
            assert not set(negs) & history  # never in the user's history, any split


def test_too_few_negative_candidates_is_a_clear_error(raw14: fx.RawFixture, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"fewer than n_neg=6.*--n-neg"):
        _prepare(raw14, tmp_path / "out", replace(CFG, n_neg=6))
    assert not (tmp_path / "out").exists()


def test_sample_negatives_exact_and_fallback() -> None:
    n_users, n_items, n_neg = 50, 12, 4
    gen = np.random.default_rng(0)
    hist = [set(gen.choice(n_items, size=8, replace=False).tolist()) for _ in range(n_users)]
    keys = np.unique([u * n_items + i for u, h in enumerate(hist) for i in h])
    a = pp.sample_negatives(keys, n_users, n_items, n_neg, rng(0, "x"), chunk=7)
    b = pp.sample_negatives(keys, n_users, n_items, n_neg, rng(0, "x"), chunk=7)
    np.testing.assert_array_equal(a, b)
    for u in range(n_users):  # only 4 candidates: each row is a permutation of them
        assert sorted(a[u].tolist()) == sorted(set(range(n_items)) - hist[u])


def test_sample_negatives_is_uniform() -> None:
    keys = np.array([0, 1], dtype=np.int64)  # user 0 saw items 0 and 1
    draws = pp.sample_negatives(
        np.r_[keys, [10 * u for u in range(1, 2000)]], 2000, 10, 3, rng(1, "u")
    )
    counts = np.bincount(draws[1:].ravel(), minlength=10)  # users 1.. saw item 0 only
    assert counts[0] == 0
    expected = draws[1:].size / 9
    assert np.all(np.abs(counts[1:] - expected) < 0.1 * expected)
    assert not np.isin(draws[0], [0, 1]).any()


# --------------------------------------------------------------------------- reproducibility


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _strip(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k != "provenance"}


def test_prepare_is_byte_reproducible(
    raw14: fx.RawFixture, proc14: ProcessedDataset, tmp_path: Path
) -> None:
    _prepare(raw14, tmp_path / "again")
    a, b = _tree(proc14.root), _tree(tmp_path / "again")
    assert a.keys() == b.keys()
    volatile = {"dataset.json"} | {k for k in a if k.startswith("word2vec.model")}
    for name in a.keys() - volatile:
        assert a[name] == b[name], name
    assert _strip(json.loads(a["dataset.json"])) == _strip(json.loads(b["dataset.json"]))
    again = ProcessedDataset.open(tmp_path / "again")
    for name in ("valid", "test"):
        np.testing.assert_array_equal(proc14.eval_lists[name], again.eval_lists[name])


def test_word2vec_independent_of_python_hash_seed(
    raw14: fx.RawFixture, proc14: ProcessedDataset, tmp_path: Path
) -> None:
    code = (
        "import sys; from mdr.data import preprocess as pp; "
        f"pp.prepare(sys.argv[1], sys.argv[2], category='Tiny', cfg=pp.{CFG!r}, progress=False)"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run(
        [sys.executable, "-c", code, str(raw14.root), str(tmp_path / "sub")],
        check=True,
        env=env,
        timeout=120,
    )
    other = np.load(tmp_path / "sub" / "word2vec.npy")
    np.testing.assert_array_equal(proc14.word_vectors, other)
    assert (tmp_path / "sub" / "vocab.txt").read_text() == "\n".join(proc14.vocab) + "\n"


# --------------------------------------------------------------------------- images


def test_image_modes_end_to_end(proc14: ProcessedDataset) -> None:
    assert proc14.image_mask.tolist() == fx.EXPECTED_MASK
    imgs = proc14.images
    assert imgs.shape == (10, 8, 8, 3) and imgs.dtype == np.uint8
    assert np.all(imgs[~proc14.image_mask] == 0)
    skips = proc14.manifest["skips"]["counts"]
    for reason, n in fx.EXPECTED_IMAGE_REASONS.items():
        assert skips[reason] == n
    assert proc14.manifest["counts"]["items_with_image"] == 7


def test_images_dir_option(tmp_path: Path) -> None:
    raw = fx.write_raw_2014(tmp_path / "raw", images=False, malicious_target=tmp_path / "p")
    fx.write_images(tmp_path / "elsewhere")
    m = _prepare(raw, tmp_path / "out", images_dir=tmp_path / "elsewhere")
    ds = ProcessedDataset.open(tmp_path / "out")
    assert ds.image_mask.tolist() == fx.EXPECTED_MASK
    assert m["source"]["images"] == str((tmp_path / "elsewhere").resolve())
    assert tuple(ds.images[1, 4, 4]) == (100, 100, 100)  # the grey PNG


def _save(tmp_path: Path, img: Image.Image, fmt: str) -> Path:
    path = tmp_path / f"x.{fmt.lower()}"
    img.save(path, fmt)
    return path


@pytest.mark.parametrize(
    ("make", "fmt", "centre"),
    [
        (lambda: Image.new("L", (20, 12), 100), "PNG", (100, 100, 100)),
        (lambda: Image.new("CMYK", (20, 12), (0, 255, 255, 0)), "TIFF", (255, 0, 0)),
        (lambda: Image.new("RGB", (20, 12), (0, 0, 255)).convert("P"), "PNG", (0, 0, 255)),
        (lambda: Image.new("RGBA", (20, 12), (0, 255, 0, 0)), "PNG", (255, 255, 255)),
        (lambda: Image.new("RGBA", (20, 12), (0, 255, 0, 255)), "PNG", (0, 255, 0)),
        (lambda: Image.new("LA", (20, 12), (0, 255)), "PNG", (0, 0, 0)),
        (lambda: Image.fromarray(np.full((12, 20), 65535, np.uint16)), "PNG", (255, 255, 255)),
        (lambda: Image.fromarray(np.full((12, 20), 32896, np.uint16)), "PNG", (128, 128, 128)),
        (lambda: Image.new("1", (20, 12), 1), "PNG", (255, 255, 255)),
    ],
)
def test_load_image_modes(tmp_path: Path, make, fmt: str, centre: tuple[int, int, int]) -> None:
    arr = mimages.load_image_reason(_save(tmp_path, make(), fmt), 10)[0]
    assert arr is not None and arr.shape == (10, 10, 3) and arr.dtype == np.uint8
    assert tuple(arr[5, 5]) == centre
    # 20x12 -> 10x6 centred on a white square: rows 0-1 and 8-9 are padding
    assert np.all(arr[:2] == 255) and np.all(arr[8:] == 255)


def test_load_image_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    img.info["transparency"] = 0
    arr = mimages.load_image_reason(_save(tmp_path, img, "PNG"), 8)[0]
    assert arr is not None and np.all(arr == 255)


def test_load_image_bad_files(tmp_path: Path) -> None:
    assert mimages.load_image_reason(tmp_path / "nope.jpg", 8) == (None, "image missing")
    (tmp_path / "g.jpg").write_bytes(b"\x00garbage" * 50)
    assert mimages.load_image_reason(tmp_path / "g.jpg", 8) == (None, "image not decodable")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "t.jpg", "JPEG")
    (tmp_path / "t.jpg").write_bytes((tmp_path / "t.jpg").read_bytes()[:200])
    assert mimages.load_image_reason(tmp_path / "t.jpg", 8)[1] == "image corrupt or truncated"
    (tmp_path / "d").mkdir()
    assert mimages.load_image_reason(tmp_path / "d", 8) == (None, "image missing")


def test_large_jpeg_draft_decode_matches_size(tmp_path: Path) -> None:
    gen = np.random.default_rng(0)
    big = Image.fromarray(gen.integers(0, 255, (600, 400, 3), dtype=np.uint8))
    arr = mimages.load_image_reason(_save(tmp_path, big, "JPEG"), 16)[0]
    assert arr is not None and arr.shape == (16, 16, 3)


def test_unsafe_asin_image_name_stays_inside(tmp_path: Path) -> None:
    name = image_filename("../../etc/passwd")
    assert "/" not in name and ".." not in name
    assert (tmp_path / "images" / name).resolve().parent == (tmp_path / "images").resolve()


# --------------------------------------------------------------------------- labels


def test_real_labels_rule(proc14: ProcessedDataset) -> None:
    names = proc14.label_names
    assert names["colour"] == list(mlabels.BASE_COLOURS)
    colour = proc14.labels["colour"]
    got = [names["colour"][c] if c >= 0 else None for c in colour]
    assert got == fx.EXPECTED_COLOUR  # label_fraction 1.0: nothing withheld
    shape = proc14.labels["shape"]
    assert [names["shape"][s] if s >= 0 else None for s in shape] == [
        c if c != "<unknown>" else None for c in fx.EXPECTED_LEAF
    ]
    assert names["shape"][:2] == ["Outerwear", "Tops"]  # most frequent first, ties by name


def test_shape_classes_top_k_and_other() -> None:
    leaves = ["a"] * 3 + ["b"] * 2 + ["c"] * 2 + ["d"] + [""]
    assert mlabels.shape_classes(leaves, top_k=2) == ["a", "b", "other"]
    lab = mlabels.real_labels(["Red x"] * len(leaves), leaves, top_k=2)
    assert lab.values["shape"].tolist() == [0, 0, 0, 1, 1, 2, 2, 2, -1]
    assert mlabels.colour_of_title("Women's NAVY-blue dress") == mlabels.BASE_COLOURS.index("blue")
    assert mlabels.colour_of_title("Plain tee") == -1


def test_material_and_brand_labels_rule() -> None:
    titles = ["Suede Chelsea Boot", "Plain tee", "Stainless STEEL mug", "Cotton-wool mix"]
    brands = ["Acme", "acme ", "", "Zed"] + ["Big"] * 5 + ["ACME"] * 3
    lab = mlabels.real_labels(titles + ["x"] * 8, [""] * 12, brands)
    m = mlabels.MATERIALS
    assert lab.values["material"][:4].tolist() == [
        m.index("leather"),
        -1,
        m.index("metal"),
        m.index("cotton"),
    ]  # the first one named
    # brands are case-folded; of at least 5 items ("acme" 5, "big" 5) they are classes
    assert lab.classes["brand"] == ["acme", "big", "other"]
    assert lab.values["brand"].tolist() == [0, 0, -1, 2] + [1] * 5 + [0] * 3


def test_label_budget() -> None:
    y = np.array([0, 1, -1, 2, 0, 1, 2, -1, 0, 1], dtype=np.int64)
    lab = mlabels.Labels({"colour": y}, {"colour": ["a", "b", "c"]})
    out, report = mlabels.apply_budget(lab, 0.5, seed=3)
    kept = out.values["colour"]
    assert report == {"colour": {"with_label": 8, "kept": 4}}
    assert (kept >= 0).sum() == 4
    assert np.all(kept[kept >= 0] == y[kept >= 0])
    again, _ = mlabels.apply_budget(lab, 0.5, seed=3)
    np.testing.assert_array_equal(kept, again.values["colour"])


def test_synthetic_ground_truth(tmp_path: Path) -> None:
    raw = fx.write_raw_2014(
        tmp_path / "raw",
        category="Synthetic",
        malformed_review=False,
        factors=True,
        images=False,
        malicious_target=tmp_path / "pwned",
    )
    m = _prepare(raw, tmp_path / "out")
    ds = ProcessedDataset.open(tmp_path / "out")
    assert m["name"] == "fixture-shop" and ds.is_synthetic
    assert m["factors"] == fx.FACTORS
    asins = [it["asin"] for it in ds.items]
    for f in fx.FACTORS:
        expected = [
            fx.factor_value(fx.ITEMS.index(a), f) if a != fx.ITEMS[9] else -1 for a in asins
        ]
        assert ds.factors[f].tolist() == expected
    assert ds.labels["colour"].tolist() == ds.factors["colour"].tolist()
    assert set(ds.labels) == {"colour", "shape", "material"}  # the fixture's factors
    assert ds.label_names["shape"] == ["round", "square"]
    assert m["skips"]["counts"]["item without ground-truth factors"] == 1
    assert m["skips"]["counts"]["image missing"] == 10
    assert not ds.image_mask.any()


# --------------------------------------------------------------------------- safety, manifest


def test_open_and_stats(proc14: ProcessedDataset) -> None:
    for f in REQUIRED_FILES:
        assert (proc14.root / f).is_file()
    st = proc14.stats()
    assert st["users"] == 8 and st["items"] == 10 and st["behaviors"] == 40
    assert st["categories"] == len(set(fx.EXPECTED_LEAF)) == 8
    assert st["sparsity_percent"] == pytest.approx(100 * 40 / 80)
    assert st["skips"]["malformed review line"] == 1
    assert proc14.word_vectors.shape == (len(proc14.vocab), CFG.w2v_dim)
    assert np.all(proc14.word_vectors[:2] == 0)
    assert proc14.manifest["config"] == pp.dataclasses.asdict(CFG)
    assert proc14.manifest["labels"] == proc14.label_names


def test_interrupted_prepare_leaves_nothing(
    raw14: fx.RawFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(pp, "_labels", boom)  # the last step before the manifest
    with pytest.raises(RuntimeError, match="interrupted"):
        _prepare(raw14, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # no partial folder left behind either
    monkeypatch.undo()
    _prepare(raw14, tmp_path / "out")
    monkeypatch.setattr(pp, "_labels", boom)
    with pytest.raises(RuntimeError):
        _prepare(raw14, tmp_path / "out", overwrite=True)
    ProcessedDataset.open(tmp_path / "out")  # the previous complete dataset is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_missing_files_and_wrong_category(raw14: fx.RawFixture, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="raw data folder not found"):
        pp.prepare(tmp_path / "nothing", tmp_path / "o", category="Tiny", cfg=CFG, progress=False)
    with pytest.raises(DataError, match=r"no review file for category 'Toys'"):
        pp.prepare(raw14.root, tmp_path / "o", category="Toys", cfg=CFG, progress=False)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "reviews_Tiny_5.json.gz").write_bytes(raw14.reviews_file.read_bytes())
    with pytest.raises(
        DataError,
        match=r"no metadata file: looked for meta_Tiny\.json\.gz, "
        r"meta_Tiny\.json; pass --allow-missing-meta",
    ):
        pp.prepare(tmp_path / "r", tmp_path / "o", category="Tiny", cfg=CFG, progress=False)
    assert not (tmp_path / "o").exists()


def test_refuses_to_replace_a_foreign_folder(raw14: fx.RawFixture, tmp_path: Path) -> None:
    from mdr.io import OutputError

    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "precious.txt").write_text("keep me")
    (tmp_path / "home" / "dataset.json").write_text("{}")  # looks prepared, carries no marker
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="refusing"):
            _prepare(raw14, tmp_path / "home", overwrite=overwrite)
    assert (tmp_path / "home" / "precious.txt").read_text() == "keep me"
    with pytest.raises(DataError, match="must not be"):
        _prepare(raw14, raw14.root)


def test_empty_review_file_is_a_clear_error(tmp_path: Path) -> None:
    raw = fx.write_raw_2014(tmp_path / "raw", images=False, malicious_target=tmp_path / "p")
    fx._write_gz_lines(raw.reviews_file, ["not json"])
    with pytest.raises(DataError, match="1 of 1 non-empty lines are malformed"):
        _prepare(raw, tmp_path / "out")
    with pytest.raises(DataError, match="no usable review lines"):
        _prepare(raw, tmp_path / "out", lenient=True)
    fx._write_gz_lines(raw.reviews_file, [])
    with pytest.raises(DataError, match="no usable review lines"):
        _prepare(raw, tmp_path / "out")


# --------------------------------------------------------------------------- text units


def test_tokenize() -> None:
    assert mtext.tokenize("Don't BUY: it's 2x-large, a 'great' fit!!") == [
        "don't",
        "buy",
        "it's",
        "2x",
        "large",
        "great",
        "fit",
    ]
    assert mtext.tokenize("a b cd", min_token_len=1) == ["a", "b", "cd"]
    assert mtext.tokenize("snake_case <br/>x") == ["snake", "case", "br"]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Café naïve Größe", ["café", "naïve", "größe"]),
        ("Cafe\u0301 NAI\u0308VE", ["café", "naïve"]),  # combining accents: NFKC composes them
        ("Ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ１２", ["full", "width", "abc12"]),  # compatibility forms
        ("don’t it’s", ["don't", "it's"]),  # typographic apostrophes
        ("Очень удобное платье", ["очень", "удобное", "платье"]),
        ("Πολύ καλό", ["πολύ", "καλό"]),
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),  # vowel signs and virama stay in the word
        ("العَرَبِيَّة جميل", ["العَرَبِيَّة", "جميل"]),  # harakat too
        ("这件衣服很好看", ["这", "件", "衣", "服", "很", "好", "看"]),  # one token per ideograph
        ("日本語のテキスト", ["日", "本", "語", "のテキスト"]),
        ("한국어 텍스트", ["한국어", "텍스트"]),
        ("great 😀👍🏽 fit ❤️ 5⭐", ["great", "fit"]),  # emoji are not words
        ("x 😀 y", []),
    ],
)
def test_tokenize_any_script(text: str, tokens: list[str]) -> None:
    assert mtext.tokenize(text) == tokens


def test_ascii_fast_path_agrees_with_the_unicode_rules() -> None:
    text = "Don't BUY: it's 2x-large, a 'great' fit!! snake_case 42 x"
    assert mtext.tokenize(text + " éé")[:-1] == mtext.tokenize(text)  # é forces the slow path


def test_item_token_matrix_keeps_the_most_characteristic_words() -> None:
    """Sublinear TF-IDF, best first, each word once; a word in every item's text never."""
    review_item = np.array([0, 0, 1, 0, 2])  # items 0, 1, 2 have text; item 3 has none
    review_ids = [[2, 3, 4, 4], [5, 4], [2, 6, 7], [8, 2], [2, 7]]
    tokens, lengths = mtext.item_token_matrix(review_item, review_ids, n_items=4, max_len=3)
    # word 2 is in all three texts (idf 0). Item 0: word 4 twice (tf 3: 1 + ln 3), df 1;
    # words 3, 5, 8 once each (score ln 3), ties by id
    assert tokens[0].tolist() == [4, 3, 5]
    # item 1: words 6 (df 1, score ln 3) and 7 (df 2, ln 1.5)
    assert tokens[1].tolist() == [6, 7, 0]
    assert tokens[2].tolist() == [7, 0, 0] and tokens[3].tolist() == [0, 0, 0]
    assert lengths.tolist() == [3, 2, 1, 0]


def test_build_vocab_order() -> None:
    vocab = mtext.build_vocab([["b", "a", "c"], ["a", "b"], ["a"]], min_count=2)
    assert vocab == ["<pad>", "<unk>", "a", "b"]
    assert mtext.to_ids(["a", "zz", "b", "a"], {w: i for i, w in enumerate(vocab)}) == [2, 3, 2]


def test_prepare_config_validation() -> None:
    with pytest.raises(ValueError, match="k_core >= 3"):
        PrepareConfig(k_core=2)
    with pytest.raises(ValueError, match="label_fraction"):
        PrepareConfig(label_fraction=1.5)
    d = PrepareConfig()
    assert (d.image_size, d.n_neg, d.seed, d.w2v_workers) == (64, 100, 0, 1)


def _rewrite_reviews(raw: fx.RawFixture, edit) -> None:
    with gzip.open(raw.reviews_file, "rt") as fh:
        lines = fh.read().splitlines()
    with gzip.open(raw.reviews_file, "wt") as fh:
        fh.write("\n".join(edit(lines)) + "\n")


def _check_one_behaviour_per_pair(ds: ProcessedDataset) -> None:
    """Valid and test items differ and neither is in the user's history."""
    b = ds.behaviors
    for u in range(ds.n_users):
        mine = b["user"] == u
        items = b["item"][mine].tolist()
        assert len(items) == len(set(items))
        valid, test = ds.eval_lists["valid"][u, 0], ds.eval_lists["test"][u, 0]
        assert valid != test
        history = set(b["item"][mine & (b["split"] == TRAIN)].tolist())
        assert valid not in history and test not in history


@pytest.mark.parametrize("release", [2014, 2018])
def test_one_rule_for_repeats_in_every_release(release: int, tmp_path: Path) -> None:
    """The newest review twice, and an older review of a later item again: Table 1 counts
    the published lines, the splits one behaviour per (user, item), both said."""
    if release == 2014:
        raw = fx.write_raw_2014(tmp_path / "raw", malformed_review=False, images=False)
    else:
        raw = fx.write_raw_2018(tmp_path / "raw", images=False)
    u0 = raw.sequences["U0"]
    newest, first = u0[-1], u0[0]

    def edit(lines: list[str]) -> list[str]:
        rows = [json.loads(x) for x in lines]
        last = next(
            x for x, r in zip(lines, rows) if (r["reviewerID"], r["asin"]) == ("U0", newest)
        )
        early = next(r for r in rows if (r["reviewerID"], r["asin"]) == ("U0", first))
        again = dict(
            early,
            unixReviewTime=early["unixReviewTime"] + 200 * fx.DAY,
            reviewText="bought it again, still newer than everything",
        )
        return [*lines, last, json.dumps(again)]

    before = _prepare(raw, tmp_path / "before")["counts"]
    _rewrite_reviews(raw, edit)
    m = _prepare(raw, tmp_path / "after")
    c, ds = m["counts"], ProcessedDataset.open(tmp_path / "after")
    assert c["behaviors"] == before["behaviors"] + 2  # published lines, repeats included
    assert c["behaviors_distinct"] == before["behaviors_distinct"]
    assert c["exact_duplicates_removed"] == before["exact_duplicates_removed"] + 1
    assert c["repeated_pairs_removed"] == before["repeated_pairs_removed"] + 1
    assert (c["users"], c["items"]) == (before["users"], before["items"])
    assert _sequences(ds)["U0"] == u0  # the earliest review of a pair is its behaviour
    _check_one_behaviour_per_pair(ds)
    assert "still" not in ds.vocab  # a removed repeat's text reaches nothing


def test_a_user_left_with_too_few_distinct_items_is_removed(tmp_path: Path) -> None:
    """3-core on the published lines keeps a user whose 3 reviews cover 2 items; they cannot
    be split, so they go (counted), and Table 1 counts the remaining users' lines."""
    raw = fx.write_raw_2014(tmp_path / "raw", malformed_review=False, images=False)

    def edit(lines: list[str]) -> list[str]:
        r = json.loads(lines[0])
        extra = [
            dict(r, reviewerID="R2", asin=fx.ITEMS[1], unixReviewTime=fx.T0 + k) for k in range(2)
        ] + [dict(r, reviewerID="R2", asin=fx.ITEMS[3], unixReviewTime=fx.T0 + 5)]
        return [*lines, *(json.dumps(e) for e in extra)]

    _rewrite_reviews(raw, edit)
    m = _prepare(raw, tmp_path / "out")
    c = m["counts"]
    assert c["users_with_too_few_items_removed"] == 1 and c["users"] == 8
    assert c["behaviors"] == c["behaviors_distinct"] == 40
    assert c["exact_duplicates_removed"] == 0 and c["repeated_pairs_removed"] == 1
    assert "R2" not in ProcessedDataset.open(tmp_path / "out").user_ids


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("true", "invalid unixReviewTime"),
        ("false", "invalid unixReviewTime"),
        ("-5", "invalid unixReviewTime"),
        ("Infinity", "invalid unixReviewTime"),
        ("-Infinity", "invalid unixReviewTime"),
        ("NaN", "invalid unixReviewTime"),
        ("1e30", "invalid unixReviewTime"),
        ("1e400", "invalid unixReviewTime"),
        ("1.5", "invalid unixReviewTime"),
        ('"abc"', "invalid unixReviewTime"),
        ('"-5"', "invalid unixReviewTime"),
        ("[1]", "invalid unixReviewTime"),
        ("9007199254740992", "invalid unixReviewTime"),
        ("null", "without unixReviewTime"),
    ],
)
def test_bad_timestamps_are_counted_skips_naming_the_line(
    tmp_path: Path, value: str, reason: str
) -> None:
    path = tmp_path / "reviews_X_5.json"
    good = '{"reviewerID": "u", "asin": "a", "unixReviewTime": 1400000000}'
    path.write_text(f"{good}\n" + good.replace("1400000000", value) + "\n")
    skips = SkipLog()
    got = list(iter_reviews(path, skips))
    assert [r.time for r in got] == [1400000000]
    assert skips.total() == 1 and reason in skips.examples[0]
    assert skips.examples[0].startswith("reviews_X_5.json:2: review ")
    with pytest.raises(DataError, match=r"reviews_X_5\.json:2: review "):
        list(iter_reviews(path, SkipLog(), strict=True))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1400000000", 1400000000),
        ("1400000000.0", 1400000000),
        ('"1400000000"', 1400000000),
        ("0", 0),
        ("9007199254740991", 2**53 - 1),
    ],
)
def test_integer_times_in_other_spellings_are_read(
    tmp_path: Path, value: str, seconds: int
) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"reviewerID": "u", "asin": "a", "unixReviewTime": ' + value + "}\n")
    assert [r.time for r in iter_reviews(path)] == [seconds]


def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_truncated_gzip_is_an_error_unless_lenient(raw14: fx.RawFixture, tmp_path: Path) -> None:
    raw = fx.write_raw_2014(tmp_path / "raw", images=False)
    _cut(raw.reviews_file, 0.9)
    with pytest.raises(
        DataError,
        match=rf"{raw.reviews_file.name}: truncated gzip stream after "
        r"\d+ lines; --lenient",
    ):
        _prepare(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    skips = SkipLog()
    got = list(iter_reviews(raw.reviews_file, skips, lenient=True))
    assert 0 < len(got) < 46 and skips.counts["file truncated or corrupt"] == 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1 :],
            "corrupt gzip stream",
        ),
        (lambda b: b[:-8] + bytes(8), "corrupt gzip stream after"),  # CRC and length zeroed
        (lambda b: b"plain text, not gzip\n", "not a gzip file"),
    ],
)
def test_corrupt_gzip_is_an_error(tmp_path: Path, damage, message: str) -> None:
    path = tmp_path / "reviews_X_5.json.gz"
    fx._write_gz_lines(path, ['{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}'] * 50)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message):
        list(iter_reviews(path))


def test_gzip_content_under_a_plain_name_and_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    line = '{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}'
    fx._write_gz_lines(tmp_path / "a.json", [line])
    (tmp_path / "b.json").write_bytes(b"\xef\xbb\xbf" + line.encode() + b"\n")
    for name in ("a.json", "b.json"):
        skips = SkipLog()
        assert len(list(iter_reviews(tmp_path / name, skips))) == 1 and skips.total() == 0


def test_mostly_malformed_file_is_an_error_a_few_bad_lines_are_not(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    good = '{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}'
    path.write_text("\n".join([good] * 5 + ["{broken"] * 5) + "\n")  # exactly half: skips
    skips = SkipLog()
    assert len(list(iter_reviews(path, skips))) == 5 and skips.total() == 5
    path.write_text("\n".join([good] * 4 + ["{broken"] * 5) + "\n")  # more than half
    with pytest.raises(
        DataError,
        match=r"r\.json: 5 of 9 non-empty lines are malformed "
        r"\(more than half; first line 5: malformed review",
    ):
        list(iter_reviews(path))
    assert len(list(iter_reviews(path, lenient=True))) == 4


def test_metadata_of_the_other_release_is_an_error_saying_so(tmp_path: Path) -> None:
    raw = fx.write_raw_2014(tmp_path / "raw", malformed_review=False, images=False)
    lines = [
        json.dumps({"asin": a, "title": "t", "price": None, "category": ["x"]}) for a in fx.ITEMS
    ]
    fx._write_gz_lines(raw.meta_file, lines)
    with pytest.raises(
        DataError,
        match=r"10 of 10 non-empty lines are malformed .*they are "
        r"JSON: metadata of the 2018 release\?",
    ):
        _prepare(raw, tmp_path / "out")
    m = _prepare(raw, tmp_path / "lenient", lenient=True)
    assert m["counts"]["items_without_meta"] == 10


def test_metadata_of_another_category_is_an_error(tmp_path: Path) -> None:
    raw = fx.write_raw_2014(tmp_path / "raw", malformed_review=False, images=False)
    fx._write_gz_lines(raw.meta_file, [repr({"asin": f"X{i}", "title": "t"}) for i in range(9)])
    with pytest.raises(DataError, match=r"none of the 10 items .* has a metadata line"):
        _prepare(raw, tmp_path / "out")


# --------------------------------------------------------------------------- finding the files


def test_release_and_category_are_found_from_the_files(
    raw14: fx.RawFixture, raw18: fx.RawFixture
) -> None:
    from mdr.data.parse import find_inputs

    f = find_inputs(raw14.root)
    assert (f.fmt, f.year, f.category) == ("amazon2014", 2014, "Tiny")
    assert f.reviews == raw14.reviews_file and f.meta == raw14.meta_file
    f = find_inputs(raw18.root)
    assert (f.fmt, f.year, f.category) == ("amazon2018", 2018, "Tiny_2018")
    assert find_inputs(raw18.root, "tiny_2018").category == "Tiny_2018"  # letter case


def test_several_categories_and_releases_need_a_choice(
    raw14: fx.RawFixture, tmp_path: Path
) -> None:
    from mdr.data.parse import find_inputs

    root = tmp_path / "mixed"
    root.mkdir()
    for name in (
        "reviews_Toys_and_Games_5.json.gz",
        "Toys_and_Games_5.json",
        "meta_Toys_and_Games.json.gz",
        "My_Own_Shop_5.json.gz",
    ):
        (root / name).write_bytes(raw14.reviews_file.read_bytes())
    with pytest.raises(DataError, match=r"several review files .* choose one with --category"):
        find_inputs(root)
    with pytest.raises(DataError, match=r"several review files .* choose one with --year"):
        find_inputs(root, "toys")  # the catalog alias
    f = find_inputs(root, "toys", 2018)
    assert (f.year, f.category, f.reviews.name) == (2018, "Toys_and_Games", "Toys_and_Games_5.json")
    assert f.meta is not None and f.meta.name == "meta_Toys_and_Games.json.gz"
    with pytest.raises(
        DataError,
        match=r"found My_Own_Shop_5\.json\.gz but no metadata file: "
        r"looked for meta_My_Own_Shop\.json\.gz, "
        r"meta_My_Own_Shop\.json",
    ):
        find_inputs(root, "My_Own_Shop")
    f = find_inputs(root, "My_Own_Shop", allow_missing_meta=True)
    assert (f.year, f.meta) == (2018, None)
    with pytest.raises(
        DataError,
        match=r"no review file for category 'Garden': looked for "
        r"reviews_Garden_5\.json\.gz, reviews_Garden_5\.json, "
        r"Garden_5\.json\.gz, Garden_5\.json; review files "
        r"present for: My_Own_Shop \(2018\), Toys_and_Games",
    ):
        find_inputs(root, "Garden")
    with pytest.raises(
        DataError,
        match=r"looked for reviews_office_5\.json\.gz, .*"
        r"reviews_Office_Products_5\.json\.gz, ",
    ):
        find_inputs(root, "office", 2014)  # an alias: both names
    with pytest.raises(DataError, match="not a valid name"):
        find_inputs(root, "../etc")


def test_prepare_without_metadata(tmp_path: Path) -> None:
    raw = fx.write_raw_2018(tmp_path / "raw", images=False)
    raw.meta_file.unlink()
    with pytest.raises(DataError, match="--allow-missing-meta"):
        pp.prepare(raw.root, tmp_path / "out", cfg=CFG, progress=False)
    m = pp.prepare(raw.root, tmp_path / "out", cfg=CFG, progress=False, allow_missing_meta=True)
    ds = ProcessedDataset.open(tmp_path / "out")
    assert m["source"]["meta"] is None and m["counts"]["items_without_meta"] == 10
    assert {it["category"] for it in ds.items} == {"<unknown>"}
    assert (ds.labels["shape"] == -1).all() and (ds.labels["colour"] == -1).all()


AMAZON2018 = Path(
    os.environ.get("MDR_AMAZON2018_DIR")
    or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "amazon2018-small"
)


@pytest.mark.skipif(
    not (AMAZON2018 / "Magazine_Subscriptions_5.json.gz").is_file(),
    reason="the real 2018 files are not here",
)
def test_real_2018_magazine_subscriptions(tmp_path: Path) -> None:
    """The real files exactly as published: 5-core on the published lines, then one
    behaviour per pair (the figures the README reports)."""
    cfg = replace(CFG, k_core=5, n_neg=20, w2v_min_count=5)
    m = pp.prepare(AMAZON2018, tmp_path / "mag", "Magazine_Subscriptions", cfg=cfg, progress=False)
    c = m["counts"]
    assert (c["users"], c["items"], c["behaviors"], c["behaviors_distinct"]) == (
        326,
        138,
        2236,
        2171,
    )
    assert (c["exact_duplicates_removed"], c["repeated_pairs_removed"]) == (36, 29)
    assert m["skips"]["counts"]["repeated meta line (first kept)"] == 89
    assert m["source"]["year"] == 2018 and c["reviews_parsed"] == 2375
    _check_one_behaviour_per_pair(ProcessedDataset.open(tmp_path / "mag"))
