"""Weak attribute labels for the supervised slots (Eq. 12-13), and synthetic ground truth.

Which label supervises which slot is config (``SlotConfig.label``); a prepared folder
offers these (a label a config does not name is simply unused).

Real data (a documented rule, no manual annotation):

- ``colour``: the first word of the title (tokenised as in :mod:`mdr.data.text`)
  found in :data:`COLOUR_WORDS`, mapped to one of the 12 base colours of
  :data:`BASE_COLOURS` (``navy`` -> blue, ``burgundy`` -> red, ``charcoal`` ->
  grey, ...). Titles without a colour word are unlabelled.
- ``shape``: the item's leaf category (DIN's ``categories[-1][-1]``), the
  :data:`SHAPE_TOP_K` most frequent leaf categories as classes (ties by name)
  and every other category as ``other``. Items without a category are unlabelled.
- ``material``: the first word of the title found in :data:`MATERIAL_WORDS`, mapped to
  its material (``leather``, ``cotton``, ``plastic``, ...); titles without one are
  unlabelled.
- ``brand``: the metadata's brand, case-folded and stripped; brands of at least
  :data:`BRAND_MIN_ITEMS` items are classes (at most :data:`BRAND_TOP_K`, most frequent
  first, ties by name), every other brand ``other``; items without a brand are
  unlabelled.

Synthetic data (a ``factors.json`` beside the raw files): the ground-truth factors
:data:`SYNTHETIC_LABELS` (the image factors colour and shape, the text factors size,
material, occasion and brand), and every factor is kept for the disentanglement scores.

Budget (:func:`apply_budget`): of the items that have a label, only a seeded
random ``fraction`` keeps it; the rest become -1. The stream is
``rng(seed, "labels", name)``, so each label's choice is independent of the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mdr.data.parse import SkipLog
from mdr.data.text import tokenize
from mdr.seeding import rng

UNLABELLED = -1
SHAPE_TOP_K = 15
OTHER = "other"
SYNTHETIC_LABELS = ("colour", "shape", "size", "material", "occasion", "brand")
BRAND_MIN_ITEMS = 5
BRAND_TOP_K = 50

BASE_COLOURS: tuple[str, ...] = (
    "black",
    "white",
    "grey",
    "brown",
    "beige",
    "red",
    "pink",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
)

_SYNONYMS: dict[str, tuple[str, ...]] = {  # ambiguous words (rose, cream, coffee, mint) left out
    "black": ("black", "onyx", "ebony"),
    "white": ("white", "ivory", "pearl"),
    "grey": ("grey", "gray", "charcoal", "silver", "slate", "heather", "pewter", "gunmetal"),
    "brown": (
        "brown",
        "tan",
        "camel",
        "mocha",
        "espresso",
        "cognac",
        "chestnut",
        "bronze",
        "copper",
    ),
    "beige": ("beige", "khaki", "nude", "taupe", "ecru", "oatmeal"),
    "red": ("red", "burgundy", "maroon", "crimson", "scarlet", "ruby", "claret"),
    "pink": ("pink", "fuchsia", "magenta", "blush", "salmon"),
    "orange": ("orange", "coral", "peach", "tangerine", "apricot"),
    "yellow": ("yellow", "gold", "golden", "mustard"),
    "green": ("green", "olive", "lime", "emerald", "sage", "teal", "jade"),
    "blue": ("blue", "navy", "denim", "indigo", "turquoise", "aqua", "cobalt", "cyan", "azure"),
    "purple": ("purple", "violet", "lavender", "lilac", "plum", "mauve"),
}
COLOUR_WORDS: dict[str, str] = {w: base for base, ws in _SYNONYMS.items() for w in ws}

# title words that name what an item is made of (plurals and adjectives too)
_MATERIALS: dict[str, tuple[str, ...]] = {
    "cotton": ("cotton",),
    "wool": ("wool", "woolen", "woollen", "merino", "cashmere"),
    "leather": ("leather", "suede", "nubuck"),
    "silk": ("silk", "satin"),
    "linen": ("linen",),
    "denim": ("denim",),
    "polyester": ("polyester", "fleece"),
    "nylon": ("nylon", "spandex", "lycra"),
    "canvas": ("canvas",),
    "rubber": ("rubber", "silicone"),
    "plastic": ("plastic", "acrylic", "vinyl"),
    "metal": ("metal", "steel", "aluminum", "aluminium", "brass", "iron", "copper"),
    "wood": ("wood", "wooden", "bamboo", "oak", "pine"),
    "glass": ("glass",),
    "ceramic": ("ceramic", "porcelain", "stoneware"),
    "paper": ("paper", "cardboard"),
}
MATERIALS: tuple[str, ...] = tuple(_MATERIALS)
MATERIAL_WORDS: dict[str, str] = {w: m for m, ws in _MATERIALS.items() for w in ws}


@dataclass(frozen=True)
class Labels:
    """Weak labels int64 [I] per name (-1 = unlabelled) and each label's class names."""

    values: dict[str, np.ndarray]
    classes: dict[str, list[str]]


# --------------------------------------------------------------------------- real data


def colour_of_title(title: str) -> int:
    """Index into :data:`BASE_COLOURS` of the first colour word of ``title``, else -1."""
    for word in tokenize(title, min_token_len=1):
        base = COLOUR_WORDS.get(word)
        if base is not None:
            return BASE_COLOURS.index(base)
    return UNLABELLED


def shape_classes(leaf_categories: Sequence[str], top_k: int = SHAPE_TOP_K) -> list[str]:
    """The ``top_k`` most frequent non-empty leaf categories (ties by name), plus ``other``."""
    counts = Counter(c for c in leaf_categories if c)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    classes = [c for c, _ in ranked[:top_k]]
    return [*classes, OTHER] if len(ranked) > top_k else classes


def first_word_class(title: str, words: Mapping[str, str], classes: Sequence[str]) -> int:
    """Index into ``classes`` of the class of the first word of ``title`` in ``words``."""
    for word in tokenize(title, min_token_len=1):
        name = words.get(word)
        if name is not None:
            return classes.index(name)
    return UNLABELLED


def brand_classes(
    brands: Sequence[str], min_items: int = BRAND_MIN_ITEMS, top_k: int = BRAND_TOP_K
) -> list[str]:
    """Brands of at least ``min_items`` items (at most ``top_k``, most frequent first, ties
    by name), plus ``other`` when some brand is left out."""
    counts = Counter(b for b in brands if b)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    classes = [b for b, n in ranked[:top_k] if n >= min_items]
    return [*classes, OTHER] if len(classes) < len(counts) else classes


def real_labels(
    titles: Sequence[str],
    leaf_categories: Sequence[str],
    brands: Sequence[str] | None = None,
    top_k: int = SHAPE_TOP_K,
) -> Labels:
    """Colour and material from title words, shape from the leaf category, brand from the
    metadata (see the module docstring)."""
    colour = np.fromiter((colour_of_title(t) for t in titles), np.int64, len(titles))
    material = np.fromiter(
        (first_word_class(t, MATERIAL_WORDS, MATERIALS) for t in titles), np.int64, len(titles)
    )
    classes = shape_classes(leaf_categories, top_k)
    index = {c: k for k, c in enumerate(classes)}
    other = index.get(OTHER, UNLABELLED)
    shape = np.array(
        [index.get(c, other) if c else UNLABELLED for c in leaf_categories], dtype=np.int64
    )
    values = {"colour": colour, "shape": shape, "material": material}
    names = {"colour": list(BASE_COLOURS), "shape": classes, "material": list(MATERIALS)}
    if brands is not None:
        folded = [b.strip().casefold() for b in brands]
        b_classes = brand_classes(folded)
        b_index = {c: k for k, c in enumerate(b_classes)}
        b_other = b_index.get(OTHER, UNLABELLED)
        values["brand"] = np.array(
            [b_index.get(b, b_other) if b else UNLABELLED for b in folded], dtype=np.int64
        )
        names["brand"] = b_classes
    return Labels(values, names)


# --------------------------------------------------------------------------- synthetic data


def synthetic_factors(
    doc: Mapping[str, Any], asins: Sequence[str], skips: SkipLog, where: str = "factors.json"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every factor as int64 [I] (-1 where unknown) and the factor descriptions.

    Items absent from the file and out-of-range values are counted skips.
    """
    info = {f: dict(v) for f, v in doc["factors"].items()}
    items = doc["items"]
    out = {f: np.full(len(asins), UNLABELLED, np.int64) for f in info}
    for i, asin in enumerate(asins):
        row = items.get(asin)
        if not isinstance(row, dict):
            skips.add("item without ground-truth factors", where, asin)
            continue
        for f, arr in out.items():
            v = row.get(f)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < len(info[f]["values"]):
                skips.add("invalid ground-truth factor value", where, f"{asin} {f}={v!r}")
                continue
            arr[i] = v
    return out, info


def synthetic_labels(factors: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> Labels:
    """The ground-truth factors of :data:`SYNTHETIC_LABELS` as labels (those present)."""
    values = {n: factors[n].copy() for n in SYNTHETIC_LABELS if n in factors}
    classes = {n: [str(v) for v in info[n]["values"]] for n in values}
    return Labels(values, classes)


# --------------------------------------------------------------------------- budget


def apply_budget(labels: Labels, fraction: float, seed: int) -> tuple[Labels, dict[str, Any]]:
    """Keep each label on a seeded random ``fraction`` of the items that have it.

    Returns the budgeted labels and per label {"with_label", "kept"}.
    """
    out: dict[str, np.ndarray] = {}
    report: dict[str, Any] = {}
    for name in sorted(labels.values):
        y = labels.values[name]
        has = np.flatnonzero(y != UNLABELLED)
        n_keep = min(has.size, round(fraction * has.size))
        if fraction > 0 and has.size and n_keep == 0:
            n_keep = 1
        keep = rng(seed, "labels", name).choice(has, size=n_keep, replace=False)
        budgeted = np.full_like(y, UNLABELLED)
        budgeted[keep] = y[keep]
        out[name] = budgeted
        report[name] = {"with_label": int(has.size), "kept": int(n_keep)}
    return Labels(out, {n: labels.classes[n] for n in sorted(labels.classes)}), report
