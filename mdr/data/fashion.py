"""Real product photos with real attribute labels: the "Fashion Product Images (Small)" corpus.

The public format (Myntra catalogue, as published on Kaggle; see the corpus README):

- ``images/<id>.jpg``: product photos (224x224 RGB JPEG in the small release);
- ``styles.csv``: one row per catalogue item, header
  ``id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage``;
  most rows have no image in the folder (joined on ``id``);
- ``styles_text.csv``: the ``productDisplayName`` column, aligned ROW BY ROW with
  ``styles.csv`` (names may contain commas and quotes: read with :mod:`csv`, never split).

:func:`prepare_fashion` turns it into an *images-only* prepared folder (no users,
no behaviours: it serves the image side of MDR alone, see
:mod:`mdr.models.image_factors`):

=====================  =====================================================
file                   content
=====================  =====================================================
``images.npy``         uint8 [n, S, S, 3] RGB, padded to square on white and
                       resized (:mod:`mdr.data.images`)
``labels.npz``         weak labels ``colour``, ``article``: int64 [n], -1 =
                       unlabelled (a seeded ``label_fraction`` of items keeps
                       its label, independently per label)
``factors.npz``        ground truth for EVERY item (for scoring only):
                       ``colour``, ``article``, ``gender``, ``master``, ``sub``
``items.jsonl``        per item: source ``id``, display ``name``, raw
                       ``baseColour`` and ``articleType``
``dataset.json``       ``kind: "images-only"``, counts, class names per factor,
                       skips, sha256 of the inputs, config. Written LAST.
=====================  =====================================================

Rules (documented choices):

- items are the rows with an image file, in ascending numeric ``id`` order;
- colour = ``baseColour``, article = ``articleType``; a row with an empty (or
  ``NA``) colour or article is unusable: a counted skip;
- rare classes: a class with fewer than ``min_count`` photographed items is
  merged into ``"other"`` (``rare="other"``, the default, keeps every item) or
  its items are dropped (``rare="drop"``, counted skips). Class ids follow the
  class names sorted by frequency (ties by name), ``"other"`` last;
- a styles.csv row with the wrong number of fields, a non-integer or a repeated
  id is malformed: a counted skip naming file and line (``strict=True`` raises
  :class:`~mdr.data.parse.DataError` instead); a missing column, a missing file or
  styles_text.csv with a different number of rows is always a ``DataError``;
- a photo that cannot be decoded is a counted skip (reason from
  :mod:`mdr.data.images`); rows without a photo are counted, not skipped (most
  catalogue rows have none); photos with no styles.csv row are counted skips.

Same inputs and arguments give byte-identical files (fixed zip timestamps, no
dates or timings in ``dataset.json``). The folder is built in a temporary sibling
and moved into place (:func:`mdr.io.atomic_dir`); it carries mdr's ownership marker
(kind ``fashion-images``), and an existing ``out`` is replaced only when it is such a
folder and ``overwrite=True`` (``--overwrite``).
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mdr import io as mio
from mdr.config import PhotoCorpusConfig
from mdr.data.dataset import check_prepared, load_npy, load_npz, read_jsonl, read_manifest
from mdr.data.images import load_images
from mdr.data.parse import DataError, SkipLog, clip, shown
from mdr.seeding import rng

KIND = "images-only"
OUTPUT_KIND = "fashion-images"  # the ownership marker's kind (mdr.io)
FORMAT_VERSION = 1
STYLES = "styles.csv"
STYLES_TEXT = "styles_text.csv"
COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour")
OTHER = "other"
UNLABELLED = -1
MISSING_VALUES = frozenset({"", "NA", "N/A", "null", "None"})
# factor name in factors.npz -> styles.csv column; the first two are also the weak labels
FACTOR_COLUMNS: dict[str, str] = {
    "colour": "baseColour",
    "article": "articleType",
    "gender": "gender",
    "master": "masterCategory",
    "sub": "subCategory",
}
LABELS = ("colour", "article")
DEFAULT_DIR = Path("..") / "shared" / "data" / "fashion-product-images-small"
ENV_DIR = "MDR_FASHION_DIR"
REQUIRED_FILES = ("dataset.json", "images.npy", "labels.npz", "factors.npz", "items.jsonl")


@dataclass(frozen=True)
class Row:
    """One usable styles.csv row joined with its display name."""

    id: int
    line: int  # 1-based line of the row in styles.csv
    values: dict[str, str]  # styles.csv column -> value
    name: str  # productDisplayName


# --------------------------------------------------------------------------- locating the corpus


def default_fashion_dir(repo_root: str | Path | None = None) -> Path:
    """``$MDR_FASHION_DIR``, else ``../shared/data/fashion-product-images-small`` beside
    ``repo_root`` (default: the current folder, then the checkout)."""
    if repo_root is not None and not os.environ.get(ENV_DIR):
        return (Path(repo_root) / DEFAULT_DIR).resolve()
    return mio.shared_folder(DEFAULT_DIR, ENV_DIR)


def _check_src(src: Path) -> None:
    if not src.is_dir():
        raise DataError(f"{src}: fashion corpus folder not found (set ${ENV_DIR} or pass --dir)")
    for name in (STYLES, STYLES_TEXT):
        if not (src / name).is_file():
            raise DataError(f"{src / name}: file not found")
    if not (src / "images").is_dir():
        raise DataError(f"{src / 'images'}: image folder not found")


# --------------------------------------------------------------------------- parsing


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """csv records of ``path`` with the 1-based line where each starts (blank lines skipped)."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        start = 1
        try:
            for rec in reader:
                if rec:
                    yield start, rec
                start = reader.line_num + 1
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: unreadable CSV ({clip(str(e))})") from e


def _read_names(path: Path) -> list[tuple[int, str]]:
    """styles_text.csv: (line, productDisplayName) per row, header checked.

    A name with an unquoted comma arrives as several fields: they are joined back with ","
    (the file has one column, so nothing else can be meant).
    """
    recs = list(_records(path))
    if not recs or [c.strip() for c in recs[0][1]] != ["productDisplayName"]:
        raise DataError(f"{path}:1: expected the header 'productDisplayName'")
    return [(line, ",".join(rec)) for line, rec in recs[1:]]


def _header_index(path: Path, header: list[str]) -> dict[str, int]:
    index = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in COLUMNS if c not in index]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {missing}; header is {shown(header)}")
    return index


def _malformed(
    strict: bool, skips: SkipLog, reason: str, path: Path, line: int, detail: str
) -> None:
    if strict:
        raise DataError(f"{path}:{line}: {reason} ({clip(detail)})")
    skips.add(reason, f"{path.name}:{line}", detail)


def read_styles(src: Path, skips: SkipLog, strict: bool = False) -> tuple[list[Row], int]:
    """Parse styles.csv joined row by row with styles_text.csv; malformed rows are skips.

    Returns the well-formed rows and the number of data rows read.
    """
    path, text_path = src / STYLES, src / STYLES_TEXT
    recs = list(_records(path))
    if not recs:
        raise DataError(f"{path}:1: empty file")
    index = _header_index(path, recs[0][1])
    n_fields = len(recs[0][1])
    names = _read_names(text_path)
    if len(names) != len(recs) - 1:
        raise DataError(
            f"{text_path}: {len(names)} rows, but {path} has {len(recs) - 1}: "
            "the files must be aligned row by row"
        )
    rows: list[Row] = []
    seen: dict[int, int] = {}
    for (line, rec), (_, name) in zip(recs[1:], names):
        if len(rec) != n_fields:
            _malformed(
                strict,
                skips,
                "malformed styles.csv row",
                path,
                line,
                f"{len(rec)} fields, expected {n_fields}",
            )
            continue
        try:
            item_id = int(rec[index["id"]].strip())
        except ValueError:
            _malformed(
                strict,
                skips,
                "styles.csv row with a non-integer id",
                path,
                line,
                shown(rec[index["id"]], 40),
            )
            continue
        if item_id in seen:
            _malformed(
                strict,
                skips,
                "repeated id in styles.csv",
                path,
                line,
                f"id {clip(str(item_id), 40)} first on line {seen[item_id]}",
            )
            continue
        seen[item_id] = line
        values = {c: rec[i].strip() for c, i in index.items()}
        rows.append(Row(item_id, line, values, name.strip()))
    return rows, len(recs) - 1


def _image_ids(src: Path, skips: SkipLog) -> dict[int, Path]:
    """Photo files ``images/<id>.jpg`` by integer id; other files are counted skips."""
    out: dict[int, Path] = {}
    for p in sorted((src / "images").iterdir()):
        if p.suffix.lower() != ".jpg" or not p.stem.isdigit():
            skips.add("file in images/ not named <id>.jpg", f"images/{p.name}")
            continue
        out[int(p.stem)] = p
    return out


def _usable(rows: Sequence[Row], path: Path, skips: SkipLog) -> list[Row]:
    """Rows whose colour and article are present (the labels every item needs)."""
    keep = []
    for r in rows:
        missing = [c for c in ("baseColour", "articleType") if r.values[c] in MISSING_VALUES]
        if missing:
            skips.add(f"no {missing[0]}", f"{path.name}:{r.line}", f"id {r.id}")
            continue
        keep.append(r)
    return keep


# --------------------------------------------------------------------------- classes


def class_names(values: Sequence[str], min_count: int) -> tuple[list[str], set[str]]:
    """Classes with at least ``min_count`` items (by count, ties by name) and the rare ones."""
    counts = Counter(values)
    frequent = sorted(
        (v for v, c in counts.items() if c >= min_count), key=lambda v: (-counts[v], v)
    )
    return frequent, {v for v, c in counts.items() if c < min_count}


def _encode(values: Sequence[str], classes: list[str]) -> np.ndarray:
    """Class ids int64 [n] of ``values``; values outside ``classes`` map to ``"other"``."""
    index = {c: i for i, c in enumerate(classes)}
    other = index.get(OTHER, UNLABELLED)
    return np.array([index.get(v, other) for v in values], dtype=np.int64)


def _drop_rare(rows: list[Row], min_count: int, skips: SkipLog, path: Path) -> list[Row]:
    """``rare="drop"``: remove items of rare colours or articles (counted skips)."""
    rare = {
        c: class_names([r.values[c] for r in rows], min_count)[1]
        for c in ("baseColour", "articleType")
    }
    keep = []
    for r in rows:
        col = next((c for c in rare if r.values[c] in rare[c]), None)
        if col is not None:
            skips.add(f"rare {col} (< min_count)", f"{path.name}:{r.line}", r.values[col])
            continue
        keep.append(r)
    return keep


def _factors(
    rows: Sequence[Row], min_count: int
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Ground-truth factor ids for every item, rare classes merged into ``"other"``."""
    values, classes = {}, {}
    for name, col in FACTOR_COLUMNS.items():
        raw = [r.values[col] or OTHER for r in rows]
        frequent, rare = class_names(raw, min_count)
        names = frequent + ([OTHER] if rare and OTHER not in frequent else [])
        values[name], classes[name] = _encode(raw, names), names
    return values, classes


def weak_labels(
    factors: dict[str, np.ndarray], fraction: float, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Keep each label on a seeded ``fraction`` of items (stream ``rng(seed, "labels", name)``)."""
    out, report = {}, {}
    for name in LABELS:
        y = factors[name]
        n_keep = min(y.size, round(fraction * y.size))
        keep = np.sort(rng(seed, "labels", name).choice(y.size, size=n_keep, replace=False))
        weak = np.full_like(y, UNLABELLED)
        weak[keep] = y[keep]
        out[name] = weak
        report[name] = {"items": int(y.size), "labelled": int(n_keep)}
    return out, report


# --------------------------------------------------------------------------- prepare


def _limit(rows: list[Row], limit: int | None) -> list[Row]:
    """The first ``limit`` photographed rows in id order (a deterministic subset for tests)."""
    return rows if limit is None else rows[: max(0, int(limit))]


def _decode(
    rows: list[Row], images: dict[int, Path], size: int, skips: SkipLog, progress: bool
) -> tuple[list[Row], np.ndarray]:
    """Decode each row's photo; rows whose photo is corrupt become counted skips."""
    pixels = np.zeros((len(rows), size, size, 3), dtype=np.uint8)
    mask, reasons = load_images(
        [images[r.id] for r in rows], size, pixels, workers=2, progress=progress
    )
    for r, why in zip(rows, reasons):
        if why is not None:
            skips.add(why, f"images/{r.id}.jpg")
    keep = np.flatnonzero(mask)
    return [rows[i] for i in keep], np.ascontiguousarray(pixels[keep])


def prepare_fashion(
    src_dir: str | Path,
    out: str | Path,
    image_size: int = PhotoCorpusConfig.image_size,
    min_count: int = PhotoCorpusConfig.min_count,
    label_fraction: float = PhotoCorpusConfig.label_fraction,
    seed: int = PhotoCorpusConfig.seed,
    limit: int | None = PhotoCorpusConfig.limit,
    progress: bool = True,
    rare: Literal["other", "drop"] = PhotoCorpusConfig.rare,
    strict: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Prepare the fashion corpus at ``src_dir`` into ``out``; returns the manifest. The
    settings are the fields of :class:`mdr.config.PhotoCorpusConfig` (validated by it).

    ``limit`` keeps the first ``limit`` photographed rows (ascending id) before
    decoding (tests). ``rare``, ``strict``: see the module docstring. ``out`` must
    not exist, be empty, or (with ``overwrite``) hold an earlier output of this
    function; anything else is refused before any work (:func:`mdr.io.check_output`).
    """
    src, out = Path(src_dir), Path(out)
    # the typed settings of the config files' `prepare:` section: one validator for both
    PhotoCorpusConfig(
        image_size=image_size,
        min_count=min_count,
        label_fraction=label_fraction,
        seed=seed,
        limit=limit,
        rare=rare,
    )
    _check_src(src)
    mio.check_output(out, OUTPUT_KIND, overwrite)
    skips = SkipLog()
    rows, n_records = read_styles(src, skips, strict)
    images = _image_ids(src, skips)
    with_row = {r.id for r in rows}
    for i in sorted(set(images) - with_row):
        skips.add("photo without a styles.csv row", f"images/{i}.jpg")
    photographed = sorted((r for r in rows if r.id in images), key=lambda r: r.id)
    n_without_image = len(rows) - len(photographed)
    chosen = _usable(_limit(photographed, limit), src / STYLES, skips)
    _check_memory(len(chosen), image_size)
    chosen, pixels = _decode(chosen, images, image_size, skips, progress)
    if rare == "drop":
        keep = {r.id for r in _drop_rare(chosen, min_count, skips, src / STYLES)}
        idx = [i for i, r in enumerate(chosen) if r.id in keep]
        chosen, pixels = [chosen[i] for i in idx], np.ascontiguousarray(pixels[idx])
    if not chosen:
        raise DataError(f"{src}: no usable photographed rows (skips: {dict(skips.counts)})")
    factors, classes = _factors(chosen, min_count)
    labels, budget = weak_labels(factors, label_fraction, seed)
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "name": "fashion-images",
        "source": {
            "format": "fashion-product-images",
            "dir": str(src.resolve()),
            "inputs": {
                STYLES: mio.sha256(src / STYLES),
                STYLES_TEXT: mio.sha256(src / STYLES_TEXT),
            },
        },
        "counts": {
            "items": len(chosen),
            "styles_rows": n_records,
            "rows_with_image": len(photographed),
            "rows_without_image": n_without_image,
            "photos": len(images),
            "skipped": skips.total(),
        },
        "labels": {n: classes[n] for n in LABELS},
        "factors": classes,
        "label_budget": budget,
        "class_counts": {
            n: np.bincount(factors[n], minlength=len(classes[n])).tolist() for n in classes
        },
        "skips": skips.as_dict(),
        "config": {
            "image_size": image_size,
            "min_count": min_count,
            "label_fraction": label_fraction,
            "seed": seed,
            "limit": limit,
            "rare": rare,
            "strict": strict,
        },
    }
    _write(out, pixels, labels, factors, chosen, manifest, overwrite)
    _say(progress, f"prepared {len(chosen)} photos ({skips.total()} skips) -> {out}")
    return manifest


def _check_memory(n: int, size: int) -> None:
    """Refuse a decode whose pixel arrays (decoded, then compacted: twice) exceed the
    memory available now, instead of failing half-way or being killed."""
    need = 2 * n * size * size * 3
    avail = _available_memory()
    if avail is not None and need > avail:
        raise DataError(
            f"{n} photos at {size}x{size} need {mio.human_bytes(need)} of memory, "
            f"{mio.human_bytes(avail)} are available: use a smaller --image-size or "
            "--limit"
        )


def _available_memory() -> int | None:
    """Bytes the kernel says are available (``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _write(
    out: Path,
    pixels: np.ndarray,
    labels: dict[str, np.ndarray],
    factors: dict[str, np.ndarray],
    rows: Sequence[Row],
    manifest: dict[str, Any],
    overwrite: bool,
) -> None:
    """Write every file into a marked temporary sibling folder; dataset.json last; then move."""
    with mio.atomic_dir(out, OUTPUT_KIND, overwrite) as tmp:
        with (tmp / "images.npy").open("wb") as fh:
            np.save(fh, pixels, allow_pickle=False)
        mio.write_npz(tmp / "labels.npz", **labels)
        mio.write_npz(tmp / "factors.npz", **factors)
        lines = [
            json.dumps(
                {
                    "id": r.id,
                    "name": r.name,
                    "baseColour": r.values["baseColour"],
                    "articleType": r.values["articleType"],
                },
                ensure_ascii=False,
            )
            for r in rows
        ]
        (tmp / "items.jsonl").write_text("".join(s + "\n" for s in lines), encoding="utf-8")
        mio.write_json(tmp / "dataset.json", manifest)


def _say(progress: bool, msg: str) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(msg)


# --------------------------------------------------------------------------- reader


@dataclass
class FashionImages:
    """Read-only view of a prepared images-only folder; arrays load lazily and are cached."""

    root: Path

    @classmethod
    def open(cls, root: str | Path) -> FashionImages:
        root = Path(root)
        manifest = check_prepared(
            root, REQUIRED_FILES, FORMAT_VERSION, "run `mdr data fashion-images` first"
        )
        if manifest.get("kind") != KIND:
            raise DataError(
                f"{root}/dataset.json: kind {shown(manifest.get('kind'))}, expected {KIND!r}"
            )
        return cls(root)

    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.root)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["counts"]["items"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["config"]["image_size"])

    @property
    def label_names(self) -> dict[str, list[str]]:
        """Weak-label name -> class names."""
        return {k: list(v) for k, v in self.manifest["labels"].items()}

    @property
    def factor_names(self) -> dict[str, list[str]]:
        """Ground-truth factor name -> class names."""
        return {k: list(v) for k, v in self.manifest["factors"].items()}

    def _npz(self, name: str) -> dict[str, np.ndarray]:
        return load_npz(self.root / name)

    @functools.cached_property
    def images(self) -> np.ndarray:
        """uint8 [n, S, S, 3], memory-mapped."""
        return load_npy(self.root / "images.npy", mmap=True)

    @functools.cached_property
    def labels(self) -> dict[str, np.ndarray]:
        """Weak labels int64 [n] (-1 unlabelled)."""
        return self._npz("labels.npz")

    @functools.cached_property
    def factors(self) -> dict[str, np.ndarray]:
        """Ground truth int64 [n] for every item (for scoring, never for training)."""
        return self._npz("factors.npz")

    @functools.cached_property
    def items(self) -> list[dict[str, Any]]:
        return read_jsonl(self.root / "items.jsonl")


# --------------------------------------------------------------------------- CLI


__all__ = [
    "FACTOR_COLUMNS",
    "KIND",
    "LABELS",
    "OTHER",
    "FashionImages",
    "class_names",
    "default_fashion_dir",
    "prepare_fashion",
    "read_styles",
    "weak_labels",
]
