"""What the shop is made of: its sizes, its factors with their item marginals, the items.

The factor table and the reasons behind the marginals are in :mod:`mdr.data.shop`.
Items are drawn here (:func:`_make_items`); ``factors.json``, the ground truth a
prepared dataset scores against, is read back and validated by :func:`load_factors`.

A :class:`Catalogue` bundles what follows from the shop's factor classes (the factor
table, the price of each product type, which types complement which): :data:`DRAWN`
is the drawn shop's, :mod:`mdr.data.shop.photos` builds the photo shop's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mdr.data.parse import DataError
from mdr.seeding import rng

KINDS = ("visual_dominant", "text_dominant", "visual_only", "text_only", "nuisance")
_MODALITIES = {
    "visual_dominant": ["image", "text"],
    "text_dominant": ["image", "text"],
    "visual_only": ["image"],
    "text_only": ["text"],
}
_MIN_CORE = 5  # every user and every item has at least this many behaviours


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class ShopSize:
    """How big a shop to generate: exact user, item and behaviour counts."""

    name: str
    n_users: int
    n_items: int
    n_behaviors: int
    max_history: int = 150  # cap on one user's history length

    @property
    def sparsity_percent(self) -> float:
        return 100.0 * self.n_behaviors / (self.n_users * self.n_items)


SIZES: dict[str, ShopSize] = {
    "tiny": ShopSize("tiny", 150, 100, 1_050, max_history=30),
    "small": ShopSize("small", 3_000, 1_500, 30_000),
    "cloth": ShopSize("cloth", 39_387, 23_033, 278_677),
}


# --------------------------------------------------------------------------- factors


@dataclass(frozen=True)
class Factor:
    """One ground-truth factor: its kind, value names and item marginal."""

    name: str
    kind: str
    values: tuple[str, ...]
    weights: tuple[float, ...]  # marginal over items (normalised on use)
    modalities: tuple[str, ...] = ()

    def shown_in(self) -> list[str]:
        return list(self.modalities) if self.modalities else list(_MODALITIES[self.kind])


# Fill colours (RGB) of the visual-dominant factor; mid-saturation product colours.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (196, 32, 44),
    "orange": (236, 128, 32),
    "yellow": (236, 206, 52),
    "green": (44, 136, 64),
    "blue": (36, 72, 168),
    "purple": (118, 52, 148),
    "pink": (236, 136, 176),
    "brown": (118, 74, 40),
    "black": (28, 28, 32),
    "white": (244, 244, 238),
}
SIZE_SCALE = {"small": 0.50, "medium": 0.62, "large": 0.74, "x-large": 0.86}
BACKGROUND_RGB = {
    "white": (255, 255, 255),
    "light grey": (222, 222, 222),
    "cream": (244, 236, 218),
    "pale blue": (218, 230, 244),
}
POSITION_DIR = {
    "centre": (0.0, 0.0),
    "up-left": (-1.0, -1.0),
    "up-right": (1.0, -1.0),
    "down-left": (-1.0, 1.0),
    "down-right": (1.0, 1.0),
}
BRANDS = (
    "Northwind",
    "Larkspur",
    "Quillon",
    "Halcyon",
    "Brambleton",
    "Corvina",
    "Ostrander",
    "Pellucid",
    "Marlowe",
    "Tessaly",
    "Vantor",
    "Wrenfield",
)

FACTORS: tuple[Factor, ...] = (
    Factor(
        "colour",
        "visual_dominant",
        tuple(COLOUR_RGB),
        (0.10, 0.05, 0.04, 0.08, 0.16, 0.06, 0.09, 0.10, 0.20, 0.12),
    ),
    Factor("size", "text_dominant", tuple(SIZE_SCALE), (0.22, 0.34, 0.29, 0.15)),
    Factor(
        "shape",
        "visual_only",
        ("T-Shirts", "Dresses", "Trousers", "Shoes", "Handbags", "Hats", "Watches", "Mugs"),
        (0.18, 0.16, 0.12, 0.16, 0.12, 0.08, 0.09, 0.09),
    ),
    Factor(
        "pattern", "visual_only", ("plain", "stripes", "dots", "checks"), (0.55, 0.17, 0.12, 0.16)
    ),
    Factor(
        "material",
        "text_only",
        ("cotton", "synthetic", "leather", "denim", "wool", "canvas", "silk", "metal"),
        (0.24, 0.18, 0.13, 0.10, 0.10, 0.08, 0.07, 0.10),
    ),
    Factor(
        "occasion",
        "text_only",
        ("everyday", "work", "sport", "party", "travel", "outdoor"),
        (0.30, 0.17, 0.15, 0.14, 0.12, 0.12),
    ),
    Factor("brand", "text_only", BRANDS, tuple(1.0 / (r + 1) ** 0.8 for r in range(12))),
    Factor("quality", "text_only", ("low", "average", "high"), (0.2, 0.5, 0.3)),
    Factor("background", "nuisance", tuple(BACKGROUND_RGB), (0.55, 0.2, 0.15, 0.1), ("image",)),
    Factor("position", "nuisance", tuple(POSITION_DIR), (0.4, 0.15, 0.15, 0.15, 0.15), ("image",)),
)
FACTOR_BY_NAME = {f.name: f for f in FACTORS}

# Quality by brand tier (brands 0-3 premium, 4-7 mid, 8-11 budget).
_QUALITY_BY_TIER = ((0.10, 0.45, 0.45), (0.20, 0.50, 0.30), (0.30, 0.50, 0.20))
_BRAND_PRICE = (1.5, 1.0, 0.7)
_SHAPE_PRICE = (15.0, 35.0, 30.0, 45.0, 40.0, 18.0, 60.0, 12.0)
_MATERIAL_PRICE = (1.0, 0.8, 1.6, 1.1, 1.3, 1.0, 1.5, 1.4)
_LINES = ("Classic", "Signature", "Essential", "Heritage", "Studio", "Urban", "Modern", "Vintage")
_SINGULAR = ("T-Shirt", "Dress", "Trousers", "Shoe", "Handbag", "Hat", "Watch", "Mug")

# Sequential drift: which product type tends to follow which (complements).
_COMPLEMENTS = {
    "T-Shirts": ("Trousers", "Hats", "Shoes"),
    "Dresses": ("Shoes", "Handbags", "Watches"),
    "Trousers": ("T-Shirts", "Shoes"),
    "Shoes": ("Handbags", "Trousers", "Dresses"),
    "Handbags": ("Dresses", "Watches", "Shoes"),
    "Hats": ("T-Shirts", "Shoes"),
    "Watches": ("Handbags", "Dresses", "Mugs"),
    "Mugs": ("T-Shirts", "Watches"),
}


@dataclass(frozen=True)
class Catalogue:
    """What follows from a shop's factor classes.

    ``factors`` in drawing order (:func:`_make_items` draws them in this order);
    ``shape_price`` is the base price of each product type (``shape`` value);
    ``complements`` names, per product type, the types that tend to follow it (the
    shopping-intent chain of :mod:`mdr.data.shop.users`); ``recorded`` are the
    factors ``factors.json`` lists: those some modality shows.
    """

    name: str  # the dataset name's prefix: "synthetic-small", "photo-small"
    factors: tuple[Factor, ...]
    shape_price: tuple[float, ...]
    complements: Mapping[str, tuple[str, ...]]
    recorded: tuple[str, ...]

    @property
    def by_name(self) -> dict[str, Factor]:
        return {f.name: f for f in self.factors}

    def recorded_factors(self) -> list[Factor]:
        return [f for f in self.factors if f.name in self.recorded]


DRAWN = Catalogue("synthetic", FACTORS, _SHAPE_PRICE, _COMPLEMENTS, tuple(f.name for f in FACTORS))


# --------------------------------------------------------------------------- items


@dataclass
class _Items:
    values: dict[str, np.ndarray]  # factor -> int64 [I]
    asins: list[str]
    titles: list[str]
    prices: np.ndarray  # float [I]
    exposure: np.ndarray  # float [I]: popularity weight of being shown
    catalogue: Catalogue = DRAWN


def _random_ids(gen: np.random.Generator, n: int, prefix: str, width: int) -> list[str]:
    """``n`` distinct ids ``prefix + width`` chars of [0-9A-Z], in draw order."""
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        chars = alphabet[gen.integers(0, len(alphabet), size=(n - len(out), width))]
        for row in chars:
            s = prefix + "".join(row)
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def _draw_values(gen: np.random.Generator, n: int, weights: Sequence[float]) -> np.ndarray:
    """Categorical draws; every value present at least once when ``n`` allows."""
    p = np.asarray(weights, float)
    v = gen.choice(len(p), size=n, p=p / p.sum())
    missing = [k for k in range(len(p)) if not (v == k).any()]
    if missing and n >= len(p):
        slots = gen.choice(n, size=len(missing), replace=False)
        v[slots] = missing
    return v.astype(np.int64)


def _make_items(
    n: int,
    seed: int,
    catalogue: Catalogue = DRAWN,
    given: Mapping[str, np.ndarray] | None = None,
    names: Sequence[str] | None = None,
) -> _Items:
    """Draw ``n`` items of ``catalogue``.

    ``given`` fixes some factors' values (int64 [n]; the photo shop's colour and
    shape, the photos' labels): they are not drawn, every other factor is.
    ``names`` (one per item) start the titles instead of the drawn product line and
    type. Without both, the drawn shop's items, draw for draw.
    """
    gen = rng(seed, "synthetic", "items")
    given = dict(given or {})
    values: dict[str, np.ndarray] = {}
    for f in catalogue.factors:
        if f.name == "quality" or f.name in given:
            continue
        values[f.name] = _draw_values(gen, n, f.weights)
    values.update({k: np.asarray(v, np.int64) for k, v in given.items()})
    tier = values["brand"] * 3 // len(BRANDS)  # 0 premium, 1 mid, 2 budget
    u = gen.random(n)
    cum = np.cumsum(np.asarray(_QUALITY_BY_TIER), axis=1)[tier]  # (I, 3)
    values["quality"] = (u[:, None] > cum).sum(1).clip(0, 2).astype(np.int64)
    values = {f.name: values[f.name] for f in catalogue.factors}  # factor order
    asins = _random_ids(gen, n, "B0", 8)
    lines = gen.integers(0, len(_LINES), n)
    models = gen.integers(100, 1000, n)
    if names is None:
        titles = [
            f"{BRANDS[b]} {_LINES[ln]} {_SINGULAR[s]} {BRANDS[b][:2].upper()}-{m}"
            for b, ln, s, m in zip(values["brand"], lines, values["shape"], models)
        ]
    else:
        titles = [
            f"{name} by {BRANDS[b]} {BRANDS[b][:2].upper()}-{m}"
            for name, b, m in zip(names, values["brand"], models)
        ]
    base = (
        np.asarray(catalogue.shape_price)[values["shape"]]
        * np.asarray(_MATERIAL_PRICE)[values["material"]]
        * np.asarray(_BRAND_PRICE)[tier]
        * np.exp(gen.normal(0.0, 0.25, n))
    )
    prices = np.maximum(np.ceil(base) - 0.01, 4.99).round(2)
    quality_mult = np.array([0.6, 1.0, 1.5])[values["quality"]]
    exposure = _MIN_CORE + gen.lognormal(0.0, 1.1, n) * quality_mult
    return _Items(values, asins, titles, prices, exposure, catalogue)


# --------------------------------------------------------------------------- factors.json


def load_factors(path: str | Path) -> dict[str, Any]:
    """Read ``factors.json`` (the file or its folder) back, validated; :class:`DataError` if bad."""
    path = Path(path)
    if path.is_dir():
        path = path / "factors.json"
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from e
    _validate_factors(doc, path)
    return doc


def _validate_factors(doc: Any, path: Path) -> None:
    def bad(msg: str) -> DataError:
        return DataError(f"{path}: {msg}")

    if not isinstance(doc, dict):
        raise bad("top level is not an object")
    for key in ("name", "factors", "items"):  # "seed" is provenance, not needed to read it
        if key not in doc:
            raise bad(f"missing key {key!r}")
    factors, items = doc["factors"], doc["items"]
    if not isinstance(factors, dict) or not factors:
        raise bad("'factors' must be a non-empty object")
    n_values: dict[str, int] = {}
    for name, f in factors.items():
        if not isinstance(f, dict) or f.get("kind") not in KINDS:
            raise bad(f"factor {name!r}: kind must be one of {KINDS}")
        mods = f.get("modalities")
        if not isinstance(mods, list) or not mods or not set(mods) <= {"image", "text"}:
            raise bad(f"factor {name!r}: modalities must be a non-empty subset of image/text")
        if f["kind"] in _MODALITIES and sorted(mods) != sorted(_MODALITIES[f["kind"]]):
            raise bad(
                f"factor {name!r}: kind {f['kind']} needs modalities "
                f"{_MODALITIES[f['kind']]}, not {mods}"
            )
        vals = f.get("values")
        if not isinstance(vals, list) or not vals or not all(isinstance(x, str) for x in vals):
            raise bad(f"factor {name!r}: values must be a non-empty list of names")
        n_values[name] = len(vals)
    if not isinstance(items, dict) or not items:
        raise bad("'items' must be a non-empty object")
    for asin, vals in items.items():
        if not isinstance(vals, dict) or set(vals) != set(n_values):
            raise bad(f"item {asin!r}: needs exactly the factors {sorted(n_values)}")
        for name, k in vals.items():
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < n_values[name]:
                raise bad(f"item {asin!r}: factor {name!r} = {k!r} is not a value index")
