"""The shop's literal words: value synonyms, filler banks, people, reviewer names, templates.

They live in the package's data files (``words.json``, ``templates.json``), read once
at import. Every generated review is drawn from them, so editing a file changes every
generated shop; the tests pin their sha256 for that reason. The photo shop's
groupings and extra words are a third such file, ``photos.json``, read by
:mod:`mdr.data.shop.photos`.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from mdr.data.shop.factors import BRANDS

DATA_FILES = ("words.json", "templates.json", "photos.json")  # photos.json: mdr.data.shop.photos


def _load(name: str) -> Any:
    return json.loads(files(__package__).joinpath(name).read_text(encoding="utf-8"))


_WORDS = _load("words.json")

# Synonyms per factor value, most frequent first. Every phrase holds at least one
# word that no other value and no filler sentence uses (checked in the tests).
VALUE_WORDS: dict[str, tuple[tuple[str, ...], ...]] = {
    **{f: tuple(tuple(syns) for syns in vals) for f, vals in _WORDS["value_words"].items()},
    "brand": tuple((b,) for b in BRANDS),
}

# Word lists that fill the templates' {fields}; earlier entries are more frequent.
BANKS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _WORDS["banks"].items()}

# (noun, subject pronoun, object pronoun) for gifting sentences.
PEOPLE: tuple[tuple[str, str, str], ...] = tuple(
    (n, "she" if g == "f" else "he", "her" if g == "f" else "him")
    for n, g in _WORDS["people"].items()
)

FIRST_NAMES: tuple[str, ...] = tuple(_WORDS["first_names"])  # reviewer names
LAST_NAMES: tuple[str, ...] = tuple(_WORDS["last_names"])

# Sentence templates by topic and polarity ("pos", "neu", "neg", "any"); {field} from
# BANKS, VALUE_WORDS (the item's own value) or PEOPLE ({who}, {she}, {her}). The order
# of the polarities matters: a topic without the asked one falls back to its first.
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    topic: {pol: tuple(ts) for pol, ts in by_pol.items()}
    for topic, by_pol in _load("templates.json").items()
}
