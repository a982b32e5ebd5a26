"""``mdr data prepare``: raw Amazon-format files -> the prepared folder of :mod:`mdr.data.dataset`.

One pipeline for the 2014 and 2018 releases and the synthetic shop (2014
layout plus ``factors.json``). The steps, in order:

0. **Inputs** (:func:`mdr.data.parse.find_inputs`): the release and the category
   come from the files present in ``raw`` (``category``/``year`` choose when there
   are several; any category name is accepted); a missing metadata file is an
   error unless ``allow_missing_meta``. ``out`` is checked before any work: it
   must not exist, be empty, or (with ``overwrite``) hold an earlier prepared
   dataset (:mod:`mdr.io`'s ownership marker); it must not be or contain ``raw``.
1. **Reviews** (:func:`read_reviews`): strict JSON lines. A damaged line
   (malformed, or refused by the parser for any reason: a 5,000-digit integer,
   nesting too deep; no ids, a time that is not a finite integer >= 0) is a
   counted skip naming ``file:line`` (``strict=True`` raises instead); a damaged
   FILE (a truncated or corrupt gzip, more than half of its lines malformed) is an
   error unless ``lenient=True``. Text that cannot be written as UTF-8 (a lone
   surrogate) is repaired to U+FFFD and counted, so writing the folder never fails
   on it (:mod:`mdr.data.parse` documents the rules).
2. **k-core and repeats, one rule for every release**: (a) ``k``-core filtering
   (:func:`k_core`: users and items with fewer than ``k`` behaviours removed,
   repeatedly) runs on the review lines AS PUBLISHED, repeats included, and
   Table 1's figures (``counts.users``, ``items``, ``behaviors``,
   ``sparsity_percent``) are counted on that result: the paper counts the lines
   of the 2014 5-core files, so they come out as it prints them whatever those
   files repeat. (b) The sequences then keep ONE behaviour per (user, item) pair
   (:func:`drop_duplicates`): exact duplicates (same user, item, time and text)
   and later reviews of a pair are removed, the earliest review kept (ties by
   file line), both counted (``exact_duplicates_removed``,
   ``repeated_pairs_removed``), so a user's validation and test items differ and
   neither is in the user's history. ``counts.behaviors_distinct`` is the number
   of behaviours the splits, histories and evaluation lists use (the rows of
   ``behaviors.npz``). (c) A user left with fewer than 3 distinct items cannot
   be split and is removed with their behaviours (counted,
   ``users_with_too_few_items_removed``; Table 1 then counts the published lines
   of the remaining users and items). The manifest says whether the input
   already was k-core and how much was removed.
3. **Metadata**: streamed, only the kept items are parsed (the first line of a
   repeated item wins, counted). An item without a meta line is *kept* (title
   and brand empty, category ``<unknown>``) and counted, so the behaviour counts
   stay those of the review file. A metadata file that matches none of the items,
   or of mostly malformed lines (e.g. the other release's), is an error unless
   ``lenient``.
4. **Ids**: users and items numbered in the sorted order of their original id
   strings, so ids do not depend on file order. Each user's behaviours are
   sorted by (time, file line).
5. **Splits and evaluation lists** (docs/design.md, Protocol): last behaviour test,
   second to last valid, the rest train. For each user and each of valid/test,
   column 0 is the held-out item, then ``n_neg`` negatives drawn uniformly
   without replacement from the items the user never interacted with, from the
   streams ``rng(seed, "eval", "valid")`` / ``rng(seed, "eval", "test")``.
6. **Text** (:mod:`mdr.data.text`): Unicode-aware tokens, vocabulary, item text
   and word2vec from the reviews of *training* behaviours only (validation and
   test reviews never reach a model; nor do removed repeats).
7. **Images** (:mod:`mdr.data.images`): ``<raw>/images/<image_filename(asin)>``
   or ``images_dir`` (which must exist when given); written straight into a
   memory-mapped ``images.npy``, whose size is checked against the free disk
   space first (``image_size`` is 4..512).
8. **Labels** (:mod:`mdr.data.labels`): ground truth on synthetic data, the
   documented title/category rule on real data, then the labelled-fraction budget.
9. **Manifest** ``dataset.json``, written last. Everything is built, from the
   first step, in a marked temporary sibling folder (:func:`mdr.io.atomic_dir`)
   and moved into place at the end: an interrupted prepare leaves no folder that
   looks complete, an earlier dataset at ``out`` stays intact until the new one is
   complete, and the next run into ``out`` removes what a killed one left.

Same inputs and config give byte-identical files, except the provenance block
of ``dataset.json`` and the pickled ``word2vec.model`` (gensim records dates).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mdr import io as mio
from mdr.config import PrepareConfig
from mdr.data import images as mimages
from mdr.data import labels as mlabels
from mdr.data import text as mtext
from mdr.data.dataset import FORMAT_VERSION, TEST, TRAIN, VALID
from mdr.data.parse import (
    DataError,
    Format,
    ItemMeta,
    SkipLog,
    clip,
    find_inputs,
    image_filename,
    iter_meta,
    iter_reviews,
    shown,
)
from mdr.data.shop import load_factors
from mdr.seeding import rng

UNKNOWN_CATEGORY = "<unknown>"
FACTORS_FILE = "factors.json"
OUTPUT_KIND = "prepared-dataset"  # the ownership marker's kind (mdr.io)
_MIN_DISTINCT = 3  # items a user needs: at least one to train on, one to validate, one to test
_SAFE_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_LINE_BREAK = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


# --------------------------------------------------------------------------- reviews


@dataclass
class ReviewTable:
    """Parsed reviews, one row each (columns, file order)."""

    user: list[str]
    asin: list[str]
    time: np.ndarray  # int64 [R]
    line: np.ndarray  # int64 [R] 1-based line in the review file
    text: list[str]

    def take(self, idx: np.ndarray) -> ReviewTable:
        return ReviewTable(
            [self.user[i] for i in idx],
            [self.asin[i] for i in idx],
            self.time[idx],
            self.line[idx],
            [self.text[i] for i in idx],
        )

    def __len__(self) -> int:
        return len(self.user)


def read_reviews(
    path: Path, skips: SkipLog, strict: bool, progress: bool, lenient: bool = False
) -> ReviewTable:
    """All reviews of ``path``; ids with line breaks are counted skips (they would break .txt files)."""
    user: list[str] = []
    asin: list[str] = []
    times: list[int] = []
    lines: list[int] = []
    texts: list[str] = []
    for r in _bar(iter_reviews(path, skips, strict, lenient), progress, "reviews", "rev"):
        if _LINE_BREAK.search(r.user) or _LINE_BREAK.search(r.asin):
            if strict:
                raise DataError(f"{path}:{r.line}: reviewerID/asin contains a line break")
            skips.add("review id with a line break", f"{path.name}:{r.line}", shown(r.user, 40))
            continue
        user.append(r.user)
        asin.append(r.asin)
        times.append(r.time)
        lines.append(r.line)
        texts.append(r.text)
    return ReviewTable(user, asin, np.array(times, np.int64), np.array(lines, np.int64), texts)


def codes(strings: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Sorted distinct strings and each input's index among them (int64 [N]).

    Ids follow the sorted order of the original id strings (code-point order),
    so they do not depend on the order of the file.
    """
    uniq = sorted(set(strings))
    index = {s: i for i, s in enumerate(uniq)}
    return uniq, np.fromiter((index[s] for s in strings), np.int64, len(strings))


def drop_duplicates(reviews: ReviewTable, skips: SkipLog) -> tuple[ReviewTable, dict[str, int]]:
    """One review per (user, item) pair: exact duplicates (same user, item, time and text)
    go first, then each pair keeps its earliest review (ties by file line). Both counted."""
    seen: set[tuple[str, str, int, str]] = set()
    first = []
    for i, key in enumerate(zip(reviews.user, reviews.asin, reviews.time.tolist(), reviews.text)):
        if key not in seen:
            seen.add(key)
            first.append(i)
    n_exact = len(reviews) - len(first)
    reviews = reviews.take(np.array(first, np.int64))
    _, u = codes(reviews.user)
    _, a = codes(reviews.asin)
    order = np.lexsort((reviews.line, reviews.time, a, u))  # earliest first within each pair
    us, as_ = u[order], a[order]
    first_of_pair = np.r_[True, (us[1:] != us[:-1]) | (as_[1:] != as_[:-1])]
    keep = np.sort(order[first_of_pair])
    n_pair = len(reviews) - keep.size
    if n_exact:
        skips.counts["duplicate review removed (same user, item, time, text)"] += n_exact
    if n_pair:
        skips.counts["repeated (user, item) review removed (earliest kept)"] += n_pair
    return reviews.take(keep), {
        "exact_duplicates_removed": n_exact,
        "repeated_pairs_removed": n_pair,
    }


def drop_short_users(
    reviews: ReviewTable, min_items: int, skips: SkipLog
) -> tuple[ReviewTable, int]:
    """Remove users with fewer than ``min_items`` distinct items (after
    :func:`drop_duplicates`): they cannot have a training, a validation and a test
    behaviour. Returns the kept reviews and the number of users removed (counted)."""
    per_user: dict[str, int] = {}
    for u in reviews.user:
        per_user[u] = per_user.get(u, 0) + 1
    short = {u for u, n in per_user.items() if n < min_items}
    if not short:
        return reviews, 0
    keep = np.array([i for i, u in enumerate(reviews.user) if u not in short], np.int64)
    removed = len(reviews) - keep.size
    skips.counts[f"behaviour of a user with fewer than {min_items} distinct items removed"] += (
        removed
    )
    if not keep.size:
        raise DataError(f"no user has {min_items} distinct items after removing repeated reviews")
    return reviews.take(keep), len(short)


def k_core(user: np.ndarray, item: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Mask of behaviours that survive iterated k-core filtering, and the number of rounds
    that removed something (0: the input already was k-core)."""
    keep = np.ones(user.size, dtype=bool)
    n_users, n_items = int(user.max(initial=-1)) + 1, int(item.max(initial=-1)) + 1
    rounds = 0
    while True:
        uc = np.bincount(user[keep], minlength=n_users)
        ic = np.bincount(item[keep], minlength=n_items)
        bad = keep & ((uc[user] < k) | (ic[item] < k))
        if not bad.any():
            return keep, rounds
        keep &= ~bad
        rounds += 1


def assign_splits(user: np.ndarray) -> np.ndarray:
    """int8 [B] for behaviours sorted by user then time: last test, second to last valid."""
    n = np.bincount(user)
    start = np.cumsum(n) - n
    pos = np.arange(user.size) - start[user]
    split = np.full(user.size, TRAIN, np.int8)
    split[pos == n[user] - 1] = TEST
    split[pos == n[user] - 2] = VALID
    return split


# --------------------------------------------------------------------------- evaluation lists


def sample_negatives(
    hist_keys: np.ndarray,
    n_users: int,
    n_items: int,
    n_neg: int,
    gen: np.random.Generator,
    chunk: int = 4096,
) -> np.ndarray:
    """int32 [U, n_neg]: per user, ``n_neg`` distinct items never in the user's history.

    ``hist_keys`` is the sorted, unique int64 ``user * n_items + item`` of every
    behaviour. Per user, uniform draws with replacement are scanned in order and
    the first ``n_neg`` that are new and outside the history are kept: an
    ordered uniform sample without replacement from the complement. Users whose
    row runs short draw again from their explicit complement. Deterministic for
    a given generator state.
    """
    out = np.empty((n_users, n_neg), np.int32)
    m = 2 * n_neg + 16  # draws per user per round
    for lo in range(0, n_users, chunk):
        users = np.arange(lo, min(lo + chunk, n_users), dtype=np.int64)
        draws = gen.integers(0, n_items, size=(users.size, m), dtype=np.int64)  # (u, m)
        keys = users[:, None] * n_items + draws
        pos = np.minimum(np.searchsorted(hist_keys, keys), hist_keys.size - 1)
        in_hist = hist_keys[pos] == keys
        order = np.argsort(draws, axis=1, kind="stable")
        sorted_draws = np.take_along_axis(draws, order, axis=1)
        dup_sorted = np.zeros_like(in_hist)
        dup_sorted[:, 1:] = sorted_draws[:, 1:] == sorted_draws[:, :-1]
        dup = np.empty_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        ok = ~in_hist & ~dup
        enough = ok.sum(axis=1) >= n_neg
        take = ok & (np.cumsum(ok, axis=1) <= n_neg) & enough[:, None]
        out[users[enough]] = draws[take].reshape(-1, n_neg)
        for u in users[~enough]:
            lo_k, hi_k = np.searchsorted(hist_keys, [u * n_items, (u + 1) * n_items])
            complement = np.setdiff1d(np.arange(n_items), hist_keys[lo_k:hi_k] - u * n_items)
            out[u] = gen.choice(complement, size=n_neg, replace=False)
    return out


def eval_lists(
    user: np.ndarray,
    item: np.ndarray,
    split: np.ndarray,
    n_users: int,
    n_items: int,
    n_neg: int,
    seed: int,
    user_ids: Sequence[str],
) -> dict[str, np.ndarray]:
    """``valid``/``test`` int32 [U, 1 + n_neg]: the held-out item, then sampled negatives."""
    hist_keys = np.unique(user.astype(np.int64) * n_items + item)
    n_hist = np.bincount(hist_keys // n_items, minlength=n_users)
    short = np.flatnonzero(n_items - n_hist < n_neg)
    if short.size:
        u = int(short[0])
        raise DataError(
            f"user {shown(user_ids[u])} has only {n_items - n_hist[u]} items outside their history, "
            f"fewer than n_neg={n_neg} ({short.size} such users); use a smaller --n-neg "
            f"(at most {int(n_items - n_hist.max())})"
        )
    out = {}
    for name, code in (("valid", VALID), ("test", TEST)):
        pos = np.empty(n_users, np.int32)
        sel = split == code
        pos[user[sel]] = item[sel]
        neg = sample_negatives(hist_keys, n_users, n_items, n_neg, rng(seed, "eval", name))
        out[name] = np.concatenate([pos[:, None], neg], axis=1).astype(np.int32)
    return out


# --------------------------------------------------------------------------- metadata


def read_meta(
    path: Path,
    fmt: Format,
    asins: Sequence[str],
    skips: SkipLog,
    strict: bool,
    progress: bool,
    lenient: bool = False,
) -> dict[str, ItemMeta]:
    """Meta of the kept items (first line wins for a repeated asin, counted)."""
    meta: dict[str, ItemMeta] = {}
    for m in _bar(
        iter_meta(path, fmt, asins=asins, skips=skips, strict=strict, lenient=lenient),
        progress,
        "meta",
        "item",
    ):
        if m.asin in meta:
            skips.add("repeated meta line (first kept)", f"{path.name}:{m.line}", m.asin)
            continue
        meta[m.asin] = m
    return meta


def _one_line(s: str) -> str:
    return _LINE_BREAK.sub(" ", s).strip()


def item_records(
    asins: Sequence[str], meta: Mapping[str, ItemMeta], skips: SkipLog, where: str = "meta"
) -> tuple[list[dict[str, str]], list[str], np.ndarray]:
    """items.jsonl rows, category names (sorted) and category int32 [I]."""
    rows, leaves = [], []
    for a in asins:
        m = meta.get(a)
        if m is None:
            skips.add("item without meta (kept: empty title, category <unknown>)", where, a)
        leaf = _one_line(m.leaf_category) if m is not None else ""
        leaves.append(leaf or UNKNOWN_CATEGORY)
        rows.append(
            {
                "asin": a,
                "title": m.title if m else "",
                "category": leaves[-1],
                "brand": m.brand if m else "",
            }
        )
    names, cat = codes(leaves)
    return rows, names, cat.astype(np.int32)


# --------------------------------------------------------------------------- text


@dataclass
class TextOutputs:
    vocab: list[str]
    tokens: np.ndarray  # int32 [I, L]
    lengths: np.ndarray  # int32 [I]
    vectors: np.ndarray  # float32 [V, d]
    model: Any
    w2v_epochs: int  # the passes word2vec made


W2V_TOKENS = 4_000_000  # tokens word2vec reads in all when w2v_epochs is None


def w2v_epochs(sentences: Sequence[Sequence[str]], given: int | None) -> int:
    """``given``, else enough passes to read about :data:`W2V_TOKENS` tokens (5 to 50)."""
    if given is not None:
        return given
    n_tokens = max(sum(len(s) for s in sentences), 1)
    return int(min(50, max(5, round(W2V_TOKENS / n_tokens))))


def build_text(
    texts: Sequence[str],
    item: np.ndarray,
    n_items: int,
    cfg: PrepareConfig,
    progress: bool,
) -> TextOutputs:
    """Vocabulary, item tokens and word2vec from the given (training) reviews.

    ``texts``/``item`` describe the training behaviours only (in a fixed order: word2vec
    reads them in it); the caller never passes a validation or test review.
    """
    intern: dict[str, str] = {}
    sentences = [
        [intern.setdefault(w, w) for w in mtext.tokenize(t, cfg.min_token_len)]
        for t in _bar(texts, progress, "tokens", "rev")
    ]
    vocab = mtext.build_vocab(sentences, cfg.w2v_min_count)
    if len(vocab) <= 2:
        raise DataError(
            f"no token occurs {cfg.w2v_min_count}+ times in the training reviews; "
            "lower w2v_min_count or check the review text"
        )
    index = {w: i for i, w in enumerate(vocab)}
    review_ids = [mtext.to_ids(s, index) for s in sentences]
    tokens, lengths = mtext.item_token_matrix(item, review_ids, n_items, cfg.max_text_len)
    epochs = w2v_epochs(sentences, cfg.w2v_epochs)
    _say(progress, f"word2vec on {len(sentences)} training reviews, {epochs} passes")
    model = mtext.train_word2vec(
        sentences,
        cfg.w2v_dim,
        cfg.w2v_window,
        cfg.w2v_min_count,
        epochs,
        cfg.seed,
        cfg.w2v_workers,
        cfg.w2v_sg,
    )
    return TextOutputs(vocab, tokens, lengths, mtext.word_vector_table(model, vocab), model, epochs)


# --------------------------------------------------------------------------- writing


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(f"{s}\n" for s in lines), encoding="utf-8")


def _check_out(out: Path, raw: Path, images: Path, overwrite: bool) -> None:
    """Refuse an output folder that is (or holds) an input, or that is not ours to replace."""
    for what, src in (("raw", raw), ("images", images)):
        if out.resolve() == src.resolve() or out.resolve() in src.resolve().parents:
            raise DataError(
                f"{out}: the output folder must not be (or contain) the {what} folder {src}"
            )
    mio.check_output(out, OUTPUT_KIND, overwrite)


def _load_factors(path: Path) -> dict[str, Any]:
    """``factors.json``, validated; a value its parser or checks refuse (an integer of
    5,000 digits, nesting too deep, an unhashable modality) is a DataError naming it."""
    try:
        return load_factors(path)
    except DataError:
        raise
    except (ValueError, TypeError, RecursionError, MemoryError) as e:
        raise DataError(
            f"{path}: not a valid factors file ({type(e).__name__}: {clip(str(e), 120)})"
        ) from e


def _check_name(name: str | None) -> None:
    """A dataset name becomes a results folder name: no separators, no ``..``."""
    if name is not None and (not _SAFE_DATASET_NAME.match(name) or ".." in name):
        raise DataError(
            f"dataset name {shown(name)}: use letters, digits, '_', '-' and '.' "
            "(at most 100 characters, no '..')"
        )


# --------------------------------------------------------------------------- the pipeline


def prepare(
    raw: str | Path,
    out: str | Path,
    category: str | None = None,
    year: int | None = None,
    cfg: PrepareConfig | None = None,
    images_dir: str | Path | None = None,
    strict: bool = False,
    name: str | None = None,
    progress: bool = True,
    *,
    lenient: bool = False,
    allow_missing_meta: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Prepare the Amazon-format folder ``raw`` into the folder ``out``; returns the manifest.

    ``category`` / ``year`` choose the category and release when ``raw`` holds several
    (:func:`mdr.data.parse.find_inputs`; by default they are found from the files).
    ``strict``: the first malformed line is an error. ``lenient``: whole-file damage
    (a truncated gzip, mostly malformed lines) becomes counted skips instead of an
    error. ``allow_missing_meta``: prepare without a metadata file. ``overwrite``:
    replace an earlier prepared dataset at ``out`` (never anything else).
    """
    cfg = cfg or PrepareConfig()
    raw, out = Path(raw), Path(out)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    _check_name(name)
    inputs = find_inputs(raw, category, year, allow_missing_meta)
    fmt, reviews_path, meta_path = inputs.fmt, inputs.reviews, inputs.meta
    factors_path = raw / FACTORS_FILE
    synthetic = factors_path.is_file()
    factors_doc = _load_factors(factors_path) if synthetic else None
    img_root = Path(images_dir) if images_dir is not None else raw / "images"
    if images_dir is not None and not img_root.is_dir():
        raise DataError(f"{img_root}: images folder not found (--images-dir)")
    _check_out(out, raw, img_root, overwrite)
    skips = SkipLog()

    # the marked partial folder exists from here on: a kill leaves only it, and the next
    # run into ``out`` removes it
    with mio.atomic_dir(out, OUTPUT_KIND, overwrite) as tmp:
        with _timed(timings, "reviews", progress):
            reviews = read_reviews(reviews_path, skips, strict, progress, lenient)
            if not len(reviews):
                raise DataError(f"{reviews_path}: no usable review lines")
            n_parsed = len(reviews)

        with _timed(timings, "k_core", progress):
            published, kcore = _apply_k_core(reviews, cfg.k_core, skips, reviews_path)
            del reviews
            reviews, dup_counts = drop_duplicates(published, skips)
            reviews, n_short = drop_short_users(reviews, _MIN_DISTINCT, skips)
            n_published = _published_behaviours(published, reviews, n_short)
            del published
            user_ids, user = codes(reviews.user)
            asins, item = codes(reviews.asin)
            order = np.lexsort((reviews.line, reviews.time, user))
            user, item = user[order].astype(np.int32), item[order].astype(np.int32)
            b_time = reviews.time[order]
            b_text = [reviews.text[i] for i in order]
            del reviews
            split = assign_splits(user)
            n_users, n_items = len(user_ids), len(asins)

        with _timed(timings, "meta", progress):
            if meta_path is not None:
                meta = read_meta(meta_path, fmt, asins, skips, strict, progress, lenient)
                if not meta and not lenient:
                    raise DataError(
                        f"{meta_path}: none of the {n_items} items of {reviews_path.name} has "
                        "a metadata line: the metadata of another category? (--lenient goes "
                        "on without it)"
                    )
                where = meta_path.name
            else:
                meta, where = {}, "no metadata file"
            item_rows, categories, item_cat = item_records(asins, meta, skips, where)

        with _timed(timings, "eval_lists", progress):
            lists = eval_lists(user, item, split, n_users, n_items, cfg.n_neg, cfg.seed, user_ids)

        n_empty = sum(1 for t in b_text if not t)
        if n_empty:
            skips.counts["review without text (behaviour kept)"] += n_empty
        with _timed(timings, "text", progress):
            tr = np.flatnonzero(split == TRAIN)
            text = build_text([b_text[i] for i in tr], item[tr], n_items, cfg, progress)
        del b_text

        _write_lines(tmp / "users.txt", user_ids)
        _write_lines(tmp / "items.jsonl", [json.dumps(r, ensure_ascii=False) for r in item_rows])
        _write_lines(tmp / "categories.txt", categories)
        mio.write_npz(tmp / "items.npz", category=item_cat)
        mio.write_npz(tmp / "behaviors.npz", user=user, item=item, time=b_time, split=split)
        mio.write_npz(tmp / "eval_lists.npz", valid=lists["valid"], test=lists["test"])
        _write_text(tmp, text)

        with _timed(timings, "images", progress):
            img_counts = _write_images(tmp, asins, img_root, cfg, skips, progress)

        with _timed(timings, "labels", progress):
            labels, factors_info, label_report = _labels(
                tmp, factors_doc, asins, item_rows, cfg, skips, factors_path
            )

        counts = {
            "users": n_users,
            "items": n_items,
            "categories": len(categories),
            "behaviors": n_published,
            "sparsity_percent": 100.0 * n_published / (n_users * n_items),
            "behaviors_distinct": int(user.size),
            **{
                k: int((split == code).sum())
                for k, code in (("train", TRAIN), ("valid", VALID), ("test", TEST))
            },
            "reviews_parsed": n_parsed,
            **dup_counts,
            "users_with_too_few_items_removed": n_short,
            "k_core": kcore,
            "items_without_meta": n_items - sum(1 for a in asins if a in meta),
            "reviews_without_text": n_empty,
            "vocab": len(text.vocab),
            "w2v_epochs": text.w2v_epochs,
            "items_without_text": int((text.lengths == 0).sum()),
            **img_counts,
        }
        inputs_used = [p for p in (reviews_path, meta_path) if p is not None]
        inputs_used += [factors_path] if synthetic else []
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "name": name or _default_name(factors_doc, fmt, inputs.category),
            "synthetic": synthetic,
            "source": {
                "format": fmt,
                "year": inputs.year,
                "category": inputs.category,
                "raw": str(raw.resolve()),
                "images": str(img_root.resolve()),
                "reviews": reviews_path.name,
                "meta": meta_path.name if meta_path is not None else None,
                "inputs": {p.name: mio.sha256(p) for p in inputs_used},
            },
            "counts": counts,
            "skips": _stable(skips.as_dict()),
            "config": dataclasses.asdict(cfg),
            "text": {"tokenizer": mtext.TOKENIZER, "unicode": unicodedata.unidata_version},
            "labels": labels,
            "label_budget": label_report,
        }
        if factors_info is not None:
            manifest["factors"] = factors_info
        timings["total"] = time.perf_counter() - t_start
        manifest["provenance"] = _provenance(timings)
        mio.write_json(tmp / "dataset.json", manifest)  # last: marks the folder complete
    _say(progress, f"prepared {manifest['name']} in {timings['total']:.1f} s -> {out}")
    return manifest


def _published_behaviours(published: ReviewTable, kept: ReviewTable, n_short: int) -> int:
    """Table 1's behaviours: lines of the published file (repeats included) that belong to
    the kept users and items."""
    if n_short == 0:  # the same users and items: every published line counts
        return len(published)
    users, items = set(kept.user), set(kept.asin)
    return sum(1 for u, a in zip(published.user, published.asin) if u in users and a in items)


def _apply_k_core(
    reviews: ReviewTable, k: int, skips: SkipLog, path: Path
) -> tuple[ReviewTable, dict[str, Any]]:
    _, u = codes(reviews.user)
    _, a = codes(reviews.asin)
    keep, rounds = k_core(u, a, k)
    report = {
        "k": k,
        "already_k_core": rounds == 0,
        "rounds": rounds,
        "users_removed": int(np.unique(u).size - np.unique(u[keep]).size),
        "items_removed": int(np.unique(a).size - np.unique(a[keep]).size),
        "behaviors_removed": int((~keep).sum()),
    }
    if report["behaviors_removed"]:
        skips.counts[f"behaviour removed by {k}-core filtering"] += report["behaviors_removed"]
    if not keep.any():
        raise DataError(f"{path}: no user and item survive {k}-core filtering")
    return reviews.take(np.flatnonzero(keep)), report


def _write_text(tmp: Path, text: TextOutputs) -> None:
    """vocab.txt, text.npz, word2vec.npy and the gensim model."""
    _write_lines(tmp / "vocab.txt", text.vocab)
    mio.write_npz(tmp / "text.npz", tokens=text.tokens, lengths=text.lengths)
    np.save(tmp / "word2vec.npy", text.vectors, allow_pickle=False)
    text.model.save(str(tmp / "word2vec.model"))


def _write_images(
    tmp: Path,
    asins: Sequence[str],
    root: Path,
    cfg: PrepareConfig,
    skips: SkipLog,
    progress: bool,
) -> dict[str, int]:
    """images.npy (memory-mapped, filled in place) and image_mask.npy; reasons counted."""
    s = cfg.image_size
    need = len(asins) * s * s * 3
    free = shutil.disk_usage(tmp).free
    if need > free:  # before the memory map: a sparse file would fail half-way, much later
        raise DataError(
            f"{tmp / 'images.npy'}: {len(asins)} images at {s}x{s} need "
            f"{mio.human_bytes(need)}, only {mio.human_bytes(free)} are free there; "
            "use a smaller --image-size or another --out"
        )
    arr = np.lib.format.open_memmap(
        tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(len(asins), s, s, 3)
    )
    paths = [root / image_filename(a) for a in asins]
    mask, reasons = mimages.load_images(paths, s, arr, cfg.image_workers, progress=progress)
    arr.flush()
    del arr
    np.save(tmp / "image_mask.npy", mask, allow_pickle=False)
    for a, why in zip(asins, reasons):
        if why is not None:
            skips.add(why, str(root), a)
    return {"items_with_image": int(mask.sum())}


def _labels(
    tmp: Path,
    factors_doc: dict[str, Any] | None,
    asins: Sequence[str],
    item_rows: Sequence[Mapping[str, str]],
    cfg: PrepareConfig,
    skips: SkipLog,
    factors_path: Path,
) -> tuple[dict[str, list[str]], dict[str, Any] | None, dict[str, Any]]:
    """labels.npz (and factors.npz on synthetic data); returns class names, factor info, budget."""
    info = None
    if factors_doc is not None:
        factors, info = mlabels.synthetic_factors(factors_doc, asins, skips, factors_path.name)
        mio.write_npz(tmp / "factors.npz", **factors)
        raw_labels = mlabels.synthetic_labels(factors, info)
    else:
        cats = [r["category"] if r["category"] != UNKNOWN_CATEGORY else "" for r in item_rows]
        raw_labels = mlabels.real_labels(
            [r["title"] for r in item_rows], cats, [r["brand"] for r in item_rows], cfg.shape_top_k
        )
    labels, report = mlabels.apply_budget(raw_labels, cfg.label_fraction, cfg.seed)
    mio.write_npz(tmp / "labels.npz", **labels.values)
    return labels.classes, info, report


def _stable(skips: dict[str, Any]) -> dict[str, Any]:
    """Skip report without memory addresses (``<ast.Call object at 0x...>`` in parser messages),
    so that the manifest is the same on every run."""
    examples = [_ADDRESS.sub("", e) for e in skips.get("examples", [])]
    return {**skips, "examples": examples}


def _default_name(factors_doc: Mapping[str, Any] | None, fmt: str, category: str) -> str:
    if factors_doc is not None and isinstance(factors_doc.get("name"), str):
        return str(factors_doc["name"])
    return f"{fmt}-{category}"


def _provenance(timings: Mapping[str, float]) -> dict[str, Any]:
    from mdr.provenance import manifest

    return manifest(seconds={k: round(v, 2) for k, v in timings.items()})


class _timed:
    """Context manager adding a step's wall time to ``timings`` (and saying it when verbose)."""

    def __init__(self, timings: dict[str, float], step: str, verbose: bool) -> None:
        self.timings, self.step, self.verbose = timings, step, verbose

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()
        _say(self.verbose, f"[prepare] {self.step} ...")

    def __exit__(self, *exc: object) -> None:
        self.timings[self.step] = time.perf_counter() - self.t0


def _say(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


def _bar(it: Any, enabled: bool, desc: str, unit: str) -> Iterator[Any]:
    if not enabled:
        return iter(it)
    from tqdm.auto import tqdm

    return iter(tqdm(it, desc=desc, unit=unit, mininterval=1.0))
