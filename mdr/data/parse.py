"""Parse the Amazon review and metadata files (2014 and 2018 releases) into plain records.

- 2014 reviews ``reviews_<Cat>_5.json.gz``: strict JSON, one object a line.
- 2014 meta ``meta_<Cat>.json.gz``: one *Python literal* dict a line, read with
  :func:`ast.literal_eval` (never ``eval``: DIN's preprocessing did, which runs
  whatever a line contains).
- 2018 ``<Cat>_5.json.gz`` and ``meta_<Cat>.json.gz``: strict JSON lines;
  meta carries ``category`` (a list), ``imageURL``/``imageURLHighRes`` (lists);
  reviews may lack ``reviewText`` and repeat.

A malformed line is a counted skip naming the file and line (see
:class:`SkipLog`); ``strict=True`` raises :class:`DataError` instead.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

_ASIN_RE = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")

Format = Literal["amazon2014", "amazon2018"]


class DataError(ValueError):
    """Bad input that cannot be skipped: names the file (and line)."""


@dataclass
class SkipLog:
    """Counts every skipped record by reason and keeps a few examples (file:line why)."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, reason: str, where: str = "", detail: str = "") -> None:
        self.counts[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{where}: {reason}" + (f" ({detail})" if detail else ""))

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "examples": list(self.examples)}


@dataclass(frozen=True)
class Review:
    user: str
    asin: str
    time: int  # unix seconds
    text: str  # summary + review text ("" when both are missing)
    rating: float | None
    line: int  # 1-based line in its file, for messages and a deterministic tie-break


@dataclass(frozen=True)
class ItemMeta:
    asin: str
    title: str
    categories: tuple[tuple[str, ...], ...]  # 2014: list of paths; 2018: one path
    brand: str
    image_urls: tuple[str, ...]  # best first
    line: int

    @property
    def leaf_category(self) -> str:
        """DIN's rule: the last element of the last category path ("" when none)."""
        for path in reversed(self.categories):
            if path:
                return path[-1]
        return ""


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a ``.gz`` or plain text file for reading, with a clear error when missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def _lines(path: Path, skips: SkipLog, strict: bool) -> Iterator[tuple[int, str]]:
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if line:
                    yield lineno, line
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # truncated or corrupt gzip
        if strict:
            raise DataError(f"{path}: unreadable ({e})") from e
        skips.add("file truncated or corrupt", str(path), str(e))


def _fail(strict: bool, skips: SkipLog, reason: str, path: Path, lineno: int, detail: str) -> None:
    if strict:
        raise DataError(f"{path}:{lineno}: {reason} ({detail})")
    skips.add(reason, f"{path.name}:{lineno}", detail)


def iter_reviews(
    path: str | Path, skips: SkipLog | None = None, strict: bool = False
) -> Iterator[Review]:
    """Reviews of either release (both are strict JSON lines)."""
    path = Path(path)
    skips = skips if skips is not None else SkipLog()
    for lineno, line in _lines(path, skips, strict):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            _fail(strict, skips, "malformed review line", path, lineno, str(e)[:80])
            continue
        if not isinstance(obj, dict):
            _fail(strict, skips, "review line is not an object", path, lineno, type(obj).__name__)
            continue
        user, asin, t = obj.get("reviewerID"), obj.get("asin"), obj.get("unixReviewTime")
        if not isinstance(user, str) or not user or not isinstance(asin, str) or not asin:
            _fail(strict, skips, "review without reviewerID/asin", path, lineno, line[:60])
            continue
        try:
            t = int(t)
        except (TypeError, ValueError):
            _fail(strict, skips, "review without unixReviewTime", path, lineno, repr(t)[:40])
            continue
        parts = [obj.get("summary"), obj.get("reviewText")]
        text = " ".join(p for p in parts if isinstance(p, str) and p.strip())
        rating = obj.get("overall")
        yield Review(
            user=user,
            asin=asin,
            time=t,
            text=text,
            rating=float(rating) if isinstance(rating, int | float) else None,
            line=lineno,
        )


def _as_str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v] if v.strip() else []
    if isinstance(v, list | tuple):
        return [x for x in v if isinstance(x, str) and x.strip()]
    return []


def _parse_meta_obj(obj: dict, fmt: Format) -> tuple[str, tuple, str, tuple[str, ...]]:
    if fmt == "amazon2014":
        cats = obj.get("categories") or []
        categories = tuple(tuple(_as_str_list(p)) for p in cats if isinstance(p, list | tuple))
        urls = tuple(_as_str_list(obj.get("imUrl")))
    else:
        categories = (tuple(_as_str_list(obj.get("category"))),)
        urls = tuple(_as_str_list(obj.get("imageURLHighRes")) + _as_str_list(obj.get("imageURL")))
    title = obj.get("title") if isinstance(obj.get("title"), str) else ""
    brand = obj.get("brand") if isinstance(obj.get("brand"), str) else ""
    return title.strip(), categories, brand.strip(), urls


def iter_meta(
    path: str | Path,
    fmt: Format,
    asins: Iterable[str] | None = None,
    skips: SkipLog | None = None,
    strict: bool = False,
) -> Iterator[ItemMeta]:
    """Metadata records, streamed; with ``asins`` only those items are parsed in full.

    The 2014 file holds Python literals (``ast.literal_eval``); the 2018 file JSON.
    Lines for items outside ``asins`` are skipped cheaply without being counted
    (they are simply not part of the 5-core set).
    """
    path = Path(path)
    skips = skips if skips is not None else SkipLog()
    keep = set(asins) if asins is not None else None
    for lineno, line in _lines(path, skips, strict):
        if keep is not None:
            # cheap pre-filter on the literal "asin": "..." pair; full parse when absent
            m = _ASIN_RE.search(line)
            if m is not None and m.group(1) not in keep:
                continue
        try:
            obj = ast.literal_eval(line) if fmt == "amazon2014" else json.loads(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            detail = type(e).__name__ + (f": {e}"[:80] if isinstance(e, SyntaxError) else "")
            _fail(strict, skips, "malformed meta line", path, lineno, detail)
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("asin"), str):
            _fail(strict, skips, "meta line without asin", path, lineno, line[:60])
            continue
        if keep is not None and obj["asin"] not in keep:
            continue
        title, categories, brand, urls = _parse_meta_obj(obj, fmt)
        yield ItemMeta(obj["asin"], title, categories, brand, urls, lineno)


def detect_format(raw: str | Path, category: str) -> tuple[Format, Path, Path]:
    """Find the review and meta files of ``category`` in ``raw`` and tell the release.

    2014: ``reviews_<Cat>_5.json.gz`` + ``meta_<Cat>.json.gz``;
    2018: ``<Cat>_5.json.gz`` + ``meta_<Cat>.json.gz``. Plain ``.json`` works too.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(f"{raw}: raw data folder not found")
    for fmt, review_name in (("amazon2014", f"reviews_{category}_5"), ("amazon2018", f"{category}_5")):
        for ext in (".json.gz", ".json"):
            reviews = raw / f"{review_name}{ext}"
            if reviews.is_file():
                for mext in (".json.gz", ".json"):
                    meta = raw / f"meta_{category}{mext}"
                    if meta.is_file():
                        return fmt, reviews, meta  # type: ignore[return-value]
                raise DataError(f"{raw}: found {reviews.name} but no meta_{category}.json.gz")
    present = sorted(p.name for p in raw.iterdir() if p.name.endswith((".json.gz", ".json")))
    raise DataError(
        f"{raw}: no review file for category {category!r} "
        f"(expected reviews_{category}_5.json.gz or {category}_5.json.gz); found: {present or 'nothing'}"
    )


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def image_filename(asin: str) -> str:
    """The file name of an item's image inside ``images/``; never escapes that folder.

    Ordinary ASINs (``B000ABC123``) map to ``<asin>.jpg``. Anything else (path
    separators, ``..``, odd characters, very long) maps to a hash-based name.
    """
    import hashlib

    if _SAFE_NAME.match(asin) and ".." not in asin:
        return f"{asin}.jpg"
    return f"_{hashlib.sha256(asin.encode()).hexdigest()[:32]}.jpg"
