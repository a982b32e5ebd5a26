"""The photo shop: the embedded shop with every item's image a real product photo.

``generate(size, seed, out, photos=DIR)`` (``mdr data synth --photos DIR``) writes the
same files as the drawn shop (the Amazon 2014 layout, ``factors.json``), but each
item is one photo of the "Fashion Product Images (Small)" corpus (``DIR``: default
``$MDR_FASHION_DIR``, else ``../shared/data/fashion-product-images-small``, as
:func:`mdr.data.fashion.default_fashion_dir`), read with :mod:`mdr.data.fashion`'s
parsers. Its dataset names are ``photo-tiny`` and ``photo-small``; the ``cloth`` size
needs more photos than the corpus has and is refused.

What is taken from the photo, what is drawn
-------------------------------------------
- **colour** is the photo's ``baseColour``, grouped into the 12 classes of
  :data:`PHOTO_COLOURS` (the drawn shop's 10 plus grey and beige: the corpus has
  770 grey and 171 beige photos that no drawn colour names; the same 12 base colours
  as the real-data weak labels of :mod:`mdr.data.labels`). The grouping,
  :data:`COLOUR_GROUPS`, is package data (``photos.json``); each class has at least
  88 candidate photos (orange, the rarest; black has 1,996). ``Multi`` (several
  colours) and missing colours are in no class.
- **shape** (the product type and leaf category) is the photo's ``articleType``,
  grouped into the 14 classes of :data:`PHOTO_SHAPES` (:data:`SHAPE_GROUPS`): every
  group of related article types with at least 200 photos (belts, the rarest, have
  211). Socks (173), caps and hats (92), ties (75) and the rare types (jewellery,
  fragrances, scarves, gift sets ...) are in no class: about 600 photos.
- **titles** start from the photo's real ``productDisplayName``, followed by the
  drawn brand and a model number (``"Turtle Check Men Navy Blue Shirt by Halcyon
  HA-512"``). Unlike the drawn shop's, these titles name the colour and type (as real
  titles do); prepared item text is read from reviews only, so it does not see them.
- **everything else is drawn as in the drawn shop**, from the same random streams:
  size, pattern, material, occasion, brand, quality, the nuisances background and
  position, prices (the type's base price x material x brand tier, with
  :data:`SHAPE_PRICE` for the photo shop's types), popularity, users, their tastes
  and choices (the shopping-intent chain follows :data:`COMPLEMENTS`, the photo
  types' complements), ratings, review days and reviews.

Which modality shows which factor
---------------------------------
``factors.json`` is the same ground truth in the same format, but it only lists what
some modality really shows:

==============  ===============  ====================================================
factor          kind             how it shows
==============  ===============  ====================================================
``colour``      visual_dominant  the photo's real colour; colour words in ~30 % of
                                 reviews (:data:`VALUE_WORDS`: words for all 12
                                 classes), 5 % of them naming another colour
``shape``       visual_dominant  the photo's real product type; type words (tee,
                                 jeans, sneakers, wallet ...) in ~30 % of reviews
``size``        text_only        size words in ~70 % of reviews; the photo is not
                                 scaled, so no image shows the drawn size
``material``    text_only        as in the drawn shop (also ``occasion``, ``brand``,
                                 ``quality``)
==============  ===============  ====================================================

``pattern``, ``background`` and ``position`` are drawn (so every other draw is the
drawn shop's) and users still have a taste for pattern, but no photo shows a drawn
pattern, backdrop or placement and no review names them: they are left out of
``factors.json``. Pattern is thus a preference only behaviours reveal.
``factors.json`` also holds, per item, the source photo (``photos``: corpus ``id``,
raw ``baseColour`` and ``articleType``) and the corpus files' sha256
(``photo_source``).

Which photos become items
-------------------------
The candidates are the photographed styles.csv rows (malformed rows skipped as
:func:`mdr.data.fashion.read_styles` skips them) with a colour and an article type in
a class. They are walked in a seeded random order (stream ``rng(seed, "synthetic",
"photos")``) twice: the first walk takes a photo while its colour class has fewer than
``max(1, n // (4 * 12))`` items or its shape class fewer than ``max(1, n // (4 * 14))``
(a quarter of an even share: 31 and 26 in the small shop, so every class has items);
the second fills the remaining places in the same order, so beyond the quotas the
classes follow the corpus (a black or blue item is common, an orange one rare). A
photo that does not decode (as ``prepare`` decodes it) is passed over. Items are
ordered by corpus id. The photo's JPEG bytes are copied unchanged as
``images/<asin>.jpg`` (224x224): the photos stay outside the repository, in the
generated shop under the data folder.

Same corpus, size and seed give byte-identical files. ``photo-small`` takes about 4 s
to generate (1 s of it reading the corpus and checking the chosen photos) and 4 s to
prepare on the 2-core development machine; it takes 14 MB on disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from mdr import io as mio
from mdr.data.images import load_image_reason
from mdr.data.parse import DataError, image_filename
from mdr.data.shop.factors import FACTORS, Catalogue, Factor
from mdr.data.shop.reviews import MENTION_P
from mdr.data.shop.words import TEMPLATES
from mdr.data.shop.words import VALUE_WORDS as DRAWN_VALUE_WORDS
from mdr.seeding import rng

DATA_FILE = "photos.json"
CORPUS = "fashion-product-images-small"
_IMAGE_CHUNK = 1_000  # photos copied per task
_CHECK_SIZE = 32  # decode check at the prepared size (a reduced JPEG decode: cheap)


def _load() -> dict[str, Any]:
    return json.loads(files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8"))


_DOC = _load()

# class -> the corpus labels it groups (baseColour, articleType)
COLOUR_GROUPS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _DOC["colour_groups"].items()}
SHAPE_GROUPS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _DOC["shape_groups"].items()}
PHOTO_COLOURS = tuple(COLOUR_GROUPS)
PHOTO_SHAPES = tuple(SHAPE_GROUPS)
COLOUR_OF = {label: k for k, c in enumerate(PHOTO_COLOURS) for label in COLOUR_GROUPS[c]}
SHAPE_OF = {label: k for k, s in enumerate(PHOTO_SHAPES) for label in SHAPE_GROUPS[s]}
SHAPE_PRICE = tuple(float(_DOC["shape_price"][s]) for s in PHOTO_SHAPES)
COMPLEMENTS = {s: tuple(c) for s, c in _DOC["complements"].items()}

# The review writer's words: the drawn shop's, with colour words for the 12 colour
# classes and product-type words (shape), named with the probabilities of MENTION_P.
VALUE_WORDS: dict[str, tuple[tuple[str, ...], ...]] = {
    **DRAWN_VALUE_WORDS,
    **{f: tuple(tuple(s) for s in vals) for f, vals in _DOC["value_words"].items()},
}
MENTION_P_PHOTO: dict[str, float] = {**MENTION_P, **_DOC["mention_p"]}  # shape drawn last
PHOTO_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    **TEMPLATES,
    **{t: {pol: tuple(ts) for pol, ts in d.items()} for t, d in _DOC["templates"].items()},
}


def _photo_factor(f: Factor) -> Factor:
    """The photo shop's version of a drawn factor (colour and shape come from the photo,
    so their weights are never drawn from: equal placeholders)."""
    if f.name == "colour":
        return Factor("colour", "visual_dominant", PHOTO_COLOURS, (1.0,) * len(PHOTO_COLOURS))
    if f.name == "shape":
        return Factor("shape", "visual_dominant", PHOTO_SHAPES, (1.0,) * len(PHOTO_SHAPES))
    if f.name == "size":
        return Factor("size", "text_only", f.values, f.weights)
    return f


PHOTO = Catalogue(
    "photo",
    tuple(_photo_factor(f) for f in FACTORS),
    SHAPE_PRICE,
    COMPLEMENTS,
    recorded=("colour", "size", "shape", "material", "occasion", "brand", "quality"),
)


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Photo:
    """One candidate photo: its corpus row and its colour and shape classes."""

    id: int
    path: Path
    name: str  # productDisplayName
    base_colour: str
    article_type: str
    colour: int  # index into PHOTO_COLOURS
    shape: int  # index into PHOTO_SHAPES


def default_photos_dir() -> Path:
    """``$MDR_FASHION_DIR``, else the shared corpus (as the fashion images' default)."""
    from mdr.data.fashion import default_fashion_dir

    return default_fashion_dir()


def corpus_photos(src: str | Path) -> tuple[list[Photo], dict[str, Any]]:
    """The candidate photos of the corpus at ``src`` (ascending id) and what was left out,
    the corpus's skipped records included (by reason, with ``file:line`` examples).

    A missing folder is one :class:`DataError` naming it and ``$MDR_FASHION_DIR``.
    """
    from mdr.data.fashion import ENV_DIR, STYLES, _check_src, _image_ids, _usable, read_styles
    from mdr.data.parse import SkipLog

    src = Path(src)
    if not src.is_dir():
        raise DataError(
            f"{src}: photo corpus folder not found (set ${ENV_DIR} to the "
            f"{CORPUS} folder, or pass --photos DIR)"
        )
    _check_src(src)
    skips = SkipLog()
    rows, _ = read_styles(src, skips)
    images = _image_ids(src, skips)
    photographed = sorted((r for r in rows if r.id in images), key=lambda r: r.id)
    usable = _usable(photographed, src / STYLES, skips)
    out: list[Photo] = []
    for r in usable:
        colour = COLOUR_OF.get(r.values["baseColour"])
        shape = SHAPE_OF.get(r.values["articleType"])
        if colour is None or shape is None:
            continue
        out.append(
            Photo(
                r.id,
                images[r.id],
                r.name or r.values["articleType"],
                r.values["baseColour"],
                r.values["articleType"],
                colour,
                shape,
            )
        )
    counts = {
        "photographed_rows": len(photographed),
        "without_label": len(photographed) - len(usable),
        "outside_the_classes": len(usable) - len(out),
        "candidates": len(out),
        "skipped": skips.as_dict(),
    }
    return out, counts


def choose_photos(photos: Sequence[Photo], n: int, seed: int) -> tuple[list[Photo], int]:
    """``n`` photos by the module's rule (quotas, then seeded order), in id order, and the
    number passed over as undecodable. :class:`DataError` when too few are usable."""
    if n > len(photos):
        raise DataError(
            f"a photo shop of {n:,} items needs {n:,} photos; the corpus has "
            f"{len(photos):,} in the colour and shape classes"
        )
    q_colour = max(1, n // (4 * len(PHOTO_COLOURS)))
    q_shape = max(1, n // (4 * len(PHOTO_SHAPES)))
    n_colour = np.zeros(len(PHOTO_COLOURS), np.int64)
    n_shape = np.zeros(len(PHOTO_SHAPES), np.int64)
    order = rng(seed, "synthetic", "photos").permutation(len(photos))
    state = np.zeros(len(photos), np.int8)  # 0 not looked at, 1 taken, 2 undecodable
    chosen: list[int] = []

    def take(i: int) -> None:
        p = photos[i]
        if load_image_reason(p.path, _CHECK_SIZE)[1] is not None:
            state[i] = 2
            return
        state[i] = 1
        chosen.append(i)
        n_colour[p.colour] += 1
        n_shape[p.shape] += 1

    for i in order:  # quotas first: every class gets items
        if len(chosen) == n:
            break
        if n_colour[photos[i].colour] < q_colour or n_shape[photos[i].shape] < q_shape:
            take(int(i))
    for i in order:  # then the seeded order alone: the corpus's own proportions
        if len(chosen) == n:
            break
        if state[i] == 0:
            take(int(i))
    if len(chosen) < n:
        raise DataError(
            f"a photo shop of {n:,} items needs {n:,} photos; only {len(chosen):,} "
            f"of the corpus decode"
        )
    return sorted((photos[i] for i in chosen), key=lambda p: p.id), int((state == 2).sum())


# --------------------------------------------------------------------------- the shop's parts


@dataclass
class PhotoPicks:
    """The photos a shop is made of, one per item (item order), and where they came from."""

    src: Path
    photos: list[Photo]
    counts: dict[str, Any]
    inputs: dict[str, str]  # corpus file -> sha256

    def given(self) -> dict[str, np.ndarray]:
        """The factors the photos fix (int64 [I]): colour and shape."""
        return {
            "colour": np.array([p.colour for p in self.photos], np.int64),
            "shape": np.array([p.shape for p in self.photos], np.int64),
        }

    def names(self) -> list[str]:
        return [p.name for p in self.photos]

    def doc(self, asins: Sequence[str]) -> dict[str, Any]:
        """The extra ``factors.json`` sections: the corpus files and each item's photo."""
        by_asin = dict(zip(asins, self.photos))
        return {
            "photo_source": {"corpus": CORPUS, "inputs": self.inputs},
            "photos": {
                a: {"id": p.id, "baseColour": p.base_colour, "articleType": p.article_type}
                for a, p in sorted(by_asin.items())
            },
        }

    def summary(self) -> dict[str, Any]:
        colour = np.bincount([p.colour for p in self.photos], minlength=len(PHOTO_COLOURS))
        shape = np.bincount([p.shape for p in self.photos], minlength=len(PHOTO_SHAPES))
        return {
            "dir": str(self.src),
            **self.counts,
            "colour": dict(zip(PHOTO_COLOURS, colour.tolist())),
            "shape": dict(zip(PHOTO_SHAPES, shape.tolist())),
        }


def pick_photos(src: str | Path, n: int, seed: int) -> PhotoPicks:
    """Read the corpus at ``src`` and choose ``n`` photos for a shop of ``seed``."""
    from mdr.data.fashion import STYLES, STYLES_TEXT

    src = Path(src)
    candidates, counts = corpus_photos(src)
    chosen, undecodable = choose_photos(candidates, n, seed)
    counts = {**counts, "undecodable": undecodable}
    inputs = {name: mio.sha256(src / name) for name in (STYLES, STYLES_TEXT)}
    return PhotoPicks(src.resolve(), chosen, counts, inputs)


def _copy_range(paths: list[str], asins: list[str], folder: str) -> int:
    """Write each photo's bytes as ``folder/<asin>.jpg`` (runs in a worker process too)."""
    for path, asin in zip(paths, asins):
        (Path(folder) / image_filename(asin)).write_bytes(Path(path).read_bytes())
    return len(paths)


def image_tasks(picks: PhotoPicks, asins: Sequence[str], folder: Path) -> list[tuple[Any, tuple]]:
    """The work that writes ``folder/<asin>.jpg`` for every item: its photo, unchanged."""
    paths = [str(p.path) for p in picks.photos]
    asins = list(asins)
    return [
        (_copy_range, (paths[lo : lo + _IMAGE_CHUNK], asins[lo : lo + _IMAGE_CHUNK], str(folder)))
        for lo in range(0, len(paths), _IMAGE_CHUNK)
    ]
