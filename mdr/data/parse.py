"""Parse the Amazon review and metadata files (2014 and 2018 releases) into plain records.

- 2014 reviews ``reviews_<Cat>_5.json.gz``: strict JSON, one object a line.
- 2014 meta ``meta_<Cat>.json.gz``: one *Python literal* dict a line, read with
  :func:`ast.literal_eval` (never ``eval``: DIN's preprocessing did, which runs
  whatever a line contains).
- 2018 ``<Cat>_5.json.gz`` and ``meta_<Cat>.json.gz``: strict JSON lines;
  meta carries ``category`` (a list), ``imageURL``/``imageURLHighRes`` (lists);
  reviews may lack ``reviewText`` and repeat.

Any file may be plain text instead of gzip (the content decides, not the name);
a UTF-8 byte-order mark is ignored and undecodable bytes become U+FFFD.
:func:`find_inputs` finds the release and the category from the files present.

What bad input gets (``strict`` / ``lenient`` are the callers' options):

- **Line-level damage** (a line that is not JSON / not a Python literal, or that
  its parser refuses for any reason: an integer literal longer than Python's
  int-string limit of 4300 digits, nesting deeper than the recursion limit, a
  line too large to parse, an unhashable dict key; a line that is not an object,
  without ``reviewerID``/``asin``, or whose ``unixReviewTime`` is not a finite
  non-negative integer below 2**53: ``true``, ``-5``, ``Infinity``, ``NaN``,
  ``1e30``, ``"abc"``, ``1400000000.5``): a counted skip naming ``file:line`` and
  why (:class:`SkipLog`); ``strict=True`` raises :class:`DataError` at the first
  one. A string of decimal digits and an integral float are read as the integer.
  Fields the records do not need (``price``, ``vote``, ``helpful``...) are never
  converted, so odd values there cost nothing; a rating that is not a finite
  number (``NaN``, ``1e400``, an integer too large for a float) is read as None.
- **Text that cannot be written back**: every string a record keeps (ids,
  review text, title, brand, categories, image URLs) is made writable as UTF-8
  (:func:`writable`): a surrogate pair (as Python 2 wrote non-BMP characters in
  the 2014 metadata, ``'\\ud83d\\ude00'``) becomes its character, and a lone
  surrogate (JSON ``"\\ud800"``) becomes U+FFFD. Each field so repaired is
  counted in the skips report (:data:`REPAIRED`, the record is kept), so a
  prepare never fails at the end when it writes the text out.
- **Messages are bounded**: a value of the input quoted in a message or a skip
  example is cut to :data:`MAX_SHOWN` characters (:func:`clip`, :func:`shown`),
  whatever its size (a 10 MB line, a huge id or integer).
- **Whole-file damage**: a gzip stream that is truncated, corrupt or not gzip,
  or a file in which MORE THAN HALF (:data:`MALFORMED_LIMIT`) of the examined
  non-empty lines are malformed (e.g. a metadata file of the other release), raises
  :class:`DataError` naming the file and what is wrong. ``lenient=True`` turns
  both into counted skips instead (the records read so far are kept). For a
  metadata file read with ``asins``, the examined lines are those parsed in full
  (lines of other items are passed over cheaply and not counted).
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import math
import re
import reprlib
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# the paper's short names for its three Amazon categories
CATEGORY_ALIASES: dict[str, str] = {
    "cloth": "Clothing_Shoes_and_Jewelry",
    "toys": "Toys_and_Games",
    "office": "Office_Products",
}

_ASIN_RE = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")

Format = Literal["amazon2014", "amazon2018"]
YEARS: dict[int, Format] = {2014: "amazon2014", 2018: "amazon2018"}
MALFORMED_LIMIT = 0.5  # more than this share of malformed lines: the file as a whole is damaged
MAX_TIME = 2**53  # timestamps at or above this are not seconds (nor milliseconds) of any date
MAX_SHOWN = 200  # characters of an input value quoted in a message, at most
REPAIRED = "text field repaired (characters not writable as UTF-8 replaced by U+FFFD)"
_GZIP_MAGIC = b"\x1f\x8b"
_SURROGATE = re.compile("[\ud800-\udfff]")
# what json.loads / ast.literal_eval raise for a line they refuse (JSONDecodeError,
# SyntaxError, the int-string limit's ValueError, RecursionError, MemoryError, an
# unhashable key's TypeError, a literal whose value overflows); nothing else
_PARSE_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, OverflowError)
_HINT_MAX_LINE = 1 << 20  # longer malformed lines are not parsed a second time for the hint


class DataError(ValueError):
    """Bad input that cannot be skipped: names the file (and line)."""


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters; a cut one ends with "..." and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, MAX_SHOWN, MAX_SHOWN, 60


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """A bounded ``repr`` of an input value for a message: at most about ``limit``
    characters, and it never raises (an integer too long for ``repr``, a structure
    nested too deeply)."""
    if isinstance(value, str):
        text = repr(value[:limit])  # its quotes, and escapes, may make it longer: cut again
        cut = len(value) > limit or len(text) > limit + 2
        return text[: limit + 2] + (f"... ({len(value)} characters)" if cut else "")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 600:
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    try:
        return clip(_REPR.repr(value), limit)
    except (ValueError, RecursionError, MemoryError, TypeError):
        return f"<{type(value).__name__}>"


def writable(text: str) -> str:
    """``text`` as it can be written as UTF-8: surrogate pairs joined into their
    character, every lone surrogate replaced by U+FFFD (the only code points UTF-8
    cannot encode); anything else unchanged."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


@dataclass
class SkipLog:
    """Counts every skipped record by reason and keeps a few examples (file:line why)."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, reason: str, where: str = "", detail: str = "") -> None:
        """Count one ``reason``; the example names ``where`` and ``detail``, each cut to
        :data:`MAX_SHOWN` characters."""
        self.counts[reason] += 1
        if len(self.examples) < self.max_examples:
            detail = writable(clip(detail))
            self.examples.append(
                f"{writable(clip(where))}: {reason}" + (f" ({detail})" if detail else "")
            )

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
    """Open a gzip or plain text file for reading (the first bytes decide), BOM ignored.

    A missing file is a :class:`DataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC or (path.suffix == ".gz" and magic):
        # a .gz name without the gzip magic fails on the first read: "not a gzip file"
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace")
    return path.open("r", encoding="utf-8-sig", errors="replace")


def _stream_problem(e: BaseException, n_lines: int) -> str:
    """What a read error says about the file, for one line of message."""
    if isinstance(e, EOFError):
        return f"truncated gzip stream after {n_lines} lines"
    if isinstance(e, gzip.BadGzipFile) and "Not a gzipped file" in str(e):
        return "not a gzip file"
    if isinstance(e, gzip.BadGzipFile | zlib.error):
        return f"corrupt gzip stream after {n_lines} lines ({e})"
    return f"read error after {n_lines} lines ({e})"


@dataclass
class _Damage:
    """Per-file tally for the whole-file rule: lines examined, lines malformed."""

    path: Path
    lenient: bool
    examined: int = 0
    malformed: int = 0
    first: str = ""
    other_release: int = 0  # malformed lines that parse in the other release's format

    def bad(self, lineno: int, reason: str) -> None:
        self.malformed += 1
        if not self.first:
            self.first = f"line {lineno}: {reason}"

    def check(self, hint: str = "") -> None:
        """Raise when more than :data:`MALFORMED_LIMIT` of the examined lines were malformed."""
        if self.lenient or self.malformed <= MALFORMED_LIMIT * self.examined:
            return
        hint = f" ({hint})" if hint and 2 * self.other_release > self.malformed else ""
        raise DataError(
            f"{self.path}: {self.malformed} of {self.examined} non-empty lines are malformed "
            f"(more than half; first {self.first}){hint}: the file is damaged or not in the "
            "expected format; --lenient (lenient=True) skips such lines and goes on"
        )


def _lines(path: Path, skips: SkipLog, strict: bool, lenient: bool) -> Iterator[tuple[int, str]]:
    fh = open_text(path)
    n = 0
    try:
        with fh:
            for n, line in enumerate(fh, 1):  # n: lines read, for the message
                line = line.strip()
                if line:
                    yield n, line
    except (OSError, EOFError, zlib.error) as e:  # truncated, corrupt or not gzip
        what = _stream_problem(e, n)
        if strict or not lenient:
            raise DataError(
                f"{path}: {what}; --lenient (lenient=True) keeps the lines read before the damage"
            ) from e
        skips.add("file truncated or corrupt", path.name, what)


def _fail(
    strict: bool, skips: SkipLog, reason: str, path: Path, lineno: int, detail: str, damage: _Damage
) -> None:
    if strict:
        raise DataError(f"{path}:{lineno}: {reason} ({clip(detail)})")
    skips.add(reason, f"{path.name}:{lineno}", detail)
    damage.bad(lineno, reason)


def _refused(e: BaseException, usual: str) -> str:
    """Why a parser refused a line (the skip's detail): ``usual``, or what Python's
    int-string limit means in a few words."""
    if isinstance(e, ValueError | SyntaxError) and "integer string conversion" in str(e):
        return "an integer literal of more than 4300 digits"
    return usual or type(e).__name__


def _repair(skips: SkipLog, where: str, **fields: str) -> dict[str, str]:
    """``fields`` made :func:`writable`; each field changed is counted as :data:`REPAIRED`."""
    out = {}
    for name, value in fields.items():
        fixed = writable(value)
        if fixed is not value:  # writable returns its argument when nothing needs a repair
            skips.add(REPAIRED, where, name)
        out[name] = fixed
    return out


def _repair_all(skips: SkipLog, where: str, name: str, values: Iterable[str]) -> tuple[str, ...]:
    """Each of ``values`` made :func:`writable` (one count per field with a repair)."""
    values = tuple(values)
    fixed = tuple(writable(v) for v in values)
    if fixed != values:
        skips.add(REPAIRED, where, name)
    return fixed


def _rating(value: Any) -> float | None:
    """A star rating as a finite float, else None (never raises: a huge integer, a string,
    NaN are all "no rating")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not -(2**53) <= value <= 2**53:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def parse_time(value: Any) -> int | None:
    """A review time in seconds: a finite non-negative integer below :data:`MAX_TIME`
    (an integral float or a string of decimal digits is read as one); None otherwise."""
    if isinstance(value, bool):  # json true/false: int subclasses, never times
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    elif isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 20:
            return None
        value = int(value)
    if not isinstance(value, int) or not 0 <= value < MAX_TIME:
        return None
    return value


def iter_reviews(
    path: str | Path, skips: SkipLog | None = None, strict: bool = False, lenient: bool = False
) -> Iterator[Review]:
    """Reviews of either release (both are strict JSON lines); see the module docstring
    for what a damaged line or file gets."""
    path = Path(path)
    skips = skips if skips is not None else SkipLog()
    damage = _Damage(path, lenient or strict)
    for lineno, line in _lines(path, skips, strict, lenient):
        damage.examined += 1
        try:
            obj = json.loads(line)
        except _PARSE_ERRORS as e:  # whatever the parser refuses: never a traceback
            _fail(
                strict,
                skips,
                "malformed review line",
                path,
                lineno,
                _refused(e, str(e)[:80]),
                damage,
            )
            continue
        if not isinstance(obj, dict):
            _fail(
                strict,
                skips,
                "review line is not an object",
                path,
                lineno,
                type(obj).__name__,
                damage,
            )
            continue
        user, asin, raw_t = obj.get("reviewerID"), obj.get("asin"), obj.get("unixReviewTime")
        if not isinstance(user, str) or not user or not isinstance(asin, str) or not asin:
            _fail(strict, skips, "review without reviewerID/asin", path, lineno, line[:60], damage)
            continue
        t = parse_time(raw_t)
        if t is None:
            reason = (
                "review without unixReviewTime"
                if raw_t is None
                else "review with an invalid unixReviewTime (not a finite integer >= 0)"
            )
            _fail(strict, skips, reason, path, lineno, shown(raw_t, 40), damage)
            continue
        parts = [obj.get("summary"), obj.get("reviewText")]
        text = " ".join(p for p in parts if isinstance(p, str) and p.strip())
        fixed = _repair(skips, f"{path.name}:{lineno}", reviewerID=user, asin=asin, text=text)
        yield Review(
            user=fixed["reviewerID"],
            asin=fixed["asin"],
            time=t,
            text=fixed["text"],
            rating=_rating(obj.get("overall")),
            line=lineno,
        )
    damage.check()


def _as_str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v] if v.strip() else []
    if isinstance(v, list | tuple):
        return [x for x in v if isinstance(x, str) and x.strip()]
    return []


def _parse_meta_obj(obj: dict, fmt: Format) -> tuple[str, tuple, str, tuple[str, ...]]:
    if fmt == "amazon2014":
        cats = obj.get("categories")
        cats = cats if isinstance(cats, list | tuple) else ()  # a number, a dict: no categories
        categories = tuple(tuple(_as_str_list(p)) for p in cats if isinstance(p, list | tuple))
        urls = tuple(_as_str_list(obj.get("imUrl")))
    else:
        categories = (tuple(_as_str_list(obj.get("category"))),)
        urls = tuple(_as_str_list(obj.get("imageURLHighRes")) + _as_str_list(obj.get("imageURL")))
    title = obj.get("title") if isinstance(obj.get("title"), str) else ""
    brand = obj.get("brand") if isinstance(obj.get("brand"), str) else ""
    return title.strip(), categories, brand.strip(), urls


def _parses_as(line: str, fmt: Format) -> bool:
    """Whether ``line`` is a dict in ``fmt``'s syntax (for the wrong-release hint)."""
    if len(line) > _HINT_MAX_LINE:
        return False
    try:
        obj = ast.literal_eval(line) if fmt == "amazon2014" else json.loads(line)
    except _PARSE_ERRORS:
        return False
    return isinstance(obj, dict)


def iter_meta(
    path: str | Path,
    fmt: Format,
    asins: Iterable[str] | None = None,
    skips: SkipLog | None = None,
    strict: bool = False,
    lenient: bool = False,
) -> Iterator[ItemMeta]:
    """Metadata records, streamed; with ``asins`` only those items are parsed in full.

    The 2014 file holds Python literals (``ast.literal_eval``); the 2018 file JSON.
    Lines for items outside ``asins`` are skipped cheaply without being counted
    (they are simply not part of the 5-core set). Damaged lines and files: see the
    module docstring; a file of the other release fails the whole-file rule, and the
    error says so.
    """
    path = Path(path)
    skips = skips if skips is not None else SkipLog()
    keep = set(asins) if asins is not None else None
    damage = _Damage(path, lenient or strict)
    other: Format = "amazon2018" if fmt == "amazon2014" else "amazon2014"
    for lineno, line in _lines(path, skips, strict, lenient):
        if keep is not None:
            # cheap pre-filter on the literal "asin": "..." pair; full parse when absent
            # (an asin written with escapes is parsed in full: its text is not the asin)
            m = _ASIN_RE.search(line)
            if m is not None and "\\" not in m.group(1) and m.group(1) not in keep:
                continue
        damage.examined += 1
        try:
            obj = ast.literal_eval(line) if fmt == "amazon2014" else json.loads(line)
        except _PARSE_ERRORS as e:  # whatever the parser refuses: never a traceback
            detail = _refused(
                e, type(e).__name__ + (f": {e}"[:80] if isinstance(e, SyntaxError) else "")
            )
            if _parses_as(line, other):
                damage.other_release += 1
            _fail(strict, skips, "malformed meta line", path, lineno, detail, damage)
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("asin"), str):
            _fail(strict, skips, "meta line without asin", path, lineno, line[:60], damage)
            continue
        asin = writable(obj["asin"])
        if keep is not None and asin not in keep:
            continue
        title, categories, brand, urls = _parse_meta_obj(obj, fmt)
        where = f"{path.name}:{lineno}"
        fixed = _repair(skips, where, asin=obj["asin"], title=title, brand=brand)
        categories = tuple(_repair_all(skips, where, "categories", c) for c in categories)
        urls = _repair_all(skips, where, "image URLs", urls)
        yield ItemMeta(asin, fixed["title"], categories, fixed["brand"], urls, lineno)
    syntax = {"amazon2014": "Python literals", "amazon2018": "JSON"}
    damage.check(
        f"they are {syntax[other]}: metadata of the {other[-4:]} release? "
        f"{fmt[-4:]} metadata is {syntax[fmt]}"
    )


# --------------------------------------------------------------------------- finding the files

_CATEGORY = r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"
SAFE_CATEGORY = re.compile(rf"^{_CATEGORY}$")
_REVIEWS_2014 = re.compile(rf"^reviews_({_CATEGORY})_5\.json(?:\.gz)?$")
_REVIEWS_2018 = re.compile(rf"^({_CATEGORY})_5\.json(?:\.gz)?$")
_EXTS = (".json.gz", ".json")  # the compressed name first: it wins when both exist


@dataclass(frozen=True)
class RawInputs:
    """The files of one category of one release in a raw folder."""

    fmt: Format
    year: int
    category: str
    reviews: Path
    meta: Path | None  # None: no metadata file, allowed by the caller


def review_names(category: str, year: int) -> list[str]:
    """The review file names of ``category`` in the ``year`` release, preferred first."""
    stem = f"reviews_{category}_5" if year == 2014 else f"{category}_5"
    return [stem + e for e in _EXTS]


def meta_names(category: str) -> list[str]:
    """The metadata file names of ``category`` (the same in both releases), preferred first."""
    return [f"meta_{category}{e}" for e in _EXTS]


def _present_reviews(names: Iterable[str]) -> dict[tuple[int, str], str]:
    """(year, category) -> review file name, for every review file among ``names``.

    ``reviews_<Cat>_5.json*`` is always the 2014 file of ``<Cat>``, never a 2018
    category called ``reviews_<Cat>`` (pass ``year=2018`` and the category for that).
    """
    found: dict[tuple[int, str], str] = {}
    for name in sorted(names, key=lambda n: (not n.endswith(".gz"), n)):
        m = _REVIEWS_2014.match(name)
        key = (2014, m.group(1)) if m else None
        if key is None and (m := _REVIEWS_2018.match(name)) and not name.startswith("meta_"):
            key = (2018, m.group(1))
        if key is not None:
            found.setdefault(key, name)
    return found


def find_inputs(
    raw: str | Path,
    category: str | None = None,
    year: int | None = None,
    allow_missing_meta: bool = False,
) -> RawInputs:
    """The release, category, review and metadata files of the Amazon-format folder ``raw``.

    Release and category come from the files present: 2014
    ``reviews_<Cat>_5.json(.gz)`` + ``meta_<Cat>.json(.gz)``, 2018
    ``<Cat>_5.json(.gz)`` + ``meta_<Cat>.json(.gz)``. ``category`` and ``year``
    choose when several are present. A category is any name of letters, digits,
    ``_`` and ``-``, known or not; the catalog aliases (``cloth``, ``toys``,
    ``office``) name the paper's categories, and a name matching a present category
    but for letter case is accepted. A missing metadata file is an error unless
    ``allow_missing_meta``. Every error lists exactly the files looked for.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(
            f"{raw}: raw data folder not found"
            if not raw.exists()
            else f"{raw}: not a folder (give the folder holding the review files)"
        )
    if year is not None and year not in YEARS:
        raise DataError(f"unknown release year {year!r}: expected 2014 or 2018")
    if category is not None and not SAFE_CATEGORY.match(category):
        raise DataError(
            f"category {category!r}: not a valid name (letters, digits, '_' and "
            "'-', at most 100 characters)"
        )
    files = sorted(p.name for p in raw.iterdir() if p.is_file() and not p.name.startswith("."))
    found = _present_reviews(files)
    years = [year] if year is not None else sorted(YEARS)
    cands = {k: v for k, v in found.items() if k[0] in years}
    if category is not None:
        cands = _match_category(cands, category)
        if not cands:
            names = dict.fromkeys([category, _alias(category)])  # the alias's target too
            looked = [n for c in names for y in years for n in review_names(c, y)]
            others = sorted({f"{c} ({y})" for y, c in found}) or ["none"]
            raise DataError(
                f"{raw}: no review file for category {category!r}: looked for "
                f"{', '.join(looked)}; review files present for: {', '.join(others)}"
            )
    if not cands:
        shown = ", ".join(files[:10]) + (", ..." if len(files) > 10 else "") or "no files"
        raise DataError(
            f"{raw}: no Amazon review file: looked for reviews_<Cat>_5.json.gz / .json (2014) "
            f"and <Cat>_5.json.gz / .json (2018)"
            + (f" of the {year} release" if year else "")
            + f"; found: {shown}"
        )
    if len(cands) > 1:
        cats = {c for _, c in cands}
        listed = ", ".join(f"{c} ({y}: {cands[(y, c)]})" for y, c in sorted(cands))
        flag = "--category" if len(cats) > 1 else "--year"
        raise DataError(f"{raw}: holds several review files ({listed}); choose one with {flag}")
    (y, cat), review_file = next(iter(cands.items()))
    meta = next((raw / n for n in meta_names(cat) if (raw / n).is_file()), None)
    if meta is None and not allow_missing_meta:
        raise DataError(
            f"{raw}: found {review_file} but no metadata file: looked for "
            f"{', '.join(meta_names(cat))}; pass --allow-missing-meta (allow_missing_meta=True) "
            "to prepare without metadata (items then have no title and category <unknown>)"
        )
    return RawInputs(YEARS[y], y, cat, raw / review_file, meta)


def _alias(category: str) -> str:
    """The full name for an alias (``cloth`` -> ``Clothing_Shoes_and_Jewelry``)."""
    return CATEGORY_ALIASES.get(category.lower(), category)


def _match_category(cands: dict[tuple[int, str], str], category: str) -> dict[tuple[int, str], str]:
    """The candidates named ``category``: exactly, else by alias, else ignoring case."""
    for name in (category, _alias(category)):
        hit = {k: v for k, v in cands.items() if k[1] == name}
        if hit:
            return hit
    return {k: v for k, v in cands.items() if k[1].lower() == category.lower()}


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
