"""Tiny raw Amazon-format folders with known answers, for the prepare tests.

Test helper only (no dependence on the synthetic shop generator). Two flavours:

- :func:`write_raw_2014`: ``reviews_<Cat>_5.json.gz`` (JSON lines) and
  ``meta_<Cat>.json.gz`` (Python-literal lines, as McAuley's 2014 files), plus
  ``images/``, optionally ``factors.json`` (the synthetic-shop convention).
- :func:`write_raw_2018`: ``<Cat>_5.json.gz`` and ``meta_<Cat>.json.gz``, both
  JSON, with ``style`` dicts, ``vote`` strings like ``"1,234"``, a review without
  ``reviewText``, one with no text at all, exact duplicates and a repeated
  (user, item) pair.

The core of both: 8 users ``U0..U7`` and 10 items ``B000000000..B000000009``;
user u reviews the 5 items of its parity (u, u+2, ... mod 10) at days
``10 j + u`` (j = 0..4), so every user and item has at least 4 behaviours and
each user has exactly 5 items outside its history. User ``U0``'s 2nd and 3rd
behaviours share a time stamp; the file lists the later-asin one first, so the
file-line tie-break puts ``B000000004`` before ``B000000002``. Two extra users
(``Z9``, ``W1``) and one extra item (``B0REMOVED1``) are not 3-core: the item
falls in round 1 and both users in round 2.

Review texts: train reviews use ordinary words; each user's second-to-last
review contains :data:`VALID_WORD`, the last :data:`TEST_WORD`, and the removed
users' reviews :data:`REMOVED_WORD`, none of which may reach the vocabulary.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mdr.data.parse import image_filename

VALID_WORD = "validonlyword"
TEST_WORD = "testonlyword"
REMOVED_WORD = "removedonlyword"
T0 = 1_400_000_000
DAY = 86_400

N_CORE_USERS, N_ITEMS = 8, 10
USERS = [f"U{u}" for u in range(N_CORE_USERS)]
ITEMS = [f"B00000000{i}" for i in range(N_ITEMS)]
REMOVED_ITEM = "B0REMOVED1"
TRAIN_WORDS = ["soft", "cotton", "comfy", "fits", "great", "warm", "wool", "nice", "dress", "shirt"]

# Per item: title and 2014 category paths (DIN's leaf = categories[-1][-1]); item 9 has no meta.
TITLES = [
    "Navy Cotton Dress",
    "Women's Burgundy Shirt",
    "Plain Tee",
    "Charcoal Wool Coat",
    "Light blue jeans",
    "Gold Hoop Earrings",
    "Black and White Scarf",
    "Summer Hat",
    "Olive Green Jacket",
]
CATEGORIES_2014 = [
    [["Clothing, Shoes & Jewelry", "Women", "Dresses"]],
    [["Clothing, Shoes & Jewelry", "Women", "Tops"]],
    [["Clothing, Shoes & Jewelry", "Men", "Tops"]],
    [["Clothing, Shoes & Jewelry", "Women", "Coats"], ["Clothing, Shoes & Jewelry", "Outerwear"]],
    [["Clothing, Shoes & Jewelry", "Women", "Jeans"]],
    [["Clothing, Shoes & Jewelry", "Jewelry", "Earrings"]],
    [["Clothing, Shoes & Jewelry", "Accessories", "Scarves"]],
    [["Clothing, Shoes & Jewelry", "Accessories", "Hats"]],
    [["Clothing, Shoes & Jewelry", "Men", "Outerwear"]],
]
EXPECTED_LEAF = [
    "Dresses",
    "Tops",
    "Tops",
    "Outerwear",
    "Jeans",
    "Earrings",
    "Scarves",
    "Hats",
    "Outerwear",
    "<unknown>",
]
EXPECTED_COLOUR = ["blue", "red", None, "grey", "blue", "yellow", "black", None, "green", None]

# Item i's image: how it is stored (item 9 has none).
IMAGE_KINDS = [
    "rgb_jpeg",
    "grey_png",
    "cmyk_tiff",
    "palette_png",
    "rgba_png",
    "grey16_png",
    "la_png",
    "garbage",
    "truncated_jpeg",
    "missing",
]
EXPECTED_MASK = [True] * 7 + [False] * 3
EXPECTED_IMAGE_REASONS = {
    "image not decodable": 1,
    "image corrupt or truncated": 1,
    "image missing": 1,
}


@dataclass
class RawFixture:
    """A written raw folder and what a correct prepare must find in it."""

    root: Path
    category: str
    fmt: str
    reviews_file: Path
    meta_file: Path
    sequences: dict[str, list[str]]  # surviving user -> asins in time order
    n_behaviors: int
    malformed_review_line: int | None = None
    malformed_meta_lines: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def core_behaviours() -> list[dict[str, Any]]:
    """The core users' reviews (user, asin, time, text), in time order per user."""
    out = []
    for u in range(N_CORE_USERS):
        for j in range(5):
            day = 10 * j + u
            if u == 0 and j == 2:
                day = 10 * 1 + u  # same time as j = 1 (tie)
            word = {3: VALID_WORD, 4: TEST_WORD}.get(j, "")
            text = " ".join(
                [TRAIN_WORDS[(u + j) % 10], TRAIN_WORDS[(u + 2 * j + 1) % 10], "nice", word]
            ).strip()
            out.append(
                {
                    "user": USERS[u],
                    "asin": ITEMS[(u + 2 * j) % N_ITEMS],
                    "time": T0 + day * DAY,
                    "text": text,
                    "u": u,
                    "j": j,
                }
            )
    return out


def expected_sequences() -> dict[str, list[str]]:
    """Surviving users' items in time order (``U0``'s tie resolved by file line)."""
    seqs = {USERS[u]: [ITEMS[(u + 2 * j) % N_ITEMS] for j in range(5)] for u in range(8)}
    s0 = seqs["U0"]
    seqs["U0"] = [s0[0], s0[2], s0[1], s0[3], s0[4]]  # B...4 before B...2 (earlier file line)
    return seqs


def removed_behaviours() -> list[dict[str, Any]]:
    """Reviews of users/items that 3-core filtering removes (2 rounds)."""
    rows = [
        ("Z9", ITEMS[1]),
        ("Z9", ITEMS[3]),
        ("Z9", REMOVED_ITEM),
        ("W1", REMOVED_ITEM),
        ("W1", ITEMS[5]),
        ("W1", ITEMS[7]),
    ]
    return [
        {
            "user": u,
            "asin": a,
            "time": T0 + (60 + k) * DAY,
            "text": f"{REMOVED_WORD} cotton",
            "u": -1,
            "j": k,
        }
        for k, (u, a) in enumerate(rows)
    ]


def _file_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A scrambled but fixed file order, with U0's tied review j=2 before j=1."""
    perm = np.random.default_rng(123).permutation(len(rows))
    ordered = [rows[i] for i in perm]
    idx = {(r["u"], r["j"]): k for k, r in enumerate(ordered)}
    a, b = idx[(0, 1)], idx[(0, 2)]
    if a < b:
        ordered[a], ordered[b] = ordered[b], ordered[a]
    return ordered


def _review_json_2014(r: dict[str, Any]) -> str:
    return json.dumps(
        {
            "reviewerID": r["user"],
            "asin": r["asin"],
            "reviewerName": "x",
            "helpful": [0, 0],
            "reviewText": r["text"],
            "overall": 4.0,
            "summary": "",
            "unixReviewTime": r["time"],
            "reviewTime": "01 1, 2014",
        }
    )


def _write_gz_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line + "\n")


def write_images(images_dir: Path, asins: list[str] = ITEMS) -> None:
    """One image per item in the format of :data:`IMAGE_KINDS` (20 x 12 pixels, landscape)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    for asin, kind in zip(asins, IMAGE_KINDS):
        path = images_dir / image_filename(asin)
        w, h = 20, 12
        if kind == "rgb_jpeg":
            Image.new("RGB", (w, h), (200, 30, 30)).save(path, "JPEG")
        elif kind == "grey_png":
            Image.new("L", (w, h), 100).save(path, "PNG")
        elif kind == "cmyk_tiff":
            Image.new("CMYK", (w, h), (0, 255, 255, 0)).save(path, "TIFF")  # red
        elif kind == "palette_png":
            Image.new("RGB", (w, h), (0, 0, 255)).convert("P").save(path, "PNG")
        elif kind == "rgba_png":
            Image.new("RGBA", (w, h), (0, 255, 0, 0)).save(path, "PNG")  # fully transparent
        elif kind == "grey16_png":
            Image.fromarray(np.full((h, w), 65535, np.uint16)).save(path, "PNG")
        elif kind == "la_png":
            Image.new("LA", (w, h), (0, 255)).save(path, "PNG")  # opaque black
        elif kind == "garbage":
            path.write_bytes(b"this is not an image at all" * 10)
        elif kind == "truncated_jpeg":
            buf = path.with_suffix(".tmp")
            Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, "JPEG", quality=95)
            path.write_bytes(buf.read_bytes()[:300])
            buf.unlink()


def _meta_2014_lines(malicious_target: Path | None) -> tuple[list[str], list[int]]:
    lines = []
    for i in range(9):
        lines.append(
            repr(
                {
                    "asin": ITEMS[i],
                    "imUrl": f"http://127.0.0.1/{ITEMS[i]}.jpg",
                    "title": TITLES[i],
                    "categories": CATEGORIES_2014[i],
                    "brand": f"Brand{i % 3}",
                    "salesRank": {"Clothing": 100 + i},
                }
            )
        )
    lines.append(
        repr({"asin": "B0NOTKEPT9", "title": "Not in reviews", "categories": [["X"]]})
    )  # not a 5-core item: ignored, not counted
    target = malicious_target or Path("/tmp/pwned")
    bad = [
        f"__import__('os').system('touch {target}')",
        "{'asin': 'B000000001', 'title': 'unterminated",
    ]
    lines.insert(3, bad[0])
    lines.insert(7, bad[1])
    return lines, [4, 8]


def write_raw_2014(
    root: str | Path,
    category: str = "Tiny",
    malformed_review: bool = True,
    malicious_target: Path | None = None,
    factors: bool = False,
    images: bool = True,
) -> RawFixture:
    """The 2014-flavoured fixture (see the module docstring)."""
    root = Path(root)
    rows = _file_order(core_behaviours() + removed_behaviours())
    lines = [_review_json_2014(r) for r in rows]
    malformed_line = None
    if malformed_review:
        lines.insert(5, '{"reviewerID": "U1", "asin": ')  # malformed JSON
        malformed_line = 6
    reviews = root / f"reviews_{category}_5.json.gz"
    meta = root / f"meta_{category}.json.gz"
    _write_gz_lines(reviews, lines)
    meta_lines, bad_meta = _meta_2014_lines(malicious_target)
    _write_gz_lines(meta, meta_lines)
    if images:
        write_images(root / "images")
    if factors:
        write_factors(root / "factors.json")
    return RawFixture(
        root,
        category,
        "amazon2014",
        reviews,
        meta,
        expected_sequences(),
        n_behaviors=40,
        malformed_review_line=malformed_line,
        malformed_meta_lines=bad_meta,
    )


FACTORS = {
    "colour": {
        "kind": "visual_dominant",
        "modalities": ["image", "text"],
        "values": ["red", "green", "blue"],
    },
    "shape": {"kind": "visual_only", "modalities": ["image"], "values": ["round", "square"]},
    "material": {
        "kind": "text_only",
        "modalities": ["text"],
        "values": ["cotton", "wool", "silk", "linen"],
    },
}


def factor_value(asin_index: int, factor: str) -> int:
    """Ground truth of the fixture's factors.json (item 9 is absent from the file)."""
    return {"colour": asin_index % 3, "shape": asin_index % 2, "material": asin_index % 4}[factor]


def write_factors(path: Path) -> None:
    items = {ITEMS[i]: {f: factor_value(i, f) for f in FACTORS} for i in range(9)}
    items[REMOVED_ITEM] = {f: 0 for f in FACTORS}
    path.write_text(
        json.dumps({"name": "fixture-shop", "factors": FACTORS, "items": items}), encoding="utf-8"
    )


# --------------------------------------------------------------------------- 2018 flavour


def write_raw_2018(
    root: str | Path, category: str = "Tiny_2018", images: bool = True
) -> RawFixture:
    """The 2018-flavoured fixture: JSON meta, duplicates, a repeated pair, missing texts."""
    root = Path(root)
    rows = _file_order(core_behaviours() + removed_behaviours())
    objs = []
    for r in rows:
        o = {
            "overall": 5.0,
            "vote": "1,234",
            "verified": True,
            "reviewTime": "01 1, 2014",
            "reviewerID": r["user"],
            "asin": r["asin"],
            "style": {"Size:": " Large"},
            "reviewerName": "x",
            "reviewText": r["text"],
            "summary": "Five Stars",
            "unixReviewTime": r["time"],
        }
        if (r["u"], r["j"]) == (2, 0):
            del o["reviewText"]  # summary only
        if (r["u"], r["j"]) == (3, 0):
            del o["reviewText"]
            del o["summary"]  # no text at all: kept, counted
        objs.append(o)
    lines = [json.dumps(o) for o in objs]
    lines += [lines[0], lines[10]]  # two exact duplicates
    first_u1 = next(o for o in objs if o["reviewerID"] == "U1" and o["asin"] == ITEMS[1])
    again = dict(
        first_u1,
        unixReviewTime=first_u1["unixReviewTime"] + 5 * DAY,
        reviewText="second review of the same item",
    )
    lines.append(json.dumps(again))  # repeated (user, item): the earliest is kept
    reviews = root / f"{category}_5.json.gz"
    meta = root / f"meta_{category}.json.gz"
    _write_gz_lines(reviews, lines)
    meta_lines = []
    for i in range(9):
        cats = [c for path in CATEGORIES_2014[i][-1:] for c in path]
        meta_lines.append(
            json.dumps(
                {
                    "asin": ITEMS[i],
                    "title": TITLES[i],
                    "category": cats,
                    "brand": f"Brand{i % 3}",
                    "imageURL": [f"http://127.0.0.1/s/{i}.jpg"],
                    "imageURLHighRes": [f"http://127.0.0.1/l/{i}.jpg"],
                    "details": {"Package Dimensions:": "1 x 2 x 3 inches"},
                    "also_buy": [ITEMS[0]],
                    "price": "$12.99",
                }
            )
        )
    meta_lines.insert(2, "{'asin': 'B000000002'}")  # a Python literal is malformed in 2018 JSON
    _write_gz_lines(meta, meta_lines)
    if images:
        write_images(root / "images")
    return RawFixture(
        root,
        category,
        "amazon2018",
        reviews,
        meta,
        expected_sequences(),
        n_behaviors=40,
        malformed_meta_lines=[3],
        extra={
            "exact_duplicates": 2,
            "repeated_pairs": 1,
            "empty_reviews": 1,
            "summary_only": ("U2", ITEMS[2]),
        },
    )
