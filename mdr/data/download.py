"""Download an Amazon category (2014 or 2018 release): 5-core reviews, metadata, item images.

Sources (``base_url`` replaces the whole prefix: both files are then fetched
from ``<base_url>/<filename>``, e.g. a local mirror):

- 2014 (McAuley et al., the paper's data)::

    http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_<Cat>_5.json.gz
    http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_<Cat>.json.gz

- 2018 (Ni, Li, McAuley)::

    https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/<Cat>_5.json.gz
    https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2/meta_<Cat>.json.gz

``<Cat>`` is the release's category name (``Clothing_Shoes_and_Jewelry``); the
paper's short names ``cloth``, ``toys`` and ``office`` are accepted too
(:data:`CATEGORY_ALIASES`, :func:`resolve_category`).

How files are fetched: streamed into ``<name>.part``; an existing ``.part`` is
resumed with an HTTP ``Range`` request (a server that ignores Range answers
200 and the download restarts); the finished file is checked by reading the
whole gzip stream (a truncated or corrupt file is fetched again) and only then
renamed into place, so a file under its final name is always complete and is
skipped on a re-run. Connection errors, timeouts, 5xx/429 answers and bodies
shorter than their ``Content-Length`` are retried with exponential backoff
(``backoff * 2**attempt`` seconds); other 4xx answers fail at once.

Images: the reviews file gives the 5-core item set; the metadata file is
streamed and only those items are kept. Each item's first image URL (2014
``imUrl``; 2018 first of ``imageURLHighRes``/``imageURL``) is fetched by a
thread pool into ``<out>/images/<image_filename(asin)>`` (an ASIN that is not a
safe file name gets a hashed name, so nothing escapes ``out``), decoded with
PIL before it is kept, and skipped on a re-run when already present and
valid. ``<out>/images_report.json`` lists every item whose image could not be
had, and why.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from mdr import io as mio
from mdr.data.parse import (
    DataError,
    Format,
    ItemMeta,
    SkipLog,
    image_filename,
    iter_meta,
    iter_reviews,
)

if TYPE_CHECKING:
    import requests

T = TypeVar("T")

USER_AGENT = "mdr-companion/0.1 (+research; Amazon review data downloader)"
CHUNK = 1 << 20  # bytes per streamed chunk
MAX_IMAGE_BYTES = 32 << 20  # a product photo larger than this is refused
MAX_BACKOFF_S = 60.0

URLS_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
URLS_2018_REVIEWS = "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall"
URLS_2018_META = "https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2"

CATEGORY_ALIASES: dict[str, str] = {
    "cloth": "Clothing_Shoes_and_Jewelry",
    "toys": "Toys_and_Games",
    "office": "Office_Products",
}

# the categories each release publishes as 5-core files
CATEGORIES_2014: tuple[str, ...] = (
    "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books",
    "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry",
    "Digital_Music", "Electronics", "Grocery_and_Gourmet_Food", "Health_and_Personal_Care",
    "Home_and_Kitchen", "Kindle_Store", "Movies_and_TV", "Musical_Instruments",
    "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Sports_and_Outdoors",
    "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)  # fmt: skip
CATEGORIES_2018: tuple[str, ...] = (
    "AMAZON_FASHION", "All_Beauty", "Appliances", "Arts_Crafts_and_Sewing", "Automotive",
    "Books", "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry",
    "Digital_Music", "Electronics", "Gift_Cards", "Grocery_and_Gourmet_Food",
    "Home_and_Kitchen", "Industrial_and_Scientific", "Kindle_Store", "Luxury_Beauty",
    "Magazine_Subscriptions", "Movies_and_TV", "Musical_Instruments", "Office_Products",
    "Patio_Lawn_and_Garden", "Pet_Supplies", "Prime_Pantry", "Software",
    "Sports_and_Outdoors", "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)  # fmt: skip
_KNOWN = {2014: CATEGORIES_2014, 2018: CATEGORIES_2018}
_SAFE_CATEGORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,79}$")
_FORMAT: dict[int, Format] = {2014: "amazon2014", 2018: "amazon2018"}


class DownloadError(DataError):
    """A file could not be downloaded (names the URL and the last error)."""


# -- categories and URLs -------------------------------------------------------------------


def resolve_category(name: str, year: int = 2014, allow_custom: bool = False) -> str:
    """The release's category name for ``name`` (an alias, or any case of a known name).

    With ``allow_custom`` (a mirror given by ``base_url``), an unknown name is
    accepted when it is a plain ``[A-Za-z0-9_]`` token. Anything else raises
    :class:`DataError` listing the known categories.
    """
    if year not in _KNOWN:
        raise DataError(f"unknown release year {year!r}: expected 2014 or 2018")
    key = name.strip()
    known = _KNOWN[year]
    if key.lower() in CATEGORY_ALIASES:
        return CATEGORY_ALIASES[key.lower()]
    by_lower = {c.lower(): c for c in known}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    if allow_custom and _SAFE_CATEGORY.match(key):
        return key
    aliases = ", ".join(f"{a} ({c})" for a, c in CATEGORY_ALIASES.items())
    raise DataError(
        f"unknown category {name!r} for the {year} release. Aliases: {aliases}. "
        f"Known categories: {', '.join(known)}"
    )


def source_files(
    category: str, year: int = 2014, base_url: str | None = None
) -> dict[str, tuple[str, str]]:
    """``{"reviews": (filename, url), "meta": (filename, url)}`` for a resolved category."""
    if year == 2014:
        names = {"reviews": f"reviews_{category}_5.json.gz", "meta": f"meta_{category}.json.gz"}
        prefixes = {"reviews": URLS_2014, "meta": URLS_2014}
    elif year == 2018:
        names = {"reviews": f"{category}_5.json.gz", "meta": f"meta_{category}.json.gz"}
        prefixes = {"reviews": URLS_2018_REVIEWS, "meta": URLS_2018_META}
    else:
        raise DataError(f"unknown release year {year!r}: expected 2014 or 2018")
    if base_url is not None:
        prefixes = {k: base_url for k in prefixes}
    return {k: (names[k], f"{prefixes[k].rstrip('/')}/{names[k]}") for k in names}


# -- HTTP plumbing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts, sleeping ``backoff * 2**attempt`` seconds between them."""

    retries: int = 4
    backoff: float = 1.0
    timeout: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.backoff * (2**attempt), MAX_BACKOFF_S)


class _Transient(Exception):
    """A failure worth retrying (connection, timeout, 5xx, short body, corrupt transfer)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class _Permanent(Exception):
    """A failure that retrying will not fix (404, refused URL, not an image)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def make_session(pool: int = 8) -> requests.Session:
    """A requests session with this project's User-Agent and a connection pool of ``pool``."""
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _classify(exc: Exception) -> Exception:
    """Map a requests exception onto _Transient (timeouts, broken connections) or _Permanent."""
    import requests

    text = str(exc)[:200]
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return _Transient("timeout", text)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.ConnectionError):
        return _Transient("connection error", text)
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema):  # fmt: skip
        return _Permanent("bad URL", text)
    return _Transient("request error", text)


def _check_status(resp: requests.Response, url: str) -> None:
    code = resp.status_code
    if code >= 500 or code in (408, 429):
        raise _Transient(f"HTTP {code}", url)
    if code >= 400:
        raise _Permanent(f"HTTP {code}", url)


def _with_retries(fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Call ``fn`` until it succeeds, retrying :class:`_Transient` failures with backoff."""
    for attempt in range(policy.retries + 1):
        try:
            return fn()
        except _Transient:
            if attempt == policy.retries:
                raise
            time.sleep(policy.delay(attempt))
    raise AssertionError("unreachable")


def _check_url(url: str) -> None:
    if urlsplit(url).scheme not in ("http", "https"):
        raise _Permanent("bad URL", f"only http(s) is fetched: {url[:100]}")


# -- big files: resumable, verified, atomic ---------------------------------------------------


def gzip_is_complete(path: str | Path) -> bool:
    """True when ``path`` is a gzip stream that decompresses to its end without error."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error):
        return False
    return True


def _parse_content_range(value: str | None) -> int | None:
    """Start offset of a ``Content-Range: bytes S-E/T`` header (None when absent or odd)."""
    m = re.match(r"^\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*$", value or "")
    return int(m.group(1)) if m else None


def _stream_to_part(session: requests.Session, url: str, part: Path, timeout: float,
                    bar: Any) -> str:
    """One attempt: append to (or restart) ``part``. Returns "fresh", "resumed" or "complete".

    The raw bytes are written as sent (``decode_content=False``): a server that
    labels a ``.gz`` file ``Content-Encoding: gzip`` must not get it unpacked.
    """
    import requests
    import urllib3

    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with session.get(url, headers=headers, stream=True, timeout=timeout) as resp:
            if resp.status_code == 416 and have:
                return "complete"  # the part already holds every byte; verification decides
            _check_status(resp, url)
            resumed = resp.status_code == 206 and _parse_content_range(
                resp.headers.get("Content-Range")) == have
            if not resumed:
                have = 0  # the server ignored Range (200) or answered an odd range: restart
            expected = _content_length(resp)
            received = 0
            if bar is not None:
                bar.reset(total=None if expected is None else have + expected)
                bar.update(have)
            with part.open("ab" if resumed else "wb") as fh:
                for chunk in resp.raw.stream(CHUNK, decode_content=False):
                    fh.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
    except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
        raise _classify(e) from e
    if expected is not None and received != expected:
        raise _Transient("truncated body", f"{received} of {expected} bytes from {url}")
    return "resumed" if resumed else "fresh"


def _content_length(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def fetch_file(session: requests.Session, url: str, dest: str | Path,
               policy: RetryPolicy = RetryPolicy(), progress: bool = False) -> dict[str, Any]:
    """Download ``url`` to ``dest`` (resumable, gzip-verified, atomic); skip a complete ``dest``.

    Returns ``{"file", "url", "status": "skipped"|"fetched", "resumed", "attempts", "bytes"}``;
    raises :class:`DownloadError` after the retries are spent or on a permanent failure.
    """
    dest = Path(dest)
    info: dict[str, Any] = {"file": dest.name, "url": url, "status": "skipped", "resumed": False,
                            "attempts": 0}
    if dest.is_file() and gzip_is_complete(dest):
        info["bytes"] = dest.stat().st_size
        return info
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    bar = _bar(progress, desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024)

    def attempt() -> None:
        info["attempts"] += 1
        how = _stream_to_part(session, url, part, policy.timeout, bar)
        info["resumed"] = info["resumed"] or how in ("resumed", "complete")
        if not gzip_is_complete(part):
            part.unlink()  # corrupt, not merely short: the next attempt starts afresh
            raise _Transient("corrupt gzip", f"{url} does not decompress to its end")

    try:
        _check_url(url)
        _with_retries(attempt, policy)
    except (_Transient, _Permanent) as e:
        hint = (" (is the category right for this release, or the base URL?)"
                if "HTTP 404" in str(e) else "")
        tries = f"after {info['attempts']} attempt(s)" if info["attempts"] else "without trying"
        raise DownloadError(f"could not download {url} {tries}: {e}{hint}") from e
    finally:
        if bar is not None:
            bar.close()
    os.replace(part, dest)
    info.update(status="fetched", bytes=dest.stat().st_size)
    return info


def _bar(enabled: bool, **kwargs: Any) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(**kwargs)


# -- items and images -------------------------------------------------------------------------


def read_item_set(reviews: str | Path, skips: SkipLog) -> tuple[set[str], int, int]:
    """The items, the number of users and of reviews in a (5-core) reviews file."""
    items: set[str] = set()
    users: set[str] = set()
    n = 0
    for r in iter_reviews(reviews, skips):
        items.add(r.asin)
        users.add(r.user)
        n += 1
    return items, len(users), n


def load_item_meta(meta: str | Path, fmt: Format, asins: Iterable[str],
                   skips: SkipLog) -> dict[str, ItemMeta]:
    """Stream the metadata file, keeping only ``asins`` (first record of a repeated asin wins)."""
    kept: dict[str, ItemMeta] = {}
    for m in iter_meta(meta, fmt, asins=asins, skips=skips):
        kept.setdefault(m.asin, m)
    return kept


def image_problem(data: bytes) -> str | None:
    """None when ``data`` decodes fully as an image; else a short description."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
    except Exception as e:  # PIL raises many types for bad input; all mean "not usable"
        return f"{type(e).__name__}: {str(e)[:120]}"
    return None


class _Sessions:
    """One requests session per worker thread (sessions are not guaranteed thread-safe)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = make_session(pool=2)
            with self._lock:
                self._all.append(s)
        return s

    def close(self) -> None:
        with self._lock:
            for s in self._all:
                s.close()
            self._all.clear()


def _get_image_bytes(session: requests.Session, url: str, timeout: float) -> bytes:
    """One attempt at an image: status checked, size capped, length checked."""
    import requests
    import urllib3

    try:
        with session.get(url, stream=True, timeout=timeout) as resp:
            _check_status(resp, url)
            buf = bytearray()
            for chunk in resp.iter_content(64 << 10):
                buf += chunk
                if len(buf) > MAX_IMAGE_BYTES:
                    raise _Permanent("too large", f"over {MAX_IMAGE_BYTES} bytes")
            encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
            expected = None if encoded else _content_length(resp)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
        raise _classify(e) from e
    if expected is not None and len(buf) != expected:
        raise _Transient("truncated body", f"{len(buf)} of {expected} bytes")
    return bytes(buf)


def fetch_image(sessions: _Sessions, asin: str, url: str | None, dest: Path,
                policy: RetryPolicy) -> tuple[str, str, str]:
    """Fetch one item image to ``dest``. Returns (asin, outcome, detail).

    outcome: "skipped" (already valid), "fetched", or a failure reason
    ("no image URL", "HTTP 404", "corrupt image", "timeout", "connection error", ...).
    """
    if dest.is_file():
        if image_problem(dest.read_bytes()) is None:
            return asin, "skipped", ""
        dest.unlink()  # a damaged image is never kept, whatever happens next
    if not url:
        return asin, "no image URL", ""
    try:
        _check_url(url)
        data = _with_retries(lambda: _get_image_bytes(sessions.get(), url, policy.timeout), policy)
    except (_Transient, _Permanent) as e:
        return asin, e.reason, str(e)
    problem = image_problem(data)
    if problem is not None:
        return asin, "corrupt image", problem
    mio.write_bytes(dest, data)
    return asin, "fetched", ""


def _safe_dest(images_dir: Path, asin: str) -> Path:
    dest = images_dir / image_filename(asin)
    if dest.resolve().parent != images_dir.resolve():  # image_filename guarantees it; be sure
        raise DataError(f"image path for asin {asin!r} escapes {images_dir}")
    return dest


def fetch_images(urls: dict[str, str | None], images_dir: Path, policy: RetryPolicy,
                 workers: int = 8, progress: bool = True) -> dict[str, Any]:
    """Fetch every item's image with a thread pool; returns counts and the failures."""
    images_dir.mkdir(parents=True, exist_ok=True)
    sessions = _Sessions()
    outcomes: Counter[str] = Counter()
    failures: list[dict[str, str | None]] = []
    bar = _bar(progress, total=len(urls), desc="images", unit="img")
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(fetch_image, sessions, asin, url, _safe_dest(images_dir, asin),
                                   policy) for asin, url in sorted(urls.items())]
            for fut in as_completed(futures):
                asin, outcome, detail = fut.result()
                outcomes[outcome] += 1
                if outcome not in ("fetched", "skipped"):
                    failures.append({"asin": asin, "url": urls[asin], "reason": outcome,
                                     "detail": detail})
                if bar is not None:
                    bar.update(1)
    finally:
        sessions.close()
        if bar is not None:
            bar.close()
    failures.sort(key=lambda f: f["asin"] or "")
    reasons = Counter(f["reason"] for f in failures)
    return {
        "items": len(urls),
        "ok": outcomes["fetched"] + outcomes["skipped"],
        "fetched": outcomes["fetched"],
        "skipped": outcomes["skipped"],
        "failed": len(failures),
        "reasons": dict(sorted(reasons.items())),
        "failures": failures,
    }


# -- the whole job ----------------------------------------------------------------------------


def download(
    category: str,
    out: str | Path,
    year: int = 2014,
    base_url: str | None = None,
    images: bool = True,
    workers: int = 8,
    retries: int = 4,
    timeout: float = 30,
    progress: bool = True,
    backoff: float = 1.0,
) -> dict[str, Any]:
    """Download a category's 5-core reviews and metadata into ``out``, then its item images.

    Returns a report: the category, each file's status (``fetched``/``skipped``,
    resumed or not), the item/user/review counts of the 5-core file, parse
    skips, and (with ``images``) image counts with every failure and its reason,
    which is also written to ``<out>/images_report.json``. Raises
    :class:`DataError` for an unknown category and :class:`DownloadError` when a
    file cannot be had after ``retries`` retries.
    """
    cat = resolve_category(category, year, allow_custom=base_url is not None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    policy = RetryPolicy(retries=max(0, retries), backoff=backoff, timeout=timeout)
    files = source_files(cat, year, base_url)
    report: dict[str, Any] = {"category": cat, "year": year, "out": str(out), "files": {}}
    session = make_session()
    try:
        for kind in ("reviews", "meta"):
            name, url = files[kind]
            report["files"][kind] = fetch_file(session, url, out / name, policy, progress)
    finally:
        session.close()
    report["fetched"] = [f["file"] for f in report["files"].values() if f["status"] == "fetched"]
    report["skipped"] = [f["file"] for f in report["files"].values() if f["status"] == "skipped"]

    skips = SkipLog()
    asins, n_users, n_reviews = read_item_set(out / files["reviews"][0], skips)
    report.update(n_items=len(asins), n_users=n_users, n_reviews=n_reviews)
    if images:
        metas = load_item_meta(out / files["meta"][0], _FORMAT[year], asins, skips)
        report["n_items_with_meta"] = len(metas)
        urls = {a: (metas[a].image_urls[0] if a in metas and metas[a].image_urls else None)
                for a in asins}
        img = fetch_images(urls, out / "images", policy, workers, progress)
        for f in img["failures"]:  # say why an item has no URL: no record at all, or no field
            if f["reason"] == "no image URL":
                f["detail"] = ("no metadata record" if f["asin"] not in metas
                               else "metadata lists no image")
        report["images"] = img
        mio.write_json(out / "images_report.json", {"category": cat, "year": year, **img})
    report["skips"] = skips.as_dict()
    return report
