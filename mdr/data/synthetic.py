"""The embedded synthetic shop: a seeded, byte-reproducible dataset in the Amazon 2014 layout.

``generate(size, seed, out)`` writes ``reviews_Synthetic_5.json.gz`` (strict JSON
lines), ``meta_Synthetic.json.gz`` (Python-literal lines, as the real 2014 file),
``images/<asin>.jpg`` (128x128 JPEG) and ``factors.json`` (every item's
ground-truth factor values, and per factor the modality that shows it). One
loader serves it and the real data; the ground truth is what makes quantitative
disentanglement scores possible. Synthetic results are illustrations, not
evidence about real shops.

Items and their factors
-----------------------
Every item draws each factor independently from a fixed, shop-like marginal
(black and blue are common colours, yellow is rare; most product photos have a
white background). Independence is a deliberate simplification: it keeps the
ground truth identifiable (a wool mug is possible). The one correlation is
brand tier -> quality (premium brands make better items), as in real shops.

==============  ===============  ======================================================
factor          kind             how it shows
==============  ===============  ======================================================
``colour``      visual_dominant  fill colour of the drawing (10 colours, per-item shade
                                 jitter); colour words (navy/cobalt/azure ...) in ~30 %
                                 of reviews, 5 % of them naming another colour
``size``        text_dominant    drawn scale (4 sizes, +-5 % jitter, so the picture
                                 alone is ambiguous); size words in ~70 % of reviews
``shape``       visual_only      the silhouette = product type = leaf category
                                 (T-Shirts, Dresses, Trousers, Shoes, Handbags, Hats,
                                 Watches, Mugs); reviews only say "item", "piece" ...
``pattern``     visual_only      plain, stripes, dots, checks (never named in reviews)
``material``    text_only        material words (cotton, suede, merino ...) in ~45 %
``occasion``    text_only        use words (the gym, road trips, weddings ...) in ~35 %
``brand``       text_only        12 brands, Zipf popularity; the meta ``brand`` field
                                 and brand mentions in ~15 % of reviews
``quality``     text_only        low/average/high: shifts ratings, hence review
                                 sentiment, and item popularity
``background``  nuisance         white / light grey / cream / pale blue backdrop
``position``    nuisance         where the item sits in the frame
==============  ===============  ======================================================

Filler text is nuisance too: sentiment (following the rating), shipping,
gifting, fit, comparison, price, care, craft, looks, service, personas and short
stories, from a vocabulary of over 1,100 words (see :func:`vocabulary`). Within
every word list earlier words are more frequent (Zipf), as in real text.
Reviewers differ in verbosity; a few reviews are summary-only or empty.
Titles hold the brand, a product line and the product type (no colour, size or
material); prices follow product type, material and brand tier.

How users choose
----------------
Each user has latent preferences over factor values of both modalities:
a Dirichlet-drawn taste per factor (concentrated for size - a person has one
size - looser for brand and pattern) and per-user weights of how much each
factor matters. A history is generated step by step, like visits to a shop:
the user sees a candidate list (48 items by popularity, 48 items of the product
type they are shopping for) and takes one by a softmax (Gumbel-max) over

    score = sum_f w_uf log theta_uf[value_f(item)]      (taste, both modalities)
          + 1.5 [shape == current intent]                (shopping intent)
          + sum_{k=1..3} decay_k sum_f lambda_f [value_f(item) == value_f(h_-k)]
          + 0.3 (quality - 1),

never an item the user already has. The shopping intent follows a Markov chain:
with probability 0.6 it comes from the last item's product type through a
fixed complement matrix (a dress leads to shoes or a handbag; the same type
35 %), otherwise from the user's own taste. The style term makes the last
three items (decay 1, 1/2, 1/4) predict the next one's colour, material,
brand, pattern and occasion: the sequential drift that rewards history models
such as DIN.

Popularity is long-tailed: item exposure weights are ``5 + lognormal`` extras
(sigma 1.1, times 0.6/1/1.5 by quality). History lengths are ``5 + lognormal``
extras (sigma 1.0, capped) that sum exactly to the size's behaviour count.
Items left with under five buyers are topped up by taking over a behaviour of
a popular item, of the same product type where possible (counted as
``repairs``), so the output is exactly 5-core by construction (checked).
Ratings follow quality, taste match and a per-user leniency, cut at thresholds
calibrated once to a real-shop histogram (about 58 % five stars). Review days
advance per user from a shop growing exponentially (2008 to 2014-07-23) by
lognormal gaps; 15 % of gaps are zero (same-day ties, as in the real data).

Sizes
-----
=========  ==========================================================  ===================
``tiny``   150 users / 100 items / 1,050 behaviours                    CI, about 1 s
``small``  3,000 users / 1,500 items / 30,000 behaviours               every table, 7-10 s
``cloth``  39,387 users / 23,033 items / 278,677 behaviours            Table 1's Cloth
                                                                       counts, ~70 CPU-s,
                                                                       under 2 min
=========  ==========================================================  ===================

Times: the 2-core development machine, shared with other jobs. ``small`` and
``cloth`` write reviews and draw images in worker processes; ``cloth`` peaks at
0.4 GB of memory and takes 130 MB on disk. Its shape: median history 6 (max
~100), median item degree 8 (max ~330), 13 % same-day ties, ~40 words a review,
~4 % of behaviours repaired to reach the 5-core.

Same size and seed give byte-identical files (gzip mtime 0 and a fixed inner
name, deterministic JPEG encoding, named random streams from
:func:`mdr.seeding.rng`), whatever the number of workers. The folder is built
beside ``out`` and moved into place at the end: an interrupted run leaves
nothing that looks complete. It carries mdr's ownership marker (kind
``synthetic-raw``, see :mod:`mdr.io`); an existing ``out`` is replaced only when
it is such a shop and ``overwrite=True`` (``--overwrite``), never otherwise.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import gzip
import io
import json
import math
import os
import random
import re
import string
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mdr.data.parse import DataError, image_filename
from mdr.io import atomic_dir
from mdr.seeding import rng

CATEGORY = "Synthetic"
OUTPUT_KIND = "synthetic-raw"  # the ownership marker's kind (mdr.io)
IMAGE_SIZE = 128
KINDS = ("visual_dominant", "text_dominant", "visual_only", "text_only", "nuisance")
_MODALITIES = {
    "visual_dominant": ["image", "text"],
    "text_dominant": ["image", "text"],
    "visual_only": ["image"],
    "text_only": ["text"],
}
_TOKEN = re.compile(r"[a-z]+")


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
    "Northwind", "Larkspur", "Quillon", "Halcyon", "Brambleton", "Corvina",
    "Ostrander", "Pellucid", "Marlowe", "Tessaly", "Vantor", "Wrenfield",
)  # fmt: skip

FACTORS: tuple[Factor, ...] = (
    Factor("colour", "visual_dominant", tuple(COLOUR_RGB),
           (0.10, 0.05, 0.04, 0.08, 0.16, 0.06, 0.09, 0.10, 0.20, 0.12)),
    Factor("size", "text_dominant", tuple(SIZE_SCALE), (0.22, 0.34, 0.29, 0.15)),
    Factor("shape", "visual_only",
           ("T-Shirts", "Dresses", "Trousers", "Shoes", "Handbags", "Hats", "Watches", "Mugs"),
           (0.18, 0.16, 0.12, 0.16, 0.12, 0.08, 0.09, 0.09)),
    Factor("pattern", "visual_only", ("plain", "stripes", "dots", "checks"),
           (0.55, 0.17, 0.12, 0.16)),
    Factor("material", "text_only",
           ("cotton", "synthetic", "leather", "denim", "wool", "canvas", "silk", "metal"),
           (0.24, 0.18, 0.13, 0.10, 0.10, 0.08, 0.07, 0.10)),
    Factor("occasion", "text_only", ("everyday", "work", "sport", "party", "travel", "outdoor"),
           (0.30, 0.17, 0.15, 0.14, 0.12, 0.12)),
    Factor("brand", "text_only", BRANDS, tuple(1.0 / (r + 1) ** 0.8 for r in range(12))),
    Factor("quality", "text_only", ("low", "average", "high"), (0.2, 0.5, 0.3)),
    Factor("background", "nuisance", tuple(BACKGROUND_RGB), (0.55, 0.2, 0.15, 0.1), ("image",)),
    Factor("position", "nuisance", tuple(POSITION_DIR), (0.4, 0.15, 0.15, 0.15, 0.15), ("image",)),
)  # fmt: skip
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

# How users choose (see the module docstring).
_PREF_CONCENTRATION = {"colour": 0.35, "shape": 0.5, "size": 0.25, "material": 0.5,
                       "brand": 0.6, "pattern": 0.8, "occasion": 0.5}  # fmt: skip
_PREF_WEIGHT = {"colour": 1.0, "shape": 1.2, "size": 0.8, "material": 0.6,
                "brand": 0.4, "pattern": 0.3, "occasion": 0.5}  # fmt: skip
_STYLE_WEIGHT = {"colour": 0.6, "material": 0.4, "brand": 0.5, "pattern": 0.3, "occasion": 0.4}
_STYLE_DECAY = (1.0, 0.5, 0.25)
_INTENT_BONUS = 1.5
_INTENT_FOLLOW = 0.6
_QUALITY_BONUS = 0.3
_N_POP, _N_INTENT = 48, 48
_MIN_CORE = 5


# --------------------------------------------------------------------------- words

# Synonyms per factor value, most frequent first. Every phrase holds at least one
# word that no other value and no filler sentence uses (checked in the tests).
VALUE_WORDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "colour": (
        ("red", "crimson", "scarlet", "cherry", "ruby", "brick red"),
        ("orange", "tangerine", "burnt orange", "pumpkin", "apricot"),
        ("yellow", "mustard", "golden", "canary", "lemon"),
        ("green", "olive", "emerald", "sage", "forest green", "mint"),
        ("blue", "navy", "cobalt", "royal blue", "azure", "sapphire"),
        ("purple", "violet", "lavender", "plum", "lilac", "mauve"),
        ("pink", "rose", "blush", "fuchsia", "magenta", "hot pink"),
        ("brown", "tan", "chocolate", "camel", "caramel", "cognac"),
        ("black", "jet black", "charcoal", "ebony", "onyx", "pitch black"),
        ("white", "ivory", "snow white", "pearl", "eggshell", "alabaster"),
    ),
    "size": (
        ("small", "petite", "compact", "tiny", "snug", "dainty"),
        ("medium", "regular", "moderate", "midsize", "medium sized"),
        ("large", "big", "roomy", "generous", "spacious", "ample"),
        ("oversized", "huge", "enormous", "supersized", "massive", "gigantic"),
    ),
    "material": (
        ("cotton", "organic cotton", "pima cotton", "combed cotton"),
        ("polyester", "nylon", "microfiber", "spandex", "acrylic"),
        ("leather", "suede", "genuine leather", "nubuck", "cowhide"),
        ("denim", "chambray", "selvedge denim", "stretch denim"),
        ("wool", "merino", "cashmere", "lambswool", "merino wool"),
        ("canvas", "twill", "duck canvas", "waxed canvas"),
        ("silk", "satin", "charmeuse", "mulberry silk"),
        ("stainless steel", "metal", "aluminum", "titanium", "brushed steel"),
    ),
    "occasion": (
        ("everyday", "daily errands", "lounging around", "casual weekends", "chores",
         "school pickups"),
        ("work", "the office", "business meetings", "my commute", "presentations", "interviews"),
        ("the gym", "workouts", "yoga", "tennis", "jogging", "cycling"),
        ("parties", "weddings", "date night", "cocktail hours", "dancing", "formal dinners"),
        ("travel", "vacations", "long flights", "road trips", "weekend getaways", "cruises"),
        ("camping", "hiking", "the beach", "gardening", "fishing", "picnics"),
    ),
    "brand": tuple((b,) for b in BRANDS),
}

# Word lists that fill the templates' {fields}; earlier entries are more frequent.
BANKS: dict[str, tuple[str, ...]] = {
    "noun": ("item", "product", "piece", "purchase", "buy", "find", "thing", "order"),
    "pos": (
        "great", "nice", "good", "beautiful", "lovely", "cute", "perfect", "excellent", "pretty",
        "comfortable", "wonderful", "awesome", "amazing", "gorgeous", "stylish", "sturdy",
        "solid", "elegant", "fantastic", "adorable", "classy", "sleek", "practical", "durable",
        "cozy", "versatile", "chic", "handy", "charming", "fabulous", "superb", "terrific",
        "flattering", "trendy", "fashionable", "classic", "timeless", "sharp", "neat",
        "delightful", "impressive", "outstanding", "marvelous", "flawless", "sophisticated",
        "refined", "luxurious", "handsome", "attractive", "dependable", "reliable", "functional",
        "useful", "unique", "quirky", "playful", "polished", "tasteful", "graceful", "dapper",
        "snazzy", "nifty", "splendid", "exquisite", "stunning", "smart", "cheerful", "comfy",
        "spectacular", "brilliant", "phenomenal", "stellar", "sublime", "dreamy", "swanky",
        "posh", "rad", "groovy", "spiffy", "sensible", "thoughtful", "clever",
    ),
    "neg": (
        "cheap", "flimsy", "poor", "disappointing", "terrible", "awful", "horrible",
        "uncomfortable", "mediocre", "shoddy", "itchy", "scratchy", "stiff", "fragile",
        "defective", "faulty", "tacky", "ugly", "dull", "overpriced", "misleading", "inferior",
        "lousy", "subpar", "sloppy", "wobbly", "lopsided", "smelly", "useless", "clunky",
        "awkward", "unusable", "crooked", "uneven", "bland", "dreadful", "frustrating",
        "annoying", "unreliable", "chintzy", "atrocious", "abysmal", "pathetic", "dismal",
        "shabby", "janky", "rickety", "junky", "questionable", "disgraceful", "gaudy",
    ),
    "neu": (
        "okay", "fine", "decent", "alright", "acceptable", "passable", "adequate", "reasonable",
        "ordinary", "unremarkable", "serviceable", "satisfactory", "fair", "simple enough",
    ),
    "intens": (
        "very", "really", "so", "super", "extremely", "quite", "pretty", "incredibly",
        "absolutely", "truly", "remarkably", "surprisingly", "exceptionally", "fairly",
        "rather", "totally", "genuinely", "seriously", "insanely", "ridiculously",
        "unbelievably", "amazingly", "wonderfully",
    ),
    "love": ("love", "adore", "like", "enjoy", "really like", "am obsessed with"),
    "col_adj": (
        "vibrant", "rich", "deep", "bright", "soft", "bold", "lovely", "pretty", "gorgeous",
        "muted", "saturated", "true", "striking", "subtle", "warm", "cool", "glowing", "dusty",
    ),
    "mat_adj": (
        "soft", "smooth", "thick", "sturdy", "substantial", "supple", "breathable",
        "lightweight", "heavy", "durable", "premium", "luxurious", "buttery", "plush", "crisp",
        "rugged", "thin", "coarse",
    ),
    "event": (
        "birthday", "christmas", "anniversary", "graduation", "valentines day", "mothers day",
        "fathers day", "retirement", "housewarming", "baby shower", "secret santa", "hanukkah",
        "easter", "thanksgiving", "promotion", "farewell", "get well", "welcome home",
        "bridal shower", "new year", "confirmation", "bar mitzvah", "quinceanera",
        "first communion", "diwali", "eid", "kwanzaa", "mardi gras", "halloween", "prom",
        "memorial day", "labor day", "boxing day",
    ),
    "part": ("stitching", "finish", "seams", "edges", "workmanship", "craftsmanship",
             "construction", "hardware", "detailing", "trim", "print quality", "texture",
             "weight", "overall build"),
    "craft_adj": ("impeccable", "meticulous", "precise", "clean", "tidy", "careful",
                  "consistent", "professional", "excellent", "even", "solid", "first rate"),
    "rec_adv": ("definitely", "highly", "wholeheartedly", "strongly", "enthusiastically",
                "happily", "honestly", "absolutely", "cautiously", "reluctantly"),
    "store": (
        "the mall", "a department store", "a local boutique", "a warehouse club", "the outlet",
        "another website", "a thrift shop", "the flea market", "a specialty shop", "the airport",
        "a discount chain", "my local pharmacy", "a street vendor", "a craft fair",
        "a pop up shop", "the supermarket", "a catalog", "a fancy boutique", "a factory outlet",
        "a consignment store",
    ),
    "place": (
        "Chicago", "Seattle", "Denver", "Boston", "Austin", "Portland", "Miami", "Phoenix",
        "Atlanta", "Nashville", "Orlando", "Vegas", "London", "Paris", "Rome", "Hawaii",
        "Alaska", "Mexico", "Canada", "Florida", "Texas", "California", "Colorado", "Arizona",
        "Maine", "Vermont", "Oregon", "Tokyo", "Barcelona", "Dublin", "Iceland", "Italy",
        "Greece", "Cancun", "Japan", "Montana", "Utah", "Georgia", "Ohio", "Michigan",
        "Houston", "Dallas", "Detroit", "Baltimore", "Pittsburgh", "Philadelphia", "Cleveland",
        "Memphis", "Richmond", "Sacramento", "Albuquerque", "Tucson", "Omaha", "Minneapolis",
        "Milwaukee", "Charlotte", "Raleigh", "Savannah", "Honolulu", "Anchorage", "Toronto",
        "Vancouver", "Montreal", "Berlin", "Madrid", "Lisbon", "Amsterdam", "Vienna", "Prague",
        "Sydney", "Melbourne", "Singapore", "Seoul", "Manila", "Bangkok", "Mumbai", "Cairo",
        "Kentucky", "Tennessee", "Nebraska", "Iowa", "Idaho", "Wisconsin", "Virginia",
    ),
    "role": (
        "nurse", "teacher", "student", "retiree", "busy mom", "college student", "new dad",
        "grad student", "engineer", "lawyer", "chef", "artist", "photographer", "musician",
        "veteran", "firefighter", "truck driver", "accountant", "designer", "writer", "pastor",
        "dentist", "pharmacist", "librarian", "carpenter", "mechanic", "waitress", "bartender",
        "barista", "programmer", "scientist", "farmer", "plumber", "electrician", "realtor",
        "paramedic", "cashier", "professor", "veterinarian", "flight attendant",
    ),
    "pet": ("dog", "cat", "puppy", "kitten", "parrot", "hamster", "rabbit", "toddler", "baby",
            "labrador", "beagle", "terrier", "ferret"),
    "season": ("winter", "summer", "spring", "fall", "autumn", "holiday season",
               "rainy season", "back to school season"),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "month": ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"),
    "feeling": ("thrilled", "delighted", "pleased", "happy", "satisfied", "ecstatic", "content",
                "grateful", "relieved", "tickled", "overjoyed", "impressed", "giddy"),
    "bad_feeling": ("annoyed", "upset", "frustrated", "bummed", "underwhelmed", "irritated",
                    "baffled", "livid", "heartbroken", "puzzled", "let down"),
    "lead": ("Overall", "Honestly", "To be fair", "In short", "All in all", "Frankly",
             "Bottom line", "Long story short", "Basically", "Truthfully", "For what it is worth",
             "Admittedly", "Needless to say", "In my opinion", "Personally"),
    "dur": (
        "a month", "a week", "two weeks", "three months", "six months", "a year", "two years",
        "a few days", "several weeks", "a couple of months", "one season", "the whole winter",
        "the whole summer", "a few wears", "eight months", "nine days",
    ),
    "num": ("two", "three", "four", "five", "six", "seven", "ten", "a dozen", "several",
            "a few", "a couple of", "twenty"),
    "ship": (
        "on time", "early", "a day early", "two days early", "a day late", "within a week",
        "the next day", "in three days", "before the weekend", "right on schedule",
        "ahead of schedule", "quickly", "promptly", "faster than expected",
        "later than promised", "overnight",
    ),
    "ship_adj": ("fast", "quick", "speedy", "prompt", "slow", "reasonable", "free", "painless",
                 "lightning fast", "sluggish"),
    "box": ("sturdy", "padded", "dented", "crushed", "simple", "nice", "cardboard", "gift",
            "recycled", "branded"),
    "pack_adj": ("neat", "minimal", "excessive", "eco friendly", "secure", "elegant", "flimsy",
                 "damaged", "adequate", "wasteful", "careful"),
    "fit": ("perfectly", "well", "nicely", "comfortably", "just right", "like a glove",
            "as expected", "great", "okay", "poorly", "strangely", "oddly"),
    "comp": ("far better", "a step up", "about the same", "slightly worse", "a real improvement",
             "not as good", "way nicer", "a downgrade", "miles ahead", "comparable"),
    "price": ("under twenty dollars", "half price", "a steal", "a bargain", "ten bucks",
              "a great deal", "almost nothing", "a fraction of the retail price"),
    "svc": ("helpful", "friendly", "responsive", "rude", "slow", "fantastic", "quick to reply",
            "courteous", "patient", "dismissive"),
    "ordinal": ("second", "third", "fourth", "fifth", "sixth", "tenth"),
}

# (noun, subject pronoun, object pronoun) for gifting sentences.
PEOPLE: tuple[tuple[str, str, str], ...] = tuple(
    (n, "she" if g == "f" else "he", "her" if g == "f" else "him")
    for n, g in (
        ("wife", "f"), ("husband", "m"), ("mom", "f"), ("dad", "m"), ("daughter", "f"),
        ("son", "m"), ("sister", "f"), ("brother", "m"), ("girlfriend", "f"),
        ("boyfriend", "m"), ("mother", "f"), ("father", "m"), ("grandmother", "f"),
        ("grandfather", "m"), ("grandma", "f"), ("grandpa", "m"), ("aunt", "f"), ("uncle", "m"),
        ("niece", "f"), ("nephew", "m"), ("granddaughter", "f"), ("grandson", "m"),
        ("best friend", "f"), ("coworker", "m"), ("boss", "f"), ("neighbor", "m"),
        ("roommate", "f"), ("teacher", "f"), ("fiance", "m"), ("fiancee", "f"),
        ("stepdaughter", "f"), ("stepson", "m"), ("cousin", "m"), ("mother in law", "f"),
        ("father in law", "m"), ("sister in law", "f"), ("godson", "m"), ("goddaughter", "f"),
        ("mentor", "m"), ("babysitter", "f"),
    )
)  # fmt: skip

# Sentence templates by topic and polarity ("pos", "neu", "neg"); {field} from BANKS,
# VALUE_WORDS (the item's own value) or PEOPLE ({who}, {she}, {her}).
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "opening": {
        "pos": (
            "{intens} {pos} {noun}.", "I {love} this {noun}.", "Exactly what I was looking for.",
            "Very happy with this purchase.", "This {noun} is {intens} {pos}.",
            "Absolutely love it!", "Exceeded my expectations.", "So glad I bought this.",
            "Could not be happier.", "This is a {pos} {noun}.", "What a {pos} {noun}!",
            "I am impressed.", "Better than I hoped.",
        ),
        "neu": (
            "It is {neu}.", "{neu} for the price.", "Not bad, not great.", "It does the job.",
            "Mixed feelings about this one.", "Pretty much as described.",
            "It is {neu}, nothing special.", "Some things I like, some I do not.",
        ),
        "neg": (
            "{intens} {neg} {noun}.", "Very disappointed.", "Not what I expected.",
            "This {noun} is {neg}.", "I regret buying this.", "Would not buy again.",
            "Save your money.", "What a {neg} {noun}.", "Sadly this was a miss.",
        ),
    },
    "colour": {
        "pos": (
            "The {colour} is {intens} {col_adj}.", "I love the {colour} color.",
            "The {colour} shade is exactly as pictured.", "Color is a {col_adj} {colour}.",
            "The {colour} goes with everything.", "Got so many compliments on the {colour}.",
            "The {colour} is even nicer in person.", "Such a {col_adj} {colour}.",
            "I went with the {colour} and do not regret it.",
        ),
        "neg": (
            "The {colour} looks washed out in person.",
            "The {colour} is duller than in the photos.",
            "The {colour} faded after a few washes.", "Not a fan of this {colour} shade.",
        ),
    },
    "size": {
        "pos": (
            "It is {intens} {size}.", "Definitely {size}, so keep that in mind.",
            "I was surprised how {size} it is.", "It is {size}, as described.",
            "Quite {size} compared to what I expected.", "It turned out {size}, which suits me.",
            "Fairly {size} overall.", "Be aware that it is {size}.",
            "A {size} {noun}, just like the description says.", "It looks {size} in person.",
            "The {size} fit is what I wanted.",
        ),
        "neg": (
            "Way too {size} for me.", "It is {size}, much more than the photos suggest.",
            "Had to return it because it is so {size}.",
        ),
    },
    "material": {
        "pos": (
            "The {material} feels {mat_adj}.", "Made of {material}, which I like.",
            "Nice quality {material}.", "The {material} is {mat_adj} and well made.",
            "Real {material} at this price is rare.", "You can tell it is good {material}.",
            "I love that it is {material}.", "The {material} has a {mat_adj} feel to it.",
        ),
        "neg": (
            "The {material} started to wear after {dur}.", "The {material} feels {neg}.",
            "Not the {material} quality I hoped for.",
        ),
    },
    "occasion": {
        "pos": (
            "Perfect for {occasion}.", "I use it mostly for {occasion}.", "Great for {occasion}.",
            "Bought this for {occasion} and it works well.", "It is my go to for {occasion}.",
            "Ideal for {occasion}.", "I wanted something for {occasion} and this is it.",
        ),
        "neg": (
            "Not really suitable for {occasion}.",
            "I wanted it for {occasion} but it did not pan out.",
        ),
    },
    "brand": {
        "pos": (
            "This is my {ordinal} {brand} purchase.", "{brand} never disappoints.",
            "I trust {brand} for quality.", "First time buying from {brand}.",
            "Typical {brand} quality.", "I am a loyal {brand} customer.",
        ),
        "neg": ("Expected better from {brand}.", "{brand} used to be better than this."),
    },
    "shipping": {
        "any": (
            "It arrived {ship}.", "Shipping was {ship_adj}.",
            "The package came {ship} and well packed.", "Delivery took {num} days.",
            "It came {ship} in a {box} box.", "The seller shipped it {ship}.",
            "Tracking was accurate and it showed up {ship}.", "Came {ship}, wrapped in tissue.",
            "The mail carrier left it on my porch.", "Packaging was {pack_adj}.",
        ),
    },
    "gift": {
        "any": (
            "I bought this as a {event} gift for my {who} and {she} loves it.",
            "Got this for my {who} for {event}.", "My {who} was thrilled with it.",
            "Gave it to my {who} and {she} uses it all the time.",
            "It made a {pos} {event} present.", "Perfect stocking stuffer.",
            "My {who} saw mine and wanted one too.",
            "Wrapped it up for my {who} and {she} was surprised.",
            "I got one for my {who} as well, {she} said thanks a million.",
            "Bought it for {her} on a whim and {she} keeps thanking me.",
        ),
    },
    "fit": {
        "any": (
            "It fits {fit}.", "Very comfortable to wear.", "Comfortable right out of the box.",
            "Took a while to break in.", "The fit is flattering.", "The sizing chart was accurate.",
            "True to size for me.", "I can wear it all day without any issues.",
            "The cut is {pos}.", "It sits {fit} and does not slip.",
        ),
    },
    "comparison": {
        "any": (
            "Much better than the one I got at {store}.",
            "Compared to my old one, this is {comp}.",
            "I have tried {num} others and this is the best.",
            "Similar quality to what you would find at {store} for twice the price.",
            "Not as nice as the one from {store}.", "Beats anything I found at {store}.",
            "My previous one lasted {dur}; hoping this lasts longer.",
        ),
    },
    "price": {
        "pos": (
            "For the price you cannot beat it.", "A bit pricey but worth every penny.",
            "Great value for money.", "I got it on sale for {price}.", "Worth the money.",
            "Would pay more for this quality.", "Cheaper than in stores.",
        ),
        "neg": ("Overpriced for what you get.", "You get what you pay for.",
                "Not worth the money."),
    },
    "care": {
        "pos": (
            "Washed it {num} times and it still looks new.", "Easy to clean.",
            "Held up well after {dur} of use.", "Still going strong after {dur}.",
            "No pilling or fading so far.", "Survived the dryer with no problems.",
        ),
        "neg": (
            "Hand wash only, which is a pain.", "Fell apart after {dur}.",
            "The stitching came loose after {dur}.", "It wrinkles easily.",
            "Shows wear after {dur}.",
        ),
    },
    "service": {
        "any": (
            "Customer service was {svc} when I had a question.",
            "The seller replaced it without any hassle.", "Returns were easy.",
            "Had to return the first one because it was damaged.",
            "The seller sent a thank you note.",
        ),
    },
    "craft": {
        "pos": ("The {part} is {craft_adj}.", "Great attention to detail in the {part}.",
                "Solid {part} throughout.", "The {part} shows real care."),
        "neg": ("The {part} is {neg}.", "Loose threads and {neg} {part}.",
                "Quality control clearly missed the {part}."),
    },
    "looks": {
        "pos": (
            "Looks just like the picture.", "The photos do not do it justice.",
            "Looks {pos} in person.", "It looks more expensive than it is.",
            "I get compliments every time I wear it.", "Strangers have stopped me to ask about it.",
            "It photographs well.", "The details are {pos}.",
        ),
        "neg": (
            "It looks nothing like the photos.", "Looks {neg} in person.",
            "The pictures are {intens} misleading.", "It looks like a knockoff.",
        ),
    },
    "persona": {
        "pos": (
            "As a {role}, I need things that hold up, and this does.",
            "I am a {role} and this fits my routine.", "Being a {role}, I am picky, and I am {feeling}.",
            "My fellow {role} friends all want one.", "Even my {pet} approves.",
            "Bought it in {month} and have used it every week since.",
            "Ordered on a {weekday} and it was here by {weekday}.",
            "I was {feeling} when I opened the package.", "It got me through the whole {season}.",
        ),
        "neg": (
            "As a {role}, I expected it to hold up better.", "I was {bad_feeling} when I opened it.",
            "My {pet} chewed through it in a day, though to be fair that is on me.",
            "Bought it in {month} and it was done by {season}.",
            "Ordered on a {weekday} and it did not show up until the next {weekday}.",
        ),
    },
    "story": {
        "any": (
            "I first saw one like it in a shop in {place}.", "My {who} lives in {place}.",
            "Bought it right before moving to {place}.",
            "I had been looking for something like this for {dur}.",
            "Saw it on a friend and had to have one.",
            "I read the reviews before buying and they were right.", "I ordered it on a whim.",
            "This replaced one I lost.", "It was recommended by my {who}.",
            "I own {num} of these now.", "My {who} from {place} asked where I got it.",
        ),
    },
    "closing": {
        "pos": (
            "Would definitely buy again.", "Highly recommend.", "I will be ordering another one.",
            "Recommend to anyone looking for a {pos} {noun}.", "Thumbs up.",
            "Buy it, you will not regret it.", "Five stars from me.", "I {rec_adv} recommend it.",
        ),
        "neu": ("Might buy again if it goes on sale.", "It will do for now.",
                "Three stars, it is {neu}."),
        "neg": ("I would not recommend it.", "Returning it.", "Look elsewhere.",
                "Sending it back.", "One star."),
    },
    "summary": {
        "pos": (
            "Love it", "{pos} {noun}", "Perfect", "{pos}", "Five stars", "Highly recommend",
            "{intens} {pos}", "Just what I wanted", "Beautiful", "Worth it", "Great gift",
            "Nice {colour}", "{size} and {pos}", "Lovely {material}", "Great for {occasion}",
        ),
        "neu": ("OK", "Decent", "Not bad", "Meh", "Could be better", "As expected",
                "{neu}", "A bit {size}"),
        "neg": ("Disappointed", "Returned it", "{neg} {noun}", "Not as pictured",
                "Save your money", "Poor quality", "Too {size}"),
    },
}

# How often each factor is mentioned in a review body (one sentence when it is).
MENTION_P = {"colour": 0.30, "size": 0.70, "material": 0.45, "occasion": 0.35, "brand": 0.15}
_COLOUR_NOISE = 0.05  # a colour mention names another colour (perception, ordering mix-ups)
_FILLER_TOPICS = ("shipping", "gift", "fit", "comparison", "price", "care", "craft", "looks",
                  "service", "story", "persona")  # fmt: skip
_FILLER_WEIGHTS = (0.18, 0.11, 0.13, 0.08, 0.11, 0.08, 0.07, 0.08, 0.04, 0.07, 0.05)
_LEAD_P = 0.08  # a sentence opens with "Honestly, ..." etc.

_FIRST = (
    "Mary", "James", "Linda", "John", "Susan", "Robert", "Karen", "Michael", "Lisa", "David",
    "Nancy", "William", "Sandra", "Richard", "Donna", "Joseph", "Carol", "Thomas", "Sharon",
    "Chris", "Emily", "Daniel", "Jessica", "Matthew", "Ashley", "Anthony", "Amanda", "Mark",
    "Megan", "Steven", "Rachel", "Kevin", "Laura", "Brian", "Nicole", "Jason", "Heather",
    "Jeff", "Amy", "Ryan", "Kim", "Gary", "Angela", "Eric", "Melissa", "Scott", "Julie",
    "Jose", "Maria", "Wei", "Priya", "Ahmed", "Yuki", "Olga", "Ines", "Tomas", "Aisha",
)  # fmt: skip
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Garcia", "Wilson",
    "Anderson", "Taylor", "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Lopez",
    "Lee", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "King", "Wright", "Scott",
    "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Roberts", "Carter",
    "Phillips", "Evans", "Turner", "Chen", "Patel", "Nguyen", "Kowalski", "Rossi", "Novak",
)  # fmt: skip


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


class ReviewWriter:
    """Writes a review (summary, text) for one behaviour from the item's text factors."""

    def __init__(self) -> None:
        self.banks = {k: _Bank(v) for k, v in BANKS.items()}
        self.people = _Bank(PEOPLE, s=0.6)
        self.values = {f: [_Bank(syn, s=0.9) for syn in vals] for f, vals in VALUE_WORDS.items()}
        self.templates = {
            topic: {pol: _Bank([_split_template(t) for t in ts], s=0.5) for pol, ts in d.items()}
            for topic, d in TEMPLATES.items()
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
        for f, p in MENTION_P.items():
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


def filler_vocabulary() -> set[str]:
    """Words of the templates and filler banks (everything but the factor synonyms)."""
    words: set[str] = set()
    for d in TEMPLATES.values():
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


def vocabulary() -> set[str]:
    """Every word a review can contain (lower-case tokens ``[a-z]+``)."""
    words = filler_vocabulary()
    for vals in VALUE_WORDS.values():
        for syns in vals:
            for s in syns:
                words.update(_tokens(s))
    return words


# --------------------------------------------------------------------------- items


@dataclass
class _Items:
    values: dict[str, np.ndarray]  # factor -> int64 [I]
    asins: list[str]
    titles: list[str]
    prices: np.ndarray  # float [I]
    exposure: np.ndarray  # float [I]: popularity weight of being shown


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


def _make_items(n: int, seed: int) -> _Items:
    gen = rng(seed, "synthetic", "items")
    values: dict[str, np.ndarray] = {}
    for f in FACTORS:
        if f.name == "quality":
            continue
        values[f.name] = _draw_values(gen, n, f.weights)
    tier = values["brand"] * 3 // len(BRANDS)  # 0 premium, 1 mid, 2 budget
    u = gen.random(n)
    cum = np.cumsum(np.asarray(_QUALITY_BY_TIER), axis=1)[tier]  # (I, 3)
    values["quality"] = (u[:, None] > cum).sum(1).clip(0, 2).astype(np.int64)
    values = {f.name: values[f.name] for f in FACTORS}  # factor order
    asins = _random_ids(gen, n, "B0", 8)
    lines = gen.integers(0, len(_LINES), n)
    models = gen.integers(100, 1000, n)
    titles = [
        f"{BRANDS[b]} {_LINES[ln]} {_SINGULAR[s]} {BRANDS[b][:2].upper()}-{m}"
        for b, ln, s, m in zip(values["brand"], lines, values["shape"], models)
    ]
    base = (np.asarray(_SHAPE_PRICE)[values["shape"]] * np.asarray(_MATERIAL_PRICE)[values["material"]]
            * np.asarray(_BRAND_PRICE)[tier] * np.exp(gen.normal(0.0, 0.25, n)))  # fmt: skip
    prices = np.maximum(np.ceil(base) - 0.01, 4.99).round(2)
    quality_mult = np.array([0.6, 1.0, 1.5])[values["quality"]]
    exposure = _MIN_CORE + gen.lognormal(0.0, 1.1, n) * quality_mult
    return _Items(values, asins, titles, prices, exposure)


# --------------------------------------------------------------------------- users


@dataclass
class _Users:
    ids: list[str]
    names: list[str]
    lengths: np.ndarray  # int64 [U]
    log_theta: dict[str, np.ndarray]  # factor -> float [U, K_f]: log taste
    weight: dict[str, np.ndarray]  # factor -> float [U]: how much the factor matters
    leniency: np.ndarray  # float [U]: rating offset
    verbosity: np.ndarray  # float [U]: review length multiplier


def _integer_split(weights: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Non-negative integers proportional to ``weights``, each <= cap, summing to ``total``."""
    if total > cap * len(weights):
        raise ValueError(f"cannot split {total} into {len(weights)} parts of at most {cap}")
    out = np.zeros(len(weights), np.int64)
    free = np.ones(len(weights), bool)
    remaining = total
    while remaining > 0:
        w = np.where(free, weights, 0.0)
        share = w / w.sum() * remaining
        part = np.floor(share).astype(np.int64)
        short = remaining - part.sum()
        order = np.argsort(-(share - part), kind="stable")[:short]
        part[order] += 1
        part = np.minimum(part, cap - out)
        out += part
        remaining -= int(part.sum())
        free = out < cap
    return out


def _make_users(cfg: ShopSize, items: _Items, seed: int) -> _Users:
    gen = rng(seed, "synthetic", "users")
    n = cfg.n_users
    extra_total = cfg.n_behaviors - _MIN_CORE * n
    cap = min(cfg.max_history, cfg.n_items // 3) - _MIN_CORE
    extras = _integer_split(gen.lognormal(0.0, 1.0, n), extra_total, cap)
    log_theta, weight = {}, {}
    for name, conc in _PREF_CONCENTRATION.items():
        k = len(FACTOR_BY_NAME[name].values)
        base = np.bincount(items.values[name], minlength=k) + 1.0
        alpha = conc * k * base / base.sum()
        g = gen.gamma(np.broadcast_to(alpha, (n, k)))
        theta = g / g.sum(1, keepdims=True)
        theta = (theta + 0.01) / (1.0 + 0.01 * k)  # nobody rules a value out completely
        log_theta[name] = np.log(theta)
        weight[name] = _PREF_WEIGHT[name] * gen.gamma(3.0, 1.0 / 3.0, n)
    ids = _random_ids(gen, n, "A", 13)
    first = gen.integers(0, len(_FIRST), n)
    last = gen.integers(0, len(_LAST), n)
    style = gen.random(n)
    names = [
        "Amazon Customer" if s < 0.05 else (f"{_FIRST[a]} {_LAST[b][0]}." if s < 0.35
                                            else f"{_FIRST[a]} {_LAST[b]}")
        for a, b, s in zip(first, last, style)
    ]  # fmt: skip
    return _Users(
        ids=ids,
        names=names,
        lengths=_MIN_CORE + extras,
        log_theta=log_theta,
        weight=weight,
        leniency=gen.normal(0.0, 0.45, n),
        verbosity=gen.lognormal(0.0, 0.5, n),
    )


# --------------------------------------------------------------------------- choices


def _transition_matrix() -> np.ndarray:
    """Shape -> next shopping intent: 35 % same type, 45 % complements, 20 % anything."""
    shapes = FACTOR_BY_NAME["shape"].values
    k = len(shapes)
    t = np.full((k, k), 0.20 / k)
    for i, s in enumerate(shapes):
        t[i, i] += 0.35
        for c in _COMPLEMENTS[s]:
            t[i, shapes.index(c)] += 0.45 / len(_COMPLEMENTS[s])
    return t / t.sum(1, keepdims=True)


def _categorical_rows(gen: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """One draw per row of a (N, K) probability matrix."""
    cum = np.cumsum(p, axis=1)
    u = gen.random(len(p))[:, None] * cum[:, -1:]
    return (u > cum).sum(1).clip(0, p.shape[1] - 1)


@dataclass
class _Sampler:
    """Popularity-weighted candidate draws, overall and within one product type."""

    cum_all: np.ndarray
    order: np.ndarray  # items sorted by shape
    cum_sorted: np.ndarray
    lo: np.ndarray  # [K_shape] cumulative mass before each shape
    hi: np.ndarray

    @classmethod
    def build(cls, exposure: np.ndarray, shape: np.ndarray, k: int) -> _Sampler:
        order = np.argsort(shape, kind="stable")
        cum_sorted = np.cumsum(exposure[order])
        edges = np.concatenate([[0.0], cum_sorted])
        ss = shape[order]
        lo = edges[np.searchsorted(ss, np.arange(k), "left")]
        hi = edges[np.searchsorted(ss, np.arange(k), "right")]
        return cls(np.cumsum(exposure), order, cum_sorted, lo, hi)

    def popular(self, gen: np.random.Generator, n: int, c: int) -> np.ndarray:
        u = gen.random((n, c)) * self.cum_all[-1]
        return np.searchsorted(self.cum_all, u, "right").clip(0, len(self.cum_all) - 1)

    def of_shape(self, gen: np.random.Generator, shape: np.ndarray, c: int) -> np.ndarray:
        lo, hi = self.lo[shape][:, None], self.hi[shape][:, None]
        u = lo + gen.random((len(shape), c)) * (hi - lo)
        idx = np.searchsorted(self.cum_sorted, u, "right").clip(0, len(self.order) - 1)
        return self.order[idx]


def _simulate(items: _Items, users: _Users, seed: int, progress: bool) -> tuple[np.ndarray, ...]:
    """Histories (U, Lmax) of item ids (-1 past each length) and the taste z-score of each pick."""
    from tqdm import tqdm

    gen = rng(seed, "synthetic", "choices")
    v = items.values
    n_users, lmax = len(users.lengths), int(users.lengths.max())
    k_shape = len(FACTOR_BY_NAME["shape"].values)
    sampler = _Sampler.build(items.exposure, v["shape"], k_shape)
    trans = _transition_matrix()
    theta_shape = np.exp(users.log_theta["shape"])
    quality_bonus = _QUALITY_BONUS * (v["quality"] - 1.0)
    seq = np.full((n_users, lmax), -1, np.int64)
    match = np.zeros((n_users, lmax))
    for t in tqdm(range(lmax), desc="synth: choices", disable=not progress, leave=False):
        a = np.flatnonzero(users.lengths > t)  # active users
        if t == 0:
            intent = _categorical_rows(gen, theta_shape[a])
        else:
            p = _INTENT_FOLLOW * trans[v["shape"][seq[a, t - 1]]] + (1 - _INTENT_FOLLOW) * theta_shape[a]
            intent = _categorical_rows(gen, p)
        cand = np.concatenate([sampler.popular(gen, len(a), _N_POP),
                               sampler.of_shape(gen, intent, _N_INTENT)], axis=1)  # (A, C)
        taste = np.zeros(cand.shape)
        for f, lt in users.log_theta.items():
            taste += users.weight[f][a, None] * lt[a[:, None], v[f][cand]]
        score = taste + _INTENT_BONUS * (v["shape"][cand] == intent[:, None]) + quality_bonus[cand]
        for k, decay in enumerate(_STYLE_DECAY, 1):
            if t - k < 0:
                break
            prev = seq[a, t - k]
            for f, lam in _STYLE_WEIGHT.items():
                score += decay * lam * (v[f][cand] == v[f][prev][:, None])
        if t > 0:
            seen = (cand[:, :, None] == seq[a, None, :t]).any(-1)
            score[seen] = -np.inf
        pick = np.argmax(score + gen.gumbel(size=score.shape), axis=1)
        rows = np.arange(len(a))
        ok = np.isfinite(score[rows, pick])
        seq[a, t] = np.where(ok, cand[rows, pick], -1)
        mu, sd = taste.mean(1), taste.std(1) + 1e-9
        match[a, t] = (taste[rows, pick] - mu) / sd
    return seq, match


def _fill_and_repair(seq: np.ndarray, lengths: np.ndarray, items: _Items,
                     seed: int) -> tuple[np.ndarray, int]:  # fmt: skip
    """Fill rare empty picks, then top every item up to five buyers. Returns (seq, repairs)."""
    gen = rng(seed, "synthetic", "repair")
    n_items = len(items.asins)
    owned = [set(row[:n][row[:n] >= 0].tolist()) for row, n in zip(seq, lengths)]
    empty = (seq == -1) & (np.arange(seq.shape[1])[None, :] < lengths[:, None])
    for u, t in zip(*np.nonzero(empty)):
        for i in gen.permutation(n_items):
            if int(i) not in owned[u]:
                seq[u, t] = i
                owned[u].add(int(i))
                break
    count = np.bincount(seq[seq >= 0], minlength=n_items)
    shape = items.values["shape"]
    users_idx, steps = np.nonzero(seq >= 0)
    by_shape = {s: gen.permutation(np.flatnonzero(shape[seq[users_idx, steps]] == s))
                for s in range(int(shape.max()) + 1)}  # fmt: skip
    pointer = dict.fromkeys(by_shape, 0)
    repairs = 0
    for i in np.flatnonzero(count < _MIN_CORE):
        s = int(shape[i])
        for pool in (s, None):  # same product type first, then anything
            if count[i] >= _MIN_CORE:
                break
            cands = by_shape[s][pointer[s]:] if pool is not None else gen.permutation(len(steps))
            for j, b in enumerate(cands):
                u, t = users_idx[b], steps[b]
                old = seq[u, t]
                if count[old] > _MIN_CORE and int(i) not in owned[u]:
                    seq[u, t] = i
                    owned[u].discard(int(old))
                    owned[u].add(int(i))
                    count[old] -= 1
                    count[i] += 1
                    repairs += 1
                    if count[i] >= _MIN_CORE:
                        if pool is not None:
                            pointer[s] += j + 1
                        break
    return seq, repairs


def check_5core(user: np.ndarray, item: np.ndarray, k: int = _MIN_CORE) -> None:
    """Raise when some user or item has fewer than ``k`` behaviours or a pair repeats."""
    pairs = user.astype(np.int64) * (int(item.max()) + 1) + item
    if len(np.unique(pairs)) != len(pairs):
        raise RuntimeError("synthetic shop: a user bought the same item twice")
    for name, ids in (("user", user), ("item", item)):
        c = np.bincount(ids)
        if (c < k).any():
            raise RuntimeError(f"synthetic shop is not {k}-core: {int((c < k).sum())} {name}s")


# --------------------------------------------------------------------------- times, ratings

_DAY0 = _dt.date(2008, 1, 1)
_DAY1 = _dt.date(2014, 7, 23)  # the 2014 collection's last review day


def _review_days(lengths: np.ndarray, seed: int) -> list[np.ndarray]:
    """Per user, non-decreasing review days (days since 1970-01-01)."""
    gen = rng(seed, "synthetic", "times")
    d0 = (_DAY0 - _dt.date(1970, 1, 1)).days
    span = (_DAY1 - _DAY0).days
    growth = math.log(2) / 365.0  # review volume doubles every year
    u = gen.random(len(lengths))
    start = np.log1p(u * np.expm1(growth * span)) / growth  # exponential-growth inverse CDF
    out = []
    for n, s in zip(lengths, start):
        gaps = np.ceil(gen.lognormal(math.log(25.0), 1.2, n - 1))
        gaps[gen.random(n - 1) < 0.15] = 0.0
        total = gaps.sum()
        if total > span:
            gaps = np.floor(gaps * span / total)
            total = gaps.sum()
        s = min(s, span - total)
        out.append((d0 + np.floor(s) + np.concatenate([[0.0], np.cumsum(gaps)])).astype(np.int64))
    return out


def _ratings(quality: np.ndarray, match: np.ndarray, leniency: np.ndarray,
             seed: int) -> np.ndarray:  # fmt: skip
    """Stars 1-5: quality, taste match and leniency plus noise, cut at fixed thresholds."""
    gen = rng(seed, "synthetic", "ratings")
    latent = (4.0 + 0.45 * (quality - 1.0) + 0.35 * match + leniency
              + gen.normal(0.0, 0.8, len(quality)))  # fmt: skip
    return (1 + np.searchsorted(np.array([3.1, 3.55, 4.0, 4.55]), latent)).astype(np.int64)


# --------------------------------------------------------------------------- images

# Silhouettes in unit coordinates (x right, y down, item centred at 0, extent ~[-0.5, 0.5]).
# Each is a list of primitives: ("poly", points), ("ellipse", box), ("ring", box, width).
_SILHOUETTES: dict[str, list[tuple]] = {
    "T-Shirts": [("poly", [(-0.18, -0.45), (-0.07, -0.45), (0.0, -0.38), (0.07, -0.45),
                           (0.18, -0.45), (0.46, -0.24), (0.36, -0.08), (0.25, -0.16),
                           (0.25, 0.45), (-0.25, 0.45), (-0.25, -0.16), (-0.36, -0.08),
                           (-0.46, -0.24)])],
    "Dresses": [("poly", [(-0.12, -0.47), (-0.06, -0.47), (0.0, -0.4), (0.06, -0.47),
                          (0.12, -0.47), (0.16, -0.22), (0.13, -0.05), (0.42, 0.47),
                          (-0.42, 0.47), (-0.13, -0.05), (-0.16, -0.22)])],
    "Trousers": [("poly", [(-0.26, -0.47), (0.26, -0.47), (0.32, 0.47), (0.07, 0.47),
                           (0.0, 0.15), (-0.07, 0.47), (-0.32, 0.47)])],
    "Shoes": [("poly", [(-0.46, 0.3), (-0.46, -0.15), (-0.4, -0.3), (-0.12, -0.3), (0.0, -0.15),
                        (0.3, 0.0), (0.46, 0.12), (0.46, 0.3)])],
    "Handbags": [("ring", (-0.22, -0.45, 0.22, 0.05), 0.06),
                 ("poly", [(-0.38, -0.15), (0.38, -0.15), (0.46, 0.42), (-0.46, 0.42)])],
    "Hats": [("ellipse", (-0.48, 0.08, 0.48, 0.3)),
             ("poly", [(-0.26, 0.2), (-0.24, -0.22), (-0.12, -0.32), (0.12, -0.32),
                       (0.24, -0.22), (0.26, 0.2)])],
    "Watches": [("poly", [(-0.12, -0.5), (0.12, -0.5), (0.12, 0.5), (-0.12, 0.5)]),
                ("ellipse", (-0.26, -0.26, 0.26, 0.26))],
    "Mugs": [("ring", (0.05, -0.2, 0.45, 0.22), 0.07),
             ("poly", [(-0.34, -0.36), (0.2, -0.36), (0.2, 0.4), (-0.34, 0.4)])],
}  # fmt: skip
_GRID = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)  # (2, H, W): y, x
_IGRID = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.int32)  # (2, H, W)
_SHADE = 1.0 - 0.06 * (_GRID[0] + _GRID[1]) / (2 * IMAGE_SIZE)  # (H, W)
# A fixed noise field; each image takes a window at its own offset (cheaper than fresh noise).
_NOISE = np.random.default_rng(20210705).normal(0.0, 2.0, (3, 2 * IMAGE_SIZE, 2 * IMAGE_SIZE))
_NOISE = _NOISE.astype(np.float32)


def _image_params(items: _Items, seed: int) -> dict[str, np.ndarray]:
    """Per-item drawing parameters: factor values plus nuisance jitter (all arrays [I, ...])."""
    gen = rng(seed, "synthetic", "images")
    v = items.values
    n = len(items.asins)
    colours = np.array(list(COLOUR_RGB.values()), float)
    fill = np.clip(colours[v["colour"]] + gen.uniform(-10, 10, (n, 3)), 0, 255)
    scale = np.array(list(SIZE_SCALE.values()))[v["size"]] * gen.uniform(0.95, 1.05, n)
    s_px = scale * IMAGE_SIZE
    margin = np.maximum(0.0, (IMAGE_SIZE - s_px) / 2 - 2)
    direction = np.array(list(POSITION_DIR.values()))[v["position"]]  # (I, 2)
    offset = direction * (margin * gen.uniform(0.5, 1.0, n))[:, None] + gen.uniform(-2, 2, (n, 2))
    bgs = np.array(list(BACKGROUND_RGB.values()), float)
    bg = np.clip(bgs[v["background"]] + gen.uniform(-4, 4, (n, 1)), 0, 255)
    return {
        "shape": v["shape"], "pattern": v["pattern"], "fill": fill, "size_px": s_px,
        "centre": IMAGE_SIZE / 2 + offset, "background": bg,
        "period": gen.integers(8, 14, n), "phase": gen.integers(0, 14, (n, 2)),
        "noise_offset": gen.integers(0, IMAGE_SIZE, (n, 2)),
    }  # fmt: skip


def _silhouette_mask(shape: str, cx: float, cy: float, s: float) -> np.ndarray:
    """Boolean (H, W) mask of a product silhouette of size ``s`` pixels centred at (cx, cy)."""
    img = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    draw = ImageDraw.Draw(img)

    def px(x: float, y: float) -> tuple[float, float]:
        return cx + x * s, cy + y * s

    for prim in _SILHOUETTES[shape]:
        if prim[0] == "poly":
            draw.polygon([px(x, y) for x, y in prim[1]], fill=255)
        elif prim[0] == "ellipse":
            x0, y0, x1, y1 = prim[1]
            draw.ellipse((*px(x0, y0), *px(x1, y1)), fill=255)
        else:  # ring: an ellipse outline of relative width
            x0, y0, x1, y1 = prim[1]
            draw.ellipse((*px(x0, y0), *px(x1, y1)), outline=255, width=max(2, round(prim[2] * s)))
    return np.asarray(img) > 127


def _pattern_mask(pattern: str, period: int, phase: np.ndarray) -> np.ndarray:
    """Boolean (H, W) motif of a pattern (integer pixel arithmetic: fast and exact)."""
    y, x = _IGRID[0] + int(phase[0]), _IGRID[1] + int(phase[1])
    if pattern == "stripes":
        return (y % period) * 20 < period * 9
    if pattern == "dots":
        dy, dx = 2 * (y % period) - period, 2 * (x % period) - period
        return (dy * dy + dx * dx) * 100 < (56 * period) ** 2 // 100
    if pattern == "checks":
        h = max(2, round(period * 0.6))
        return ((x // h + y // h) % 2) == 0
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)


def render_image(params: dict[str, np.ndarray], i: int) -> np.ndarray:
    """Draw item ``i``: uint8 (128, 128, 3). Only visual factors and nuisance enter here."""
    shape = FACTOR_BY_NAME["shape"].values[int(params["shape"][i])]
    pattern = FACTOR_BY_NAME["pattern"].values[int(params["pattern"][i])]
    cx, cy = params["centre"][i]
    mask = _silhouette_mask(shape, float(cx), float(cy), float(params["size_px"][i]))  # (H, W)
    fill = params["fill"][i].astype(np.float32)  # (3,)
    lum = float(fill @ np.array([0.299, 0.587, 0.114], np.float32))
    contrast = 0.5 * fill + 0.5 * (255.0 if lum < 140 else 0.0)  # a lighter/darker motif
    motif = _pattern_mask(pattern, int(params["period"][i]), params["phase"][i])  # (H, W)
    inner = mask.copy()  # 1-pixel erosion: the outline gets a darker edge
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    light = _SHADE * (1.0 - 0.4 * (mask & ~inner).astype(np.float32))  # (H, W): top-left light
    on, motif_f = mask.astype(np.float32), motif.astype(np.float32)
    bg = params["background"][i]
    oy, ox = params["noise_offset"][i]
    noise = _NOISE[:, oy : oy + IMAGE_SIZE, ox : ox + IMAGE_SIZE]  # (3, H, W) sensor noise
    # channel by channel: numpy is slow on a trailing axis of length 3
    chans = [
        bg[c] + on * ((fill[c] + motif_f * (contrast[c] - fill[c])) * light - bg[c]) + noise[c]
        for c in range(3)
    ]  # 3 x (H, W)
    img = np.stack(chans, axis=-1)  # (H, W, 3)
    np.clip(img + 0.5, 0, 255, out=img)
    return img.astype(np.uint8)


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, optimize=False)
    return buf.getvalue()


def _render_range(params: dict[str, np.ndarray], asins: list[str], lo: int, hi: int,
                  folder: str) -> int:  # fmt: skip
    """Write images lo..hi-1 into ``folder`` (runs in a worker process too)."""
    for i in range(lo, hi):
        (Path(folder) / image_filename(asins[i])).write_bytes(_jpeg(render_image(params, i)))
    return hi - lo


def _run_tasks(tasks: list[tuple[Any, tuple]], workers: int, progress: bool) -> list[Any]:
    """Run ``fn(*args)`` for each task, in ``workers`` spawned processes when > 1; results in order."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="synth: reviews+images", disable=not progress,
               leave=False, unit="chunk")  # fmt: skip
    results: list[Any] = []
    if workers <= 1:
        for fn, args in tasks:
            results.append(fn(*args))
            bar.update()
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            futures = [ex.submit(fn, *args) for fn, args in tasks]
            for fut in futures:
                results.append(fut.result())
                bar.update()
    bar.close()
    return results


# --------------------------------------------------------------------------- writing


def _write_gzip_lines(path: Path, lines: Iterator[str]) -> None:
    """Gzip text with mtime 0 and a fixed inner name: same lines, same bytes."""
    inner = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    with path.open("wb") as raw, gzip.GzipFile(inner, "wb", 6, raw, mtime=0) as gz:
        buf: list[str] = []
        for line in lines:
            buf.append(line)
            if len(buf) >= 4096:
                gz.write(("\n".join(buf) + "\n").encode("utf-8"))
                buf = []
        if buf:
            gz.write(("\n".join(buf) + "\n").encode("utf-8"))


def _review_time(day: int) -> str:
    d = _dt.date(1970, 1, 1) + _dt.timedelta(days=int(day))
    return f"{d.month:02d} {d.day:02d}, {d.year:04d}"


def _factors_doc(size: str, seed: int, items: _Items) -> dict[str, Any]:
    order = sorted(range(len(items.asins)), key=items.asins.__getitem__)
    return {
        "name": f"synthetic-{size}",
        "seed": seed,
        "factors": {f.name: {"kind": f.kind, "modalities": f.shown_in(), "values": list(f.values)}
                    for f in FACTORS},
        "items": {items.asins[i]: {f.name: int(items.values[f.name][i]) for f in FACTORS}
                  for i in order},
    }


def _factors_json(doc: dict[str, Any]) -> str:
    """Readable and compact: the header indented, then one line per item."""
    head = json.dumps({k: v for k, v in doc.items() if k != "items"}, indent=1)
    rows = ",\n".join(f"  {json.dumps(a)}: {json.dumps(v)}" for a, v in doc["items"].items())
    return head[:-2] + ',\n "items": {\n' + rows + "\n }\n}\n"


def _meta_lines(items: _Items) -> Iterator[str]:
    for i in sorted(range(len(items.asins)), key=items.asins.__getitem__):
        asin = items.asins[i]
        yield repr({
            "asin": asin,
            "imUrl": f"http://synthetic.invalid/images/{image_filename(asin)}",
            "title": items.titles[i],
            "categories": [[CATEGORY, FACTOR_BY_NAME["shape"].values[items.values["shape"][i]]]],
            "brand": BRANDS[items.values["brand"][i]],
            "price": float(items.prices[i]),
        })  # fmt: skip


def _default_workers(n_items: int) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, 8)) if n_items >= 1000 else 1


_TEXT_FACTORS = ("colour", "size", "material", "occasion", "brand")
_TEXT_CHUNK = 20_000  # behaviours per review task (fixed: output independent of workers)
_IMAGE_CHUNK = 1_000  # items per image task


def _review_chunk(seed: int, chunk: int, item_text: np.ndarray, item: np.ndarray,
                  stars: np.ndarray, verbosity: np.ndarray, asin: list[str], uid: list[str],
                  name: list[str], day: np.ndarray) -> tuple[list[str], set[str]]:  # fmt: skip
    """JSON lines of one chunk of behaviours (its own text stream) and the words they use."""
    writer = ReviewWriter()
    rnd = random.Random(int(rng(seed, "synthetic", "text", chunk).integers(0, 2**63 - 1)))
    keys = _TEXT_FACTORS
    lines: list[str] = []
    words: set[str] = set()
    for b in range(len(item)):
        row = item_text[item[b]]
        summary, text = writer.write(rnd, dict(zip(keys, row.tolist())), int(stars[b]),
                                     float(verbosity[b]))  # fmt: skip
        words.update(_tokens(summary + " " + text))
        lines.append(json.dumps({
            "reviewerID": uid[b], "asin": asin[b], "reviewerName": name[b],
            "helpful": [0, 0], "reviewText": text, "overall": float(stars[b]), "summary": summary,
            "unixReviewTime": int(day[b]) * 86400, "reviewTime": _review_time(day[b]),
        }))  # fmt: skip
    return lines, words


# --------------------------------------------------------------------------- API


def generate(size: str, seed: int, out: str | Path, progress: bool = True,
             workers: int | None = None, overwrite: bool = False) -> dict[str, Any]:  # fmt: skip
    """Write the synthetic shop of ``size`` ("tiny", "small", "cloth") into ``out``.

    Returns a summary: counts, repairs, realised vocabulary and wall time per stage.
    ``workers`` processes write the reviews and draw the images (default: the CPU
    count for shops of 1,000+ items, else 1); the output does not depend on it.

    ``out`` must not exist, be empty, or (with ``overwrite``) hold a shop written by
    this function; anything else is refused before any work (:func:`mdr.io.atomic_dir`,
    output kind :data:`OUTPUT_KIND`). The shop is built in a marked temporary sibling
    from the first step, and moved into place only when complete.
    """
    if size not in SIZES:
        raise DataError(f"unknown synthetic size {size!r}; choose one of {sorted(SIZES)}")
    cfg = SIZES[size]
    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        stages[name] = round(now - since, 3)
        return now

    with atomic_dir(out, OUTPUT_KIND, overwrite) as tmp:
        items = _make_items(cfg.n_items, seed)
        users = _make_users(cfg, items, seed)
        t = lap("items_users", t0)
        seq, match = _simulate(items, users, seed, progress)
        seq, repairs = _fill_and_repair(seq, users.lengths, items, seed)
        mask = np.arange(seq.shape[1])[None, :] < users.lengths[:, None]
        b_user, b_step = np.nonzero(mask)  # behaviours, user-major, in step order
        b_item = seq[b_user, b_step]
        check_5core(b_user, b_item)
        if len(b_item) != cfg.n_behaviors or len(np.unique(b_item)) != cfg.n_items:
            raise RuntimeError("synthetic shop: counts differ from the size's targets")
        t = lap("choices", t)
        days = np.concatenate(_review_days(users.lengths, seed))
        stars = _ratings(items.values["quality"][b_item], match[b_user, b_step],
                         users.leniency[b_user], seed)  # fmt: skip
        item_text = np.stack([items.values[f] for f in _TEXT_FACTORS], axis=1)  # (I, 5)
        asin_b = [items.asins[i] for i in b_item]
        uid_b = [users.ids[u] for u in b_user]
        name_b = [users.names[u] for u in b_user]
        verb_b = users.verbosity[b_user]
        workers = workers or _default_workers(cfg.n_items)
        (tmp / "images").mkdir()
        params = _image_params(items, seed)
        spans = [(lo, lo + _TEXT_CHUNK) for lo in range(0, len(b_item), _TEXT_CHUNK)]
        tasks: list[tuple[Any, tuple]] = [
            (_review_chunk, (seed, c, item_text, b_item[lo:hi], stars[lo:hi], verb_b[lo:hi],
                             asin_b[lo:hi], uid_b[lo:hi], name_b[lo:hi], days[lo:hi]))
            for c, (lo, hi) in enumerate(spans)
        ]  # fmt: skip
        n_text = len(tasks)
        tasks += [(_render_range, (params, items.asins, lo, min(cfg.n_items, lo + _IMAGE_CHUNK),
                                   str(tmp / "images")))
                  for lo in range(0, cfg.n_items, _IMAGE_CHUNK)]  # fmt: skip
        results = _run_tasks(tasks, workers, progress)
        lines = [line for chunk_lines, _ in results[:n_text] for line in chunk_lines]
        words = set().union(*(w for _, w in results[:n_text]))
        t = lap("reviews_images", t)
        # as the real file: grouped by item, then time, then reviewer
        day_b = days.tolist()
        order = sorted(range(len(lines)), key=lambda b: (asin_b[b], day_b[b], uid_b[b]))
        _write_gzip_lines(tmp / f"reviews_{CATEGORY}_5.json.gz", (lines[b] for b in order))
        _write_gzip_lines(tmp / f"meta_{CATEGORY}.json.gz", _meta_lines(items))
        (tmp / "factors.json").write_text(_factors_json(_factors_doc(size, seed, items)),
                                          encoding="utf-8")  # fmt: skip
        t = lap("write", t)
    wall = time.perf_counter() - t0
    return {
        "name": f"synthetic-{size}",
        "size": size,
        "seed": seed,
        "out": str(Path(out)),
        "users": cfg.n_users,
        "items": cfg.n_items,
        "categories": len(np.unique(items.values["shape"])),
        "behaviors": len(b_item),
        "sparsity_percent": round(cfg.sparsity_percent, 4),
        "repairs": repairs,
        "vocabulary_words": len(words),
        "rating_histogram": {str(s): int((stars == s).sum()) for s in range(1, 6)},
        "seconds": stages,
        "workers": workers,
        "wall_time_s": round(wall, 3),
    }


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
            raise bad(f"factor {name!r}: kind {f['kind']} needs modalities "
                      f"{_MODALITIES[f['kind']]}, not {mods}")  # fmt: skip
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
