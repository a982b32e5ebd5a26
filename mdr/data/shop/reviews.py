"""The review writer: a summary and a body for one behaviour, from the item's text factors.

Factor sentences (colour, size, material, occasion, brand) name the item's own value
with the probabilities of :data:`MENTION_P`; filler sentences (shipping, gifts, fit ...)
are nuisance. Polarity follows the rating. Words come from :mod:`mdr.data.shop.words`.
A shop with other factor classes (the photo shop) passes its own value words, mention
probabilities and factor templates to :class:`ReviewWriter`; the defaults are the drawn
shop's.
"""

from __future__ import annotations

import bisect
import math
import random
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from mdr.data.shop.words import BANKS, PEOPLE, TEMPLATES, VALUE_WORDS

_TOKEN = re.compile(r"[a-z]+")

# How often each factor is mentioned in a review body (one sentence when it is).
MENTION_P = {"colour": 0.30, "size": 0.70, "material": 0.45, "occasion": 0.35, "brand": 0.15}
_COLOUR_NOISE = 0.05  # a colour mention names another colour (perception, ordering mix-ups)
_FILLER_TOPICS = (
    "shipping",
    "gift",
    "fit",
    "comparison",
    "price",
    "care",
    "craft",
    "looks",
    "service",
    "story",
    "persona",
)
_FILLER_WEIGHTS = (0.18, 0.11, 0.13, 0.08, 0.11, 0.08, 0.07, 0.08, 0.04, 0.07, 0.05)
_LEAD_P = 0.08  # a sentence opens with "Honestly, ..." etc.


class _Bank:
    """A word list with Zipf frequencies: entry r is drawn with weight 1 / (r + 1)^s."""

    __slots__ = ("_cum", "_total", "words")

    def __init__(self, words: Sequence[Any], s: float = 1.0) -> None:
        self.words = tuple(words)
        cum, acc = [], 0.0
        for r in range(len(self.words)):
            acc += 1.0 / (r + 1) ** s
            cum.append(acc)
        self._cum, self._total = cum, acc

    def pick(self, rnd: random.Random) -> Any:
        return self.words[bisect.bisect_right(self._cum, rnd.random() * self._total)]


def _split_template(t: str) -> tuple[tuple[str, str | None], ...]:
    """``"I {love} it"`` -> ``(("I ", "love"), (" it", None))``."""
    return tuple((lit, field) for lit, field, _, _ in string.Formatter().parse(t))


ValueWords = Mapping[str, Sequence[Sequence[str]]]  # factor -> per value, its synonyms
Templates = Mapping[str, Mapping[str, Sequence[str]]]  # topic -> polarity -> templates


class ReviewWriter:
    """Writes a review (summary, text) for one behaviour from the item's text factors.

    ``value_words``, ``mention_p`` and ``templates`` default to the drawn shop's
    (:data:`VALUE_WORDS`, :data:`MENTION_P`, :data:`TEMPLATES`); ``mention_p``'s keys,
    in order, are the factors a review may name (one draw each, in that order).
    """

    def __init__(
        self,
        value_words: ValueWords = VALUE_WORDS,
        mention_p: Mapping[str, float] = MENTION_P,
        templates: Templates = TEMPLATES,
    ) -> None:
        self.mention_p = dict(mention_p)
        self.banks = {k: _Bank(v) for k, v in BANKS.items()}
        self.people = _Bank(PEOPLE, s=0.6)
        self.values = {f: [_Bank(syn, s=0.9) for syn in vals] for f, vals in value_words.items()}
        self.templates = {
            topic: {pol: _Bank([_split_template(t) for t in ts], s=0.5) for pol, ts in d.items()}
            for topic, d in templates.items()
        }
        self.topics = _Bank(_FILLER_TOPICS)  # weights replaced below
        cum, acc = [], 0.0
        for w in _FILLER_WEIGHTS:
            acc += w
            cum.append(acc)
        self.topics._cum, self.topics._total = cum, acc

    def _fill(self, parts: tuple, rnd: random.Random, item: dict[str, int]) -> str:
        out: list[str] = []
        person: tuple[str, str, str] | None = None
        for lit, field in parts:
            out.append(lit)
            if field is None:
                continue
            if field in self.values:
                v = item[field]
                if field == "colour" and rnd.random() < _COLOUR_NOISE:
                    v = rnd.randrange(len(self.values["colour"]))
                out.append(self.values[field][v].pick(rnd))
            elif field in ("who", "she", "her"):
                person = person or self.people.pick(rnd)
                out.append(person[("who", "she", "her").index(field)])
            else:
                out.append(self.banks[field].pick(rnd))
        s = "".join(out)
        return s[:1].upper() + s[1:]

    def _sentence(self, topic: str, pol: str, rnd: random.Random, item: dict[str, int]) -> str:
        by_pol = self.templates[topic]
        key = pol if pol in by_pol else ("pos" if pol == "neu" and "pos" in by_pol else "any")
        if key not in by_pol:
            key = next(iter(by_pol))
        s = self._fill(by_pol[key].pick(rnd), rnd, item)
        if topic in _FILLER_TOPICS and rnd.random() < _LEAD_P:
            rest = s if s.startswith("I ") else s[:1].lower() + s[1:]
            s = f"{self.banks['lead'].pick(rnd)}, {rest}"
        return s

    def write(
        self, rnd: random.Random, item: dict[str, int], rating: int, verbosity: float
    ) -> tuple[str, str]:
        """One review: ``(summary, reviewText)``; polarity follows the rating."""
        pol = "pos" if rating >= 4 else ("neu" if rating == 3 else "neg")
        summary = self._sentence("summary", pol, rnd, item)
        u = rnd.random()
        if u < 0.002:
            return "", ""
        if u < 0.012:
            return summary, ""  # summary-only review
        body: list[str] = []
        for f, p in self.mention_p.items():
            if rnd.random() < p:
                fpol = "neg" if pol == "neg" and rnd.random() < 0.6 else "pos"
                body.append(self._sentence(f, fpol, rnd, item))
        n_filler = _poisson(rnd, 2.8 * verbosity)
        for _ in range(n_filler):
            body.append(self._sentence(self.topics.pick(rnd), pol, rnd, item))
        rnd.shuffle(body)
        if rnd.random() < 0.8:
            body.insert(0, self._sentence("opening", pol, rnd, item))
        if rnd.random() < 0.35:
            body.append(self._sentence("closing", pol, rnd, item))
        return summary.rstrip("."), " ".join(body)


def _poisson(rnd: random.Random, lam: float) -> int:
    """Knuth's Poisson sampler (small lambda), on a ``random.Random`` stream."""
    limit, k, p = math.exp(-lam), 0, rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def filler_vocabulary(templates: Templates = TEMPLATES) -> set[str]:
    """Words of the templates and filler banks (everything but the factor synonyms)."""
    words: set[str] = set()
    for d in templates.values():
        for ts in d.values():
            for t in ts:
                for lit, _field, _, _ in string.Formatter().parse(t):
                    words.update(_tokens(lit))
    for bank in BANKS.values():
        for w in bank:
            words.update(_tokens(w))
    for person in PEOPLE:
        for w in person:
            words.update(_tokens(w))
    return words


def vocabulary(value_words: ValueWords = VALUE_WORDS, templates: Templates = TEMPLATES) -> set[str]:
    """Every word a review can contain (lower-case tokens ``[a-z]+``)."""
    words = filler_vocabulary(templates)
    for vals in value_words.values():
        for syns in vals:
            for s in syns:
                words.update(_tokens(s))
    return words
