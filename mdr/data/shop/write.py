"""Writing the shop: the Amazon 2014 files, ``factors.json``, and :func:`generate` itself.

:func:`generate` draws items and users, simulates the choices, then writes the reviews
and draws the images in worker processes (fixed chunks, each with its own random
stream, so the bytes do not depend on the number of workers). With ``photos`` it
writes the photo shop instead (:mod:`mdr.data.shop.photos`): the same steps, with
the photos' colour, shape and names, its own words, and the photos as images.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from mdr.data.parse import DataError, image_filename
from mdr.data.shop import photos as _photos
from mdr.data.shop.factors import BRANDS, SIZES, _Items, _make_items
from mdr.data.shop.render import image_tasks
from mdr.data.shop.reviews import ReviewWriter, _tokens
from mdr.data.shop.users import (
    _fill_and_repair,
    _make_users,
    _ratings,
    _review_days,
    _simulate,
    check_5core,
)
from mdr.io import atomic_dir, check_output
from mdr.seeding import rng

CATEGORY = "Synthetic"
OUTPUT_KIND = "synthetic-raw"  # the ownership marker's kind (mdr.io)


# --------------------------------------------------------------------------- the Amazon files


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


def _meta_lines(items: _Items) -> Iterator[str]:
    shapes = items.catalogue.by_name["shape"].values
    for i in sorted(range(len(items.asins)), key=items.asins.__getitem__):
        asin = items.asins[i]
        yield repr(
            {
                "asin": asin,
                "imUrl": f"http://synthetic.invalid/images/{image_filename(asin)}",
                "title": items.titles[i],
                "categories": [[CATEGORY, shapes[items.values["shape"][i]]]],
                "brand": BRANDS[items.values["brand"][i]],
                "price": float(items.prices[i]),
            }
        )


_TEXT_FACTORS = ("colour", "size", "material", "occasion", "brand")
_TEXT_CHUNK = 20_000  # behaviours per review task (fixed: output independent of workers)


def _review_chunk(
    seed: int,
    chunk: int,
    item_text: np.ndarray,
    item: np.ndarray,
    stars: np.ndarray,
    verbosity: np.ndarray,
    asin: list[str],
    uid: list[str],
    name: list[str],
    day: np.ndarray,
    photo: bool = False,
) -> tuple[list[str], set[str]]:
    """JSON lines of one chunk of behaviours (its own text stream) and the words they use.

    ``photo``: the photo shop's writer (its value words, mention probabilities and
    templates); ``item_text``'s columns are the writer's text factors, in order.
    """
    if photo:
        writer = ReviewWriter(_photos.VALUE_WORDS, _photos.MENTION_P_PHOTO, _photos.PHOTO_TEMPLATES)
        keys: tuple[str, ...] = tuple(_photos.MENTION_P_PHOTO)
    else:
        writer, keys = ReviewWriter(), _TEXT_FACTORS
    rnd = random.Random(int(rng(seed, "synthetic", "text", chunk).integers(0, 2**63 - 1)))
    lines: list[str] = []
    words: set[str] = set()
    for b in range(len(item)):
        row = item_text[item[b]]
        summary, text = writer.write(
            rnd, dict(zip(keys, row.tolist())), int(stars[b]), float(verbosity[b])
        )
        words.update(_tokens(summary + " " + text))
        lines.append(
            json.dumps(
                {
                    "reviewerID": uid[b],
                    "asin": asin[b],
                    "reviewerName": name[b],
                    "helpful": [0, 0],
                    "reviewText": text,
                    "overall": float(stars[b]),
                    "summary": summary,
                    "unixReviewTime": int(day[b]) * 86400,
                    "reviewTime": _review_time(day[b]),
                }
            )
        )
    return lines, words


# --------------------------------------------------------------------------- factors.json


def _factors_doc(
    name: str, seed: int, items: _Items, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ground truth of the catalogue's recorded factors; ``extra`` sections after the
    header (the photo shop's ``photo_source``; ``photos`` goes last, one line per item)."""
    order = sorted(range(len(items.asins)), key=items.asins.__getitem__)
    factors = items.catalogue.recorded_factors()
    extra = dict(extra or {})
    per_photo = extra.pop("photos", None)
    doc = {
        "name": name,
        "seed": seed,
        "factors": {
            f.name: {"kind": f.kind, "modalities": f.shown_in(), "values": list(f.values)}
            for f in factors
        },
        **extra,
        "items": {
            items.asins[i]: {f.name: int(items.values[f.name][i]) for f in factors} for i in order
        },
    }
    if per_photo is not None:
        doc["photos"] = per_photo
    return doc


_PER_ITEM = ("items", "photos")  # the sections written one line per item


def _factors_json(doc: dict[str, Any]) -> str:
    """Readable and compact: the header indented, then one line per item."""
    head = json.dumps({k: v for k, v in doc.items() if k not in _PER_ITEM}, indent=1)
    sections = [
        f' "{key}": {{\n'
        + ",\n".join(f"  {json.dumps(a)}: {json.dumps(v)}" for a, v in doc[key].items())
        + "\n }"
        for key in _PER_ITEM
        if key in doc
    ]
    return head[:-2] + ",\n" + ",\n".join(sections) + "\n}\n"


# --------------------------------------------------------------------------- generate


def _default_workers(n_items: int) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, 8)) if n_items >= 1000 else 1


def _run_tasks(tasks: list[tuple[Any, tuple]], workers: int, progress: bool) -> list[Any]:
    """Run ``fn(*args)`` for each task, in ``workers`` spawned processes when > 1; results in order."""
    from tqdm import tqdm

    bar = tqdm(
        total=len(tasks),
        desc="synth: reviews+images",
        disable=not progress,
        leave=False,
        unit="chunk",
    )
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


def generate(
    size: str,
    seed: int,
    out: str | Path,
    progress: bool = True,
    workers: int | None = None,
    overwrite: bool = False,
    photos: str | Path | None = None,
) -> dict[str, Any]:
    """Write the synthetic shop of ``size`` ("tiny", "small", "cloth") into ``out``.

    Returns a summary: counts, repairs, realised vocabulary and wall time per stage.
    ``workers`` processes write the reviews and draw the images (default: the CPU
    count for shops of 1,000+ items, else 1); the output does not depend on it.

    ``photos``: the folder of the product-photo corpus; the shop is then the photo
    shop (:mod:`mdr.data.shop.photos`, named ``photo-<size>``): each item one real
    photo, its colour and shape the photo's grouped labels. The corpus is read (and
    a missing one refused) before anything is written.

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

    picks, t = None, t0
    if photos is not None:
        check_output(out, OUTPUT_KIND, overwrite)  # a refused out before the corpus is read
        picks = _photos.pick_photos(photos, cfg.n_items, seed)
        t = lap("photos", t0)
    name = f"synthetic-{size}" if picks is None else f"{_photos.PHOTO.name}-{size}"
    with atomic_dir(out, OUTPUT_KIND, overwrite) as tmp:
        if picks is None:
            items = _make_items(cfg.n_items, seed)
        else:
            items = _make_items(cfg.n_items, seed, _photos.PHOTO, picks.given(), picks.names())
        users = _make_users(cfg, items, seed)
        t = lap("items_users", t)
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
        stars = _ratings(
            items.values["quality"][b_item], match[b_user, b_step], users.leniency[b_user], seed
        )
        text_factors = _TEXT_FACTORS if picks is None else tuple(_photos.MENTION_P_PHOTO)
        item_text = np.stack([items.values[f] for f in text_factors], axis=1)  # (I, F)
        asin_b = [items.asins[i] for i in b_item]
        uid_b = [users.ids[u] for u in b_user]
        name_b = [users.names[u] for u in b_user]
        verb_b = users.verbosity[b_user]
        workers = workers or _default_workers(cfg.n_items)
        (tmp / "images").mkdir()
        spans = [(lo, lo + _TEXT_CHUNK) for lo in range(0, len(b_item), _TEXT_CHUNK)]
        tasks: list[tuple[Any, tuple]] = [
            (
                _review_chunk,
                (
                    seed,
                    c,
                    item_text,
                    b_item[lo:hi],
                    stars[lo:hi],
                    verb_b[lo:hi],
                    asin_b[lo:hi],
                    uid_b[lo:hi],
                    name_b[lo:hi],
                    days[lo:hi],
                    picks is not None,
                ),
            )
            for c, (lo, hi) in enumerate(spans)
        ]
        n_text = len(tasks)
        if picks is None:
            tasks += image_tasks(items, seed, tmp / "images")
        else:
            tasks += _photos.image_tasks(picks, items.asins, tmp / "images")
        results = _run_tasks(tasks, workers, progress)
        lines = [line for chunk_lines, _ in results[:n_text] for line in chunk_lines]
        words = set().union(*(w for _, w in results[:n_text]))
        t = lap("reviews_images", t)
        # as the real file: grouped by item, then time, then reviewer
        day_b = days.tolist()
        order = sorted(range(len(lines)), key=lambda b: (asin_b[b], day_b[b], uid_b[b]))
        _write_gzip_lines(tmp / f"reviews_{CATEGORY}_5.json.gz", (lines[b] for b in order))
        _write_gzip_lines(tmp / f"meta_{CATEGORY}.json.gz", _meta_lines(items))
        extra = None if picks is None else picks.doc(items.asins)
        (tmp / "factors.json").write_text(
            _factors_json(_factors_doc(name, seed, items, extra)), encoding="utf-8"
        )
        t = lap("write", t)
    wall = time.perf_counter() - t0
    summary = {
        "name": name,
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
    if picks is not None:
        summary["photos"] = picks.summary()
    return summary
