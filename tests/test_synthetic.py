"""The embedded synthetic shop: layout, 5-core, reproducibility, and that factors show where they should."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import replace
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mdr.data.shop as syn
from mdr.data.parse import DataError, SkipLog, image_filename, iter_meta, iter_reviews
from mdr.data.shop import write as shop_write
from mdr.data.shop.factors import _make_items
from mdr.data.shop.render import _image_params, _silhouette_mask
from mdr.data.shop.reviews import _tokens
from mdr.data.shop.users import _make_users, _review_days, _simulate
from mdr.data.shop.words import DATA_FILES

REVIEWS = "reviews_Synthetic_5.json.gz"
META = "meta_Synthetic.json.gz"
# The package's word lists and templates (and the photo shop's), as installed.
DATA_SHA256 = {
    "words.json": "61b89b322e1037329b14c30be8db63328eec7097d9972ce6d765a57cc741a4ec",
    "templates.json": "b8b512dceeb650a1452688b1ea82c40d1b5a035d81bf50ee4019093eb604b210",
    "photos.json": "2730bded0c600abc641a736a382d50f2c30779949fff91357d58992a3ae18721",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny"
    summary = syn.generate("tiny", seed=0, out=out, progress=False)
    assert summary["behaviors"] == syn.SIZES["tiny"].n_behaviors
    return out


@pytest.fixture(scope="module")
def factors(shop: Path) -> dict:
    return syn.load_factors(shop / "factors.json")


@pytest.fixture(scope="module")
def reviews(shop: Path) -> list:
    skips = SkipLog()
    out = list(iter_reviews(shop / REVIEWS, skips, strict=True))
    assert skips.total() == 0
    return out


def _value_name(factors: dict, asin: str, factor: str) -> str:
    return factors["factors"][factor]["values"][factors["items"][asin][factor]]


def _key_tokens(factor: str) -> list[set[str]]:
    """Per value, the words that name it and nothing else (no other value, no filler)."""
    filler = syn.filler_vocabulary()
    per_value = [{t for p in syns for t in _tokens(p)} for syns in syn.VALUE_WORDS[factor]]
    return [
        toks - filler - set().union(*(o for j, o in enumerate(per_value) if j != k))
        for k, toks in enumerate(per_value)
    ]


def _sha256_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- layout


def test_files_exist_and_parse_as_amazon_2014(shop: Path, factors: dict, reviews: list) -> None:
    cfg = syn.SIZES["tiny"]
    assert {p.name for p in shop.iterdir()} == {
        REVIEWS,
        META,
        "images",
        "factors.json",
        ".mdr-output.json",
    }  # the ownership marker
    assert json.loads((shop / ".mdr-output.json").read_text())["kind"] == syn.OUTPUT_KIND
    assert len(reviews) == cfg.n_behaviors
    metas = list(iter_meta(shop / META, fmt="amazon2014", strict=True))
    assert len(metas) == cfg.n_items == len(factors["items"])
    assert {m.asin for m in metas} == {r.asin for r in reviews} == set(factors["items"])
    for m in metas:
        assert m.categories == (("Synthetic", _value_name(factors, m.asin, "shape")),)
        assert m.leaf_category == _value_name(factors, m.asin, "shape")
        assert m.brand == _value_name(factors, m.asin, "brand")
        assert m.image_urls == (f"http://synthetic.invalid/images/{m.asin}.jpg",)
        with Image.open(shop / "images" / image_filename(m.asin)) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (128, 128))
    assert len(list((shop / "images").iterdir())) == cfg.n_items


def test_review_and_meta_lines_have_the_2014_fields(shop: Path) -> None:
    import ast
    import gzip

    with gzip.open(shop / REVIEWS, "rt", encoding="utf-8") as fh:
        first = json.loads(fh.readline())
    assert list(first) == [
        "reviewerID",
        "asin",
        "reviewerName",
        "helpful",
        "reviewText",
        "overall",
        "summary",
        "unixReviewTime",
        "reviewTime",
    ]
    assert first["helpful"] == [0, 0] and first["overall"] in {1.0, 2.0, 3.0, 4.0, 5.0}
    assert re.fullmatch(r"\d\d \d\d, \d{4}", first["reviewTime"])
    import datetime as dt

    day = dt.datetime.fromtimestamp(first["unixReviewTime"], dt.UTC)
    assert day.strftime("%m %d, %Y") == first["reviewTime"] and day.hour == 0
    with gzip.open(shop / META, "rt", encoding="utf-8") as fh:
        line = fh.readline()
    assert line.startswith("{'asin': '")  # a Python literal, as the real 2014 file
    meta = ast.literal_eval(line)
    assert list(meta) == ["asin", "imUrl", "title", "categories", "brand", "price"]
    assert isinstance(meta["price"], float) and meta["price"] > 0


def test_output_is_exactly_five_core(reviews: list) -> None:
    users = Counter(r.user for r in reviews)
    items = Counter(r.asin for r in reviews)
    assert len(users) == syn.SIZES["tiny"].n_users and len(items) == syn.SIZES["tiny"].n_items
    assert min(users.values()) >= 5 and min(items.values()) >= 5
    assert len({(r.user, r.asin) for r in reviews}) == len(reviews)  # no repeated purchase


def test_check_5core_rejects_known_violations() -> None:
    user = np.repeat(np.arange(5), 5)  # 5 users x 5 items, complete: a 5-core
    item = np.tile(np.arange(5), 5)
    syn.check_5core(user, item)
    with pytest.raises(RuntimeError, match="1 users"):
        syn.check_5core(user[1:], item[1:])  # user 0 (and item 0) now has 4
    with pytest.raises(RuntimeError, match="1 items"):  # a sixth item with only 4 buyers
        syn.check_5core(np.append(user, [0, 1, 2, 3]), np.append(item, [5, 5, 5, 5]))
    with pytest.raises(RuntimeError, match="twice"):
        syn.check_5core(np.append(user, 0), np.append(item, 0))


def test_review_days_never_go_back_and_some_tie() -> None:
    lengths = np.array([5, 6, 40, 150, 5] * 20)
    days = _review_days(lengths, seed=0)
    assert [len(d) for d in days] == lengths.tolist()
    steps = np.concatenate([np.diff(d) for d in days])
    assert (steps >= 0).all() and 0.05 < (steps == 0).mean() < 0.3


def test_timestamps_and_ratings_look_real(reviews: list) -> None:
    by_user: dict[str, list[int]] = defaultdict(list)
    for r in reviews:
        by_user[r.user].append(r.time)
    assert all(t % 86400 == 0 for ts in by_user.values() for t in ts)  # day resolution
    stars = Counter(r.rating for r in reviews)
    assert set(stars) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert stars[5.0] == max(stars.values())  # real shops: five stars dominate
    lo, hi = min(min(v) for v in by_user.values()), max(max(v) for v in by_user.values())
    assert lo >= 1199145600 and hi <= 1406073600  # 2008-01-01 .. 2014-07-23


def test_unknown_size_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tiny"):
        syn.generate("huge", seed=0, out=tmp_path / "x", progress=False)


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_is_byte_identical_other_seed_differs(shop: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    syn.generate("tiny", seed=0, out=again, progress=False)
    assert _sha256_tree(again) == _sha256_tree(shop)
    other = tmp_path / "other"
    syn.generate("tiny", seed=1, out=other, progress=False)
    a, b = _sha256_tree(shop), _sha256_tree(other)
    assert (
        a[REVIEWS] != b[REVIEWS] and a[META] != b[META] and a["factors.json"] != b["factors.json"]
    )


def test_output_does_not_depend_on_the_number_of_workers(shop: Path, tmp_path: Path) -> None:
    two = tmp_path / "two"
    summary = syn.generate("tiny", seed=0, out=two, progress=False, workers=2)
    assert summary["workers"] == 2
    assert _sha256_tree(two) == _sha256_tree(shop)


def test_existing_out_is_replaced_only_when_it_is_a_shop_and_overwrite_is_asked(
    shop: Path, tmp_path: Path
) -> None:
    from mdr.io import OutputError

    mine = tmp_path / "mine"
    (mine / "thesis").mkdir(parents=True)
    (mine / "thesis" / "ch1.tex").write_text("x")
    with pytest.raises(OutputError, match="not made by mdr"):
        syn.generate("tiny", seed=0, out=mine, progress=False, overwrite=True)
    assert (mine / "thesis" / "ch1.tex").read_text() == "x"
    again = tmp_path / "again"
    syn.generate("tiny", seed=1, out=again, progress=False)
    with pytest.raises(OutputError, match="--overwrite"):
        syn.generate("tiny", seed=0, out=again, progress=False)
    syn.generate("tiny", seed=0, out=again, progress=False, overwrite=True)
    assert _sha256_tree(again) == _sha256_tree(shop)
    (tmp_path / "empty").mkdir()
    syn.generate("tiny", seed=0, out=tmp_path / "empty", progress=False)  # an empty folder is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "empty", "mine"]


def test_interrupted_run_leaves_nothing_that_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(shop_write, "_write_gzip_lines", boom)
    with pytest.raises(KeyboardInterrupt):
        syn.generate("tiny", seed=0, out=tmp_path / "shop", progress=False)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- factors


def test_factor_kinds_and_names(factors: dict) -> None:
    f = factors["factors"]
    assert factors["name"] == "synthetic-tiny" and factors["seed"] == 0
    assert {v["kind"] for v in f.values()} == set(syn.KINDS)
    expected = {
        "colour": "visual_dominant",
        "size": "text_dominant",
        "shape": "visual_only",
        "pattern": "visual_only",
        "material": "text_only",
        "brand": "text_only",
        "background": "nuisance",
        "position": "nuisance",
    }
    for name, kind in expected.items():
        assert f[name]["kind"] == kind
    assert f["colour"]["modalities"] == ["image", "text"] and f["material"]["modalities"] == [
        "text"
    ]
    assert len(f["shape"]["values"]) >= 6
    assert f["pattern"]["values"] == ["plain", "stripes", "dots", "checks"]


def test_every_value_is_named_by_its_own_words() -> None:
    for factor in syn.VALUE_WORDS:
        keys = _key_tokens(factor)
        for k, syns in enumerate(syn.VALUE_WORDS[factor]):
            for phrase in syns:
                assert set(_tokens(phrase)) & keys[k], (factor, phrase)


def test_visual_only_factors_never_reach_the_text() -> None:
    words = syn.vocabulary()
    for name in ("shape", "pattern"):
        for value in syn.FACTOR_BY_NAME[name].values:
            forms = {
                f
                for t in _tokens(value)
                if len(t) > 1
                for f in (t, t.removesuffix("s"), t.removesuffix("es"))
            }
            assert not forms & words, (name, value)  # e.g. "dresses", "dress", "stripes"


def test_colour_words_name_the_items_colour_in_some_reviews(factors: dict, reviews: list) -> None:
    keys = _key_tokens("colour")
    own, other = 0, 0
    mentioned_items, per_review = set(), []
    for r in reviews:
        toks = set(_tokens(r.text))
        hits = {k for k, ks in enumerate(keys) if toks & ks}
        true = factors["items"][r.asin]["colour"]
        own += true in hits
        other += len(hits - {true})
        per_review.append(bool(hits))
        if true in hits:
            mentioned_items.add(r.asin)
    assert 0.15 < np.mean(per_review) < 0.6  # some reviews, not all
    assert own > 8 * other  # mostly the right colour (a little perception noise)
    assert len(mentioned_items) >= 0.8 * len(factors["items"])


def test_size_words_in_most_reviews_and_material_words_only_in_text(
    shop: Path, factors: dict, reviews: list
) -> None:
    size_keys, mat_keys = _key_tokens("size"), _key_tokens("material")
    size_hits = [bool(set(_tokens(r.text)) & set().union(*size_keys)) for r in reviews]
    assert np.mean(size_hits) > 0.5
    right = wrong = 0
    for r in reviews:
        toks = set(_tokens(r.text))
        true = factors["items"][r.asin]["material"]
        right += bool(toks & mat_keys[true])
        wrong += sum(bool(toks & ks) for k, ks in enumerate(mat_keys) if k != true)
    assert right > 100 and wrong == 0
    all_mat = set().union(*mat_keys)
    for m in iter_meta(shop / META, fmt="amazon2014"):  # not in titles either
        assert not set(_tokens(m.title)) & (all_mat | set().union(*_key_tokens("colour")))


def test_images_ignore_text_only_factors() -> None:
    items = _make_items(20, seed=3)
    swapped = replace(
        items,
        values={
            **items.values,
            "material": (items.values["material"] + 1) % 8,
            "brand": (items.values["brand"] + 5) % 12,
        },
    )
    p, q = _image_params(items, 3), _image_params(swapped, 3)
    for i in range(20):
        assert np.array_equal(syn.render_image(p, i), syn.render_image(q, i))


def test_image_pixels_show_the_colour(shop: Path, factors: dict) -> None:
    palette = np.array(list(syn.COLOUR_RGB.values()), float)
    checked = 0
    for asin, v in factors["items"].items():
        if _value_name(factors, asin, "pattern") != "plain":
            continue
        if _value_name(factors, asin, "position") != "centre":
            continue
        with Image.open(shop / "images" / image_filename(asin)) as im:
            px = np.asarray(im, float)
        centre = px[60:68, 60:68].reshape(-1, 3).mean(0)
        nearest = int(np.argmin(((palette - centre) ** 2).sum(1)))
        assert nearest == v["colour"], (asin, centre)
        assert np.abs(centre - palette[v["colour"]]).max() < 30
        checked += 1
    assert checked >= 5


def test_drawn_scale_follows_size() -> None:
    items = _make_items(200, seed=5)
    p = _image_params(items, 5)
    area = np.array(
        [
            _silhouette_mask(
                syn.FACTOR_BY_NAME["shape"].values[int(p["shape"][i])],
                *map(float, p["centre"][i]),
                float(p["size_px"][i]),
            ).mean()
            for i in range(200)
        ]
    )
    means = [area[items.values["size"] == k].mean() for k in range(4)]
    assert means == sorted(means) and means[-1] > 2 * means[0]


# --------------------------------------------------------------------------- users


def test_history_predicts_the_next_item_and_popularity_is_long_tailed() -> None:
    cfg = syn.SIZES["small"]
    items = _make_items(cfg.n_items, 0)
    users = _make_users(cfg, items, 0)
    seq, _ = _simulate(items, users, 0, progress=False)
    colour = items.values["colour"]

    def agreement(lag: int) -> float:
        a, b = seq[:, :-lag], seq[:, lag:]
        ok = (a >= 0) & (b >= 0)
        return float((colour[a[ok]] == colour[b[ok]]).mean())

    assert agreement(1) > agreement(5) + 0.03  # recent history matters beyond taste
    degree = np.bincount(seq[seq >= 0], minlength=cfg.n_items)
    assert degree.max() > 8 * np.median(degree)


# --------------------------------------------------------------------------- words, factors.json


def test_vocabulary_is_large_and_reviews_use_it(reviews: list) -> None:
    assert len(syn.vocabulary()) >= 1000
    used = {t for r in reviews for t in _tokens(r.text)}
    assert len(used) >= 600 and used <= syn.vocabulary() | {t.lower() for t in syn.BRANDS}
    lengths = [len(_tokens(r.text)) for r in reviews]
    assert min(lengths) <= 3 and max(lengths) >= 60  # varying length, a few near-empty


def test_word_files_are_the_pinned_ones() -> None:
    folder = files("mdr.data.shop")
    assert {p.name for p in folder.iterdir() if p.name.endswith(".json")} == set(DATA_SHA256)
    assert set(DATA_FILES) == set(DATA_SHA256)
    for name, pinned in DATA_SHA256.items():
        got = hashlib.sha256(folder.joinpath(name).read_bytes()).hexdigest()
        assert got == pinned, (
            f"mdr/data/shop/{name} changed (sha256 {got}). Every review of every generated "
            "shop is drawn from it, so this changes every generated shop (and every result "
            "computed on one); if that is intended, update DATA_SHA256 and say so."
        )


def test_load_factors_validates(shop: Path, tmp_path: Path) -> None:
    doc = json.loads((shop / "factors.json").read_text())
    bad = tmp_path / "factors.json"
    doc["factors"]["colour"]["kind"] = "visual"
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"factors\.json.*colour"):
        syn.load_factors(bad)
    doc = json.loads((shop / "factors.json").read_text())
    asin = next(iter(doc["items"]))
    doc["items"][asin]["shape"] = 99
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=asin):
        syn.load_factors(tmp_path)
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"factors\.json:1"):
        syn.load_factors(bad)
    with pytest.raises(DataError, match="not found"):
        syn.load_factors(tmp_path / "missing.json")
