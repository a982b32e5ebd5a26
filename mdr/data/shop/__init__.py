"""The embedded synthetic shop: a seeded, byte-reproducible dataset in the Amazon 2014 layout.

``generate(size, seed, out)`` writes ``reviews_Synthetic_5.json.gz`` (strict JSON
lines), ``meta_Synthetic.json.gz`` (Python-literal lines, as the real 2014 file),
``images/<asin>.jpg`` (128x128 JPEG) and ``factors.json`` (every item's
ground-truth factor values, and per factor the modality that shows it). One
loader serves it and the real data; the ground truth is what makes quantitative
disentanglement scores possible. Synthetic results are illustrations, not
evidence about real shops.

``generate(size, seed, out, photos=DIR)`` writes the **photo shop** instead: the
same shop with each item one real product photo of the fashion corpus at ``DIR``,
its colour and shape the photo's own labels (grouped into 12 colour and 14 shape
classes), its title the photo's product name, everything else drawn as below; its
``factors.json`` lists only the factors some modality shows. Sizes ``tiny`` and
``small`` (dataset names ``photo-tiny``, ``photo-small``); :mod:`.photos` documents
every choice (the groupings, which photos become items, the kinds).

Modules
-------
===============  ==============================================================
:mod:`.factors`  sizes, the factors and their marginals, drawing the items;
                 reading ``factors.json`` back (:func:`load_factors`)
:mod:`.users`    users and tastes, the sequential choices, the 5-core repair,
                 ratings and review days
:mod:`.reviews`  the review writer and its vocabulary
:mod:`.words`    the word lists and templates, read from the package data files
                 ``words.json`` and ``templates.json`` (the tests pin their
                 sha256: editing them changes every generated shop)
:mod:`.render`   drawing the item images; :func:`.render.image_tasks` is the one
                 call :func:`generate` makes for them
:mod:`.photos`   the photo shop: its colour and shape classes (the corpus
                 groupings), prices, complements and words (package data
                 ``photos.json``, pinned too), which photos become items, and
                 the photos as images (:func:`.photos.image_tasks`, in place of
                 the drawing)
:mod:`.write`    the Amazon files, ``factors.json`` and :func:`generate`
===============  ==============================================================

What follows from a shop's factor classes (the factor table, each product type's
price, which types complement which) is one :class:`~.factors.Catalogue`:
:data:`~.factors.DRAWN` for the drawn shop, :data:`.photos.PHOTO` for the photo shop.

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

from mdr.data.shop.factors import (
    BACKGROUND_RGB,
    BRANDS,
    COLOUR_RGB,
    DRAWN,
    FACTOR_BY_NAME,
    FACTORS,
    KINDS,
    POSITION_DIR,
    SIZE_SCALE,
    SIZES,
    Catalogue,
    Factor,
    ShopSize,
    load_factors,
)
from mdr.data.shop.photos import PHOTO
from mdr.data.shop.render import IMAGE_SIZE, render_image
from mdr.data.shop.reviews import MENTION_P, ReviewWriter, filler_vocabulary, vocabulary
from mdr.data.shop.users import check_5core
from mdr.data.shop.words import BANKS, PEOPLE, TEMPLATES, VALUE_WORDS
from mdr.data.shop.write import CATEGORY, OUTPUT_KIND, generate

__all__ = [
    "BACKGROUND_RGB",
    "BANKS",
    "BRANDS",
    "CATEGORY",
    "COLOUR_RGB",
    "DRAWN",
    "FACTORS",
    "FACTOR_BY_NAME",
    "IMAGE_SIZE",
    "KINDS",
    "MENTION_P",
    "OUTPUT_KIND",
    "PEOPLE",
    "PHOTO",
    "POSITION_DIR",
    "SIZES",
    "SIZE_SCALE",
    "TEMPLATES",
    "VALUE_WORDS",
    "Catalogue",
    "Factor",
    "ReviewWriter",
    "ShopSize",
    "check_5core",
    "filler_vocabulary",
    "generate",
    "load_factors",
    "render_image",
    "vocabulary",
]
