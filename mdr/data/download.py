"""Download an Amazon category (2014 or 2018 release): 5-core reviews, metadata, item images.

Where the files come from
-------------------------
Each release has a built-in list of mirrors (:data:`MIRRORS`), tried in order:
a file that cannot be had from one mirror (HTTP error, TLS failure, retries
spent) is asked of the next, and the final error lists every mirror tried and
why it failed. Every mirror has a folder for the reviews files and one for
the metadata files (the 2018 release keeps them apart on every host)::

    release  mirror      reviews folder / metadata folder
    2014     snap        https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ (both)
    2014     mcauleylab  https://mcauleylab.ucsd.edu/public_datasets/data/amazon/categoryFiles/ (both)
    2018     jmcauley    https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/
                         https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2/
    2018     mcauleylab  https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/categoryFilesSmall/
                         https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/metaFiles2/
    2018     datarepo    https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall/
                         https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/metaFiles2/

Sources: ``snap`` is what the official 2014 page (McAuley et al., the paper's
data) links today, over https. ``jmcauley`` is the 2018 release's (Ni, Li,
McAuley) long-standing host; public reports say its certificate expired in
May 2026. ``mcauleylab`` serves the same trees under the lab's
``public_datasets`` folder and ``datarepo`` the same 2018 tree under
``mcauley_group``; neither is linked from the official pages, both are what
public download scripts fetch these files from (for 2014, ``reviews_<Cat>_5``
and ``meta_<Cat>`` from ``mcauleylab``), so they come after the official host.

File names: 2014 ``reviews_<Cat>_5.json.gz`` and ``meta_<Cat>.json.gz``; 2018
``<Cat>_5.json.gz`` and ``meta_<Cat>.json.gz``. ``<Cat>`` is the release's
category name (``Clothing_Shoes_and_Jewelry``); the paper's short names
``cloth``, ``toys`` and ``office`` are accepted too (:data:`CATEGORY_ALIASES`,
:func:`resolve_category`).

Choosing a source (:func:`plan_sources`): ``mirror`` (``--mirror NAME``) tries
that mirror alone; ``reviews_url`` / ``meta_url`` (``--reviews-url``,
``--meta-url``) give one file's location anywhere else, either its folder
(the release's file name is appended) or the full URL of the file (a URL whose
last path segment ends in ``.gz``; it is saved under the release's file name,
so ``prepare`` finds it); a file without its own URL still comes from the
mirrors. ``base_url`` (``--base-url``) is one folder holding both files, e.g.
a local mirror: the same as giving that folder to both. Files already complete
in ``out`` are never fetched again, so files obtained by other means can be
put there by hand.

The folder ``out`` (:func:`mdr.io.claim_folder`): a new or empty folder gets
mdr's ownership marker (kind ``amazon-raw``) and later downloads into it (any
category) are welcome; an unmarked folder is accepted only when it holds nothing
but what a download writes (``reviews_<Cat>_5.json.gz``, ``<Cat>_5.json.gz``,
``meta_<Cat>.json.gz``, their ``.part`` and moved-aside files, ``images/``,
``images_report.json``); a folder of other files, a symbolic link, or mdr output
of another kind is refused before any request. Inside it nothing that this run
did not write is deleted or replaced: a file it cannot use is renamed aside
(:func:`mdr.io.move_aside`): a damaged reviews/metadata file to
``<name>.damaged-<n>`` once its replacement is complete, a ``.part`` found on
disk that fails verification to ``<name>.part.damaged-<n>`` (one a server
restarts, ignoring Range, to ``<name>.part.unused-<n>``), a damaged image to
``images/<name>.damaged-<n>``; the report lists them (``moved_aside``).

How files are fetched: streamed into ``<name>.part``; an existing ``.part`` is
resumed with an HTTP ``Range`` request (a server that ignores Range answers
200 and the download restarts); the finished file is checked by reading the
whole gzip stream (a truncated or corrupt file is fetched again) and only then
renamed into place, so a file under its final name is always complete and is
skipped on a re-run. Connection errors, timeouts, 5xx/429 answers and bodies
shorter than their ``Content-Length`` are retried with exponential backoff
(``backoff * 2**attempt`` seconds); other 4xx answers fail at once. A TLS
failure (an expired, self-signed or mismatched certificate, a failed
handshake) is never retried: it is one line naming the host, e.g.
``jmcauley.ucsd.edu: TLS certificate verification failed (certificate has
expired)``, followed by the other mirrors to try. A host that failed so, or
that could not be reached at all after the retries, is not asked again for the
other file of the same run. A private CA is trusted through
``REQUESTS_CA_BUNDLE``, as everywhere in ``requests``.

Images: the reviews file gives the 5-core item set; the metadata file is
streamed and only those items are kept. Each item's first image URL (2014
``imUrl``; 2018 first of ``imageURLHighRes``/``imageURL``) is fetched by a
thread pool into ``<out>/images/<image_filename(asin)>`` (an ASIN that is not a
safe file name gets a hashed name, so nothing escapes ``out``), decoded with
PIL before it is kept, and skipped on a re-run when already present and
valid. ``<out>/images_report.json`` (and the returned report) counts the items
without an image URL (``without_url``; of them ``without_meta`` have no
metadata record at all: some 2014 records carry no ``imUrl``) and lists every
item whose image could not be had, and why. Ctrl-C stops the images at once
(within :data:`_POLL_S`): no further image is asked for, requests in flight
are abandoned, the report is written with what was done by then
(``interrupted``: true, ``not_tried``) and the command exits with status 130;
a re-run fetches the rest.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import queue
import re
import ssl
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from mdr import io as mio
from mdr.data.parse import (
    CATEGORY_ALIASES,
    DataError,
    Format,
    ItemMeta,
    SkipLog,
    clip,
    image_filename,
    iter_meta,
    iter_reviews,
    shown,
)

if TYPE_CHECKING:
    import requests

T = TypeVar("T")

USER_AGENT = "mdr-companion/0.1 (+research; Amazon review data downloader)"
CHUNK = 1 << 20  # bytes per streamed chunk
MAX_IMAGE_BYTES = 32 << 20  # a product photo larger than this is refused
MAX_BACKOFF_S = 60.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mirror:
    """One host of a release: the folder of its reviews files and the folder of its metadata."""

    name: str
    reviews: str  # folder URL (no trailing slash)
    meta: str
    source: str  # where this address comes from, for people reading the table


_SNAP = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
_LAB_2014 = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon/categoryFiles"
_V2_JMCAULEY = "https://jmcauley.ucsd.edu/data/amazon_v2"
_V2_LAB = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2"
_V2_DATAREPO = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2"

# tried in this order; the module docstring says where each comes from
MIRRORS: dict[int, tuple[Mirror, ...]] = {
    2014: (
        Mirror("snap", _SNAP, _SNAP, "linked from the official 2014 page"),
        Mirror(
            "mcauleylab",
            _LAB_2014,
            _LAB_2014,
            "the lab's public_datasets tree, used by public download scripts",
        ),
    ),
    2018: (
        Mirror(
            "jmcauley",
            f"{_V2_JMCAULEY}/categoryFilesSmall",
            f"{_V2_JMCAULEY}/metaFiles2",
            "the release's long-standing host (certificate reported expired in May 2026)",
        ),
        Mirror(
            "mcauleylab",
            f"{_V2_LAB}/categoryFilesSmall",
            f"{_V2_LAB}/metaFiles2",
            "the same tree under the lab's public_datasets folder",
        ),
        Mirror(
            "datarepo",
            f"{_V2_DATAREPO}/categoryFilesSmall",
            f"{_V2_DATAREPO}/metaFiles2",
            "the same tree under mcauley_group, used by public download scripts",
        ),
    ),
}

# the categories each release publishes as 5-core files
CATEGORIES_2014: tuple[str, ...] = (
    "Amazon_Instant_Video",
    "Apps_for_Android",
    "Automotive",
    "Baby",
    "Beauty",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Grocery_and_Gourmet_Food",
    "Health_and_Personal_Care",
    "Home_and_Kitchen",
    "Kindle_Store",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Sports_and_Outdoors",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
)
CATEGORIES_2018: tuple[str, ...] = (
    "AMAZON_FASHION",
    "All_Beauty",
    "Appliances",
    "Arts_Crafts_and_Sewing",
    "Automotive",
    "Books",
    "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories",
    "Clothing_Shoes_and_Jewelry",
    "Digital_Music",
    "Electronics",
    "Gift_Cards",
    "Grocery_and_Gourmet_Food",
    "Home_and_Kitchen",
    "Industrial_and_Scientific",
    "Kindle_Store",
    "Luxury_Beauty",
    "Magazine_Subscriptions",
    "Movies_and_TV",
    "Musical_Instruments",
    "Office_Products",
    "Patio_Lawn_and_Garden",
    "Pet_Supplies",
    "Prime_Pantry",
    "Software",
    "Sports_and_Outdoors",
    "Tools_and_Home_Improvement",
    "Toys_and_Games",
    "Video_Games",
)
_KNOWN = {2014: CATEGORIES_2014, 2018: CATEGORIES_2018}
_SAFE_CATEGORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,79}$")
_FORMAT: dict[int, Format] = {2014: "amazon2014", 2018: "amazon2018"}
OUTPUT_KIND = "amazon-raw"  # the ownership marker's kind (mdr.io.claim_folder)
# the names a download writes in its folder (any category, either release): the reviews and
# metadata files, their .part files, what it moved aside, the images, the images report, and
# the temporary files of an atomic write that a kill left
_OWN_FILE = re.compile(
    r"^(?:[A-Za-z0-9_]+_5|meta_[A-Za-z0-9_]+)\.json\.gz(?:\.part)?"
    r"(?:\.(?:damaged|unused)-[0-9]+)?$"
)
_OWN_TEMP = re.compile(r"^\.(?:images_report\.json|\.mdr-output\.json)\.[A-Za-z0-9_]+\.tmp$")


class DownloadError(DataError):
    """A file could not be downloaded (names every source tried and why each failed)."""


# -- categories and URLs -------------------------------------------------------------------


def resolve_category(name: str, year: int = 2014, allow_custom: bool = False) -> str:
    """The release's category name for ``name`` (an alias, or any case of a known name).

    With ``allow_custom`` (files from URLs of one's own, or a dataset of one's
    own), an unknown name is accepted when it is a plain ``[A-Za-z0-9_]`` token. Anything else raises
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
        f"unknown category {shown(name)} for the {year} release. Aliases: {aliases}. "
        f"Known categories: {', '.join(known)}"
    )


def file_names(category: str, year: int = 2014) -> dict[str, str]:
    """``{"reviews": name, "meta": name}``: the release's file names for a resolved category."""
    if year == 2014:
        return {"reviews": f"reviews_{category}_5.json.gz", "meta": f"meta_{category}.json.gz"}
    if year == 2018:
        return {"reviews": f"{category}_5.json.gz", "meta": f"meta_{category}.json.gz"}
    raise DataError(f"unknown release year {year!r}: expected 2014 or 2018")


@dataclass(frozen=True)
class Source:
    """One place to try for one file: who offers it (a mirror's name, or a flag) and its URL."""

    label: str
    url: str


def _join(folder: str, name: str) -> str:
    """``folder``/``name``, keeping a query string (a signed URL) after the path."""
    parts = urlsplit(folder)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))


def _file_url(url: str, name: str, flag: str, folder: bool = False) -> str:
    """A user's URL for one file: the file itself when it names a ``.gz``, else its folder."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DataError(f"{flag} must be an http(s) URL, got {shown(url)}")
    last = parts.path.rsplit("/", 1)[-1].lower()
    if folder or not last:
        return _join(url, name)
    if last.endswith(".gz"):
        return url
    if last.endswith((".json", ".jsonl")):
        raise DataError(
            f"{flag} {shown(url)} names an uncompressed file: the download fetches the .json.gz files "
            "the releases publish (their gzip stream is how a complete file is told from a cut one)"
        )
    return _join(url, name)


def plan_sources(
    category: str,
    year: int = 2014,
    *,
    mirror: str | None = None,
    reviews_url: str | None = None,
    meta_url: str | None = None,
    base_url: str | None = None,
    mirrors: Sequence[Mirror] | None = None,
) -> dict[str, tuple[str, list[Source]]]:
    """``{"reviews": (filename, sources), "meta": (filename, sources)}``, sources in trying order.

    ``mirrors`` (default :data:`MIRRORS` of ``year``) are tried in order, or only
    the one called ``mirror``; ``reviews_url``/``meta_url`` replace them for one
    file (a folder, or the file's full ``.gz`` URL); ``base_url`` is one folder
    for both files and excludes the other three. Bad combinations raise
    :class:`DataError`.
    """
    names = file_names(category, year)
    if base_url is not None:
        if reviews_url is not None or meta_url is not None or mirror is not None:
            raise DataError(
                "--base-url is one folder holding both files: give it alone, or give "
                "--reviews-url/--meta-url (and --mirror) instead"
            )
        reviews_url = meta_url = base_url
    table = tuple(MIRRORS[year] if mirrors is None else mirrors)
    if mirror is not None:
        by_name = {m.name.lower(): m for m in table}
        if mirror.strip().lower() not in by_name:
            known = ", ".join(m.name for m in table) or "none"
            raise DataError(
                f"unknown mirror {shown(mirror)} for the {year} release; mirrors: {known}"
            )
        table = (by_name[mirror.strip().lower()],)
    custom = {"reviews": (reviews_url, "--reviews-url"), "meta": (meta_url, "--meta-url")}
    plan: dict[str, tuple[str, list[Source]]] = {}
    for kind, name in names.items():
        url, flag = custom[kind]
        if url is not None:
            label = "--base-url" if base_url is not None else flag
            # --base-url has always been a folder, whatever its last segment looks like
            plan[kind] = (name, [Source(label, _file_url(url, name, label, base_url is not None))])
        else:
            folders = [(m.name, m.reviews if kind == "reviews" else m.meta) for m in table]
            plan[kind] = (name, [Source(n, _join(folder, name)) for n, folder in folders])
    return plan


def source_files(
    category: str, year: int = 2014, base_url: str | None = None
) -> dict[str, tuple[str, str]]:
    """``{"reviews": (filename, url), "meta": (filename, url)}``: the first source of each file."""
    plan = plan_sources(category, year, base_url=base_url)
    return {kind: (name, sources[0].url) for kind, (name, sources) in plan.items()}


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
    """A failure worth retrying (connection, timeout, 5xx, short body, corrupt transfer).

    ``unreachable``: no connection was made at all (name not resolved, refused,
    connect timeout), so after the retries the host is taken as down for the run.
    """

    def __init__(self, reason: str, detail: str = "", unreachable: bool = False):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.unreachable = unreachable


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


class _TLSFailure(_Permanent):
    """The TLS handshake failed (certificate or protocol): retrying the same host cannot help."""

    def __init__(self, host: str, what: str):
        Exception.__init__(self, f"{host}: {what}")  # the one line users see, host first
        self.reason = "TLS error"
        self.host = host


def _wrapped(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps, each once.

    requests and urllib3 nest the cause several layers deep (requests' error,
    MaxRetryError, urllib3's error, the socket or ssl error), through
    ``__cause__``/``__context__``, a ``reason`` attribute or the arguments.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend(
            x
            for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
            if isinstance(x, BaseException)
        )


# OpenSSL reasons that mean the two ends cannot agree (https to a plain-http port, no
# common protocol or cipher, a refused certificate): the same on every retry
_PERMANENT_TLS = (
    "WRONG_VERSION",
    "PROTOCOL",
    "HANDSHAKE",
    "ALERT",
    "CERTIFICATE",
    "CIPHER",
    "UNRECOGNIZED_NAME",
    "NO_SHARED",
)


def _tls_failure(exc: BaseException, url: str) -> _TLSFailure | None:
    """A :class:`_TLSFailure` when ``exc`` (or anything it wraps) is a TLS failure, else None.

    The certificate's own complaint (``certificate has expired``) is in the
    wrapped :attr:`ssl.SSLCertVerificationError.verify_message`.
    """
    host = urlsplit(url).hostname or url
    plain: ssl.SSLError | None = None
    for e in _wrapped(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            why = (e.verify_message or e.reason or "unknown reason").rstrip(".")
            return _TLSFailure(host, f"TLS certificate verification failed ({why})")
        if isinstance(e, ssl.SSLError) and plain is None:
            plain = e
    text = str(exc)
    m = re.search(r"certificate verify failed: ([^(]+)", text)
    if m or "CERTIFICATE_VERIFY_FAILED" in text:
        why = m.group(1).strip().rstrip(".") if m else "unknown reason"
        return _TLSFailure(host, f"TLS certificate verification failed ({why})")
    code = str(getattr(plain, "reason", None) or "").upper()
    if not any(k in code for k in _PERMANENT_TLS):
        return None  # e.g. a connection cut mid-handshake or mid-body: retried like any other
    return _TLSFailure(host, f"TLS handshake failed ({code.replace('_', ' ').lower()})")


def _classify(exc: Exception, url: str = "") -> Exception:
    """Map a requests exception onto _Transient (timeouts, broken connections) or _Permanent."""
    import requests
    import urllib3

    if isinstance(exc, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        tls = _tls_failure(exc, url)
        if tls is not None:
            return tls
    text = str(exc)[:200]
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return _Transient(
            "timeout", f"{urlsplit(url).hostname}: connect timed out", unreachable=True
        )
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return _Transient("timeout", text)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.ConnectionError):
        down = _connect_failure(exc)
        if down is not None:  # requests' own text is 300 characters of pool internals
            return _Transient(
                "connection error", f"{urlsplit(url).hostname}: {down}", unreachable=True
            )
        return _Transient("connection error", text)
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    ):
        return _Permanent("bad URL", text)
    return _Transient("request error", text)


def _connect_failure(exc: BaseException) -> str | None:
    """A short reason when ``exc`` wraps a failure to open the connection, else None.

    None also for connections that broke later (those are not a sign the host is down).
    """
    import urllib3

    for e in _wrapped(exc):
        # checked first: urllib3 derives NewConnectionError (and NameResolutionError) from
        # ConnectTimeoutError
        if isinstance(e, urllib3.exceptions.NewConnectionError):
            m = re.search(r"\[Errno -?\d+\] ([^)'\"]+)", str(e))
            why = m.group(1).strip() if m else type(e).__name__
            if isinstance(e, urllib3.exceptions.NameResolutionError):
                return f"host name not resolved ({why})"
            return f"cannot connect ({why})"
        if isinstance(e, urllib3.exceptions.ConnectTimeoutError):
            return "connect timed out"
    return None


def _check_status(resp: requests.Response, url: str) -> None:
    code = resp.status_code
    if code >= 500 or code in (408, 429):
        raise _Transient(f"HTTP {code}", clip(url))
    if code >= 400:
        raise _Permanent(f"HTTP {code}", clip(url))


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


def _stream_to_part(
    session: requests.Session,
    url: str,
    part: Path,
    timeout: float,
    bar: Any,
    before_restart: Callable[[], None] | None = None,
) -> str:
    """One attempt: append to (or restart) ``part``. Returns "fresh", "resumed" or "complete".

    The raw bytes are written as sent (``decode_content=False``): a server that
    labels a ``.gz`` file ``Content-Encoding: gzip`` must not get it unpacked.
    ``before_restart`` is called before a non-empty ``part`` is started afresh (the
    server ignored the Range request), e.g. to move bytes this run did not write aside.
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
            resumed = (
                resp.status_code == 206
                and _parse_content_range(resp.headers.get("Content-Range")) == have
            )
            if not resumed:
                if have and before_restart is not None:
                    before_restart()
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
        raise _classify(e, url) from e
    if expected is not None and received != expected:
        raise _Transient("truncated body", f"{received} of {expected} bytes from {clip(url)}")
    return "resumed" if resumed else "fresh"


def _content_length(resp: requests.Response) -> int | None:
    value = resp.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def fetch_first(
    session: requests.Session,
    sources: Sequence[Source],
    dest: str | Path,
    policy: RetryPolicy = RetryPolicy(),
    progress: bool = False,
    hint: str = "",
    failed_hosts: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Download ``dest`` from the first of ``sources`` that serves it; skip a complete ``dest``.

    Each source gets the full retry policy for transient failures; a permanent
    one (4xx, TLS) moves on to the next source at once. ``failed_hosts`` maps a
    ``host:port`` to why it is out (its TLS failed, or it could not be reached
    at all after the retries): such hosts are skipped, and hosts that fail so
    here are added (share it between the files of one job). Returns ``{"file",
    "url", "source", "status": "skipped"|"fetched", "resumed", "attempts",
    "bytes", "tried", "moved_aside"}``: ``url``/``source`` say where the file came from
    (None when it was already complete), ``tried`` lists the sources that failed
    before one worked. Raises :class:`DownloadError` naming every source tried and why it
    failed, then ``hint``; a single TLS failure is one line naming the host.

    Nothing this call did not write is deleted or replaced: a damaged ``dest`` is moved
    aside to ``<name>.damaged-<n>`` when its replacement is complete; a ``.part`` found
    on disk that fails verification goes to ``<name>.part.damaged-<n>``, and one that a
    server makes restart (it ignores Range) to ``<name>.part.unused-<n>``
    (:func:`mdr.io.move_aside`; ``moved_aside`` lists the new names). A ``.part`` that
    this call wrote itself from its first byte is simply discarded when corrupt.
    """
    dest = Path(dest)
    failed_hosts = {} if failed_hosts is None else failed_hosts
    info: dict[str, Any] = {
        "file": dest.name,
        "url": None,
        "source": None,
        "status": "skipped",
        "resumed": False,
        "attempts": 0,
        "tried": [],
        "moved_aside": [],
    }
    if dest.is_file() and gzip_is_complete(dest):
        info["bytes"] = dest.stat().st_size
        return info
    if not sources:
        raise DownloadError(f"no source to download {dest.name} from; {hint}".rstrip("; "))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    # whether every byte of the .part is this call's: a .part found on disk is not
    mine = [not (part.exists() or part.is_symlink())]

    def set_aside(why: str) -> None:
        if mine[0]:
            part.unlink()
        else:
            moved = mio.move_aside(part, why)
            info["moved_aside"].append(moved.name)
            log.warning(
                "%s: could not be used (%s); moved aside to %s",
                part.name,
                "corrupt" if why == "damaged" else "the server restarted it",
                moved.name,
            )
        mine[0] = True  # what comes next is written from its first byte

    bar = _bar(progress, desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024)
    tried: list[dict[str, Any]] = info["tried"]
    try:
        for k, src in enumerate(sources):
            host = _endpoint(src.url)
            if host in failed_hosts:
                tried.append(
                    {
                        "source": src.label,
                        "url": src.url,
                        "attempts": 0,
                        "tls": False,
                        "skipped": True,
                        "unreachable": False,
                        "error": f"{failed_hosts[host]} (earlier in this run; not asked again)",
                    }
                )
                continue
            attempts = [0]

            def attempt(url: str = src.url, attempts: list[int] = attempts) -> None:
                attempts[0] += 1
                info["attempts"] += 1
                how = _stream_to_part(
                    session,
                    url,
                    part,
                    policy.timeout,
                    bar,
                    before_restart=lambda: set_aside("unused"),
                )
                info["resumed"] = info["resumed"] or how in ("resumed", "complete")
                if not gzip_is_complete(part):
                    set_aside("damaged")  # corrupt, not merely short: the next try starts afresh
                    raise _Transient("corrupt gzip", f"{clip(url)} does not decompress to its end")

            try:
                _check_url(src.url)
                _with_retries(attempt, policy)
            except (_Transient, _Permanent) as e:
                is_tls = isinstance(e, _TLSFailure)
                if is_tls or getattr(e, "unreachable", False):
                    failed_hosts[host] = str(e)
                tried.append(
                    {
                        "source": src.label,
                        "url": src.url,
                        "attempts": attempts[0],
                        "tls": is_tls,
                        "skipped": False,
                        "error": str(e),
                        "unreachable": getattr(e, "unreachable", False),
                    }
                )
                if k + 1 < len(sources):
                    log.warning(
                        "%s from %s: %s; trying %s", dest.name, src.label, e, sources[k + 1].label
                    )
                continue
            if dest.exists() or dest.is_symlink():  # damaged (a complete one was skipped)
                moved = mio.move_aside(dest, "damaged")
                info["moved_aside"].append(moved.name)
                log.warning(
                    "%s: damaged (it does not decompress to its end); moved aside to %s",
                    dest.name,
                    moved.name,
                )
            os.replace(part, dest)
            info.update(status="fetched", url=src.url, source=src.label, bytes=dest.stat().st_size)
            return info
    finally:
        if bar is not None:
            bar.close()
    raise DownloadError(_failure_message(dest.name, tried, hint))


def _endpoint(url: str) -> str:
    """``host:port`` of a URL: what a TLS failure or an unreachable host belongs to."""
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme, 0)
    return f"{parts.hostname or ''}:{port}"


def _tries(n: int) -> str:
    return f"after {n} attempt(s)" if n else "without trying"


def _failure_message(name: str, tried: list[dict[str, Any]], hint: str) -> str:
    """One line for one source (just the host's line for TLS), else one line per source."""
    if all("HTTP 404" in t["error"] for t in tried):
        hint = "is the category right for this release, or the URL?" + (f" {hint}" if hint else "")
    elif all(t["unreachable"] for t in tried):
        hint = (
            "no source could be reached (offline, or behind a proxy? requests honours "
            "HTTPS_PROXY)" + (f"; {hint}" if hint else "")
        )
    if len(tried) == 1:
        t = tried[0]
        line = (
            t["error"]
            if t["tls"]
            else f"could not download {clip(t['url'])} {_tries(t['attempts'])}: {t['error']}"
        )
        return f"{line}; {hint}" if hint else line
    lines = [f"could not download {name} from any of its {len(tried)} sources:"]
    for t in tried:
        when = "" if t["tls"] or t["skipped"] else f", {_tries(t['attempts'])}"
        lines.append(f"  {t['source']}: {t['error']} ({clip(t['url'])}{when})")
    if hint:
        lines.append(hint)
    return "\n".join(lines)


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


def load_item_meta(
    meta: str | Path, fmt: Format, asins: Iterable[str], skips: SkipLog
) -> dict[str, ItemMeta]:
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
        raise _classify(e, url) from e
    if expected is not None and len(buf) != expected:
        raise _Transient("truncated body", f"{len(buf)} of {expected} bytes")
    return bytes(buf)


@dataclass(frozen=True)
class ImageOutcome:
    """What :func:`fetch_image` did for one item."""

    asin: str
    outcome: str  # "skipped", "fetched", or a failure reason
    detail: str = ""
    moved_aside: str | None = None  # the damaged file found at dest, under its new name


def fetch_image(
    sessions: _Sessions,
    asin: str,
    url: str | None,
    dest: Path,
    policy: RetryPolicy,
    stop: threading.Event | None = None,
) -> ImageOutcome:
    """Fetch one item image to ``dest``.

    outcome: "skipped" (already valid), "fetched", "interrupted" (``stop`` was set
    before it was written), or a failure reason ("no image URL", "HTTP 404",
    "corrupt image", "timeout", "connection error", "TLS error" (never retried), ...).
    A damaged file found at ``dest`` is moved aside to ``<name>.damaged-<n>``
    (:func:`mdr.io.move_aside`), never deleted, and never used, whatever happens next.
    """
    moved = None
    if dest.is_file():
        if image_problem(dest.read_bytes()) is None:
            return ImageOutcome(asin, "skipped")
        moved = mio.move_aside(dest, "damaged").name
    if not url:
        return ImageOutcome(asin, "no image URL", "", moved)
    try:
        _check_url(url)
        data = _with_retries(lambda: _get_image_bytes(sessions.get(), url, policy.timeout), policy)
    except (_Transient, _Permanent) as e:
        return ImageOutcome(asin, e.reason, str(e), moved)
    problem = image_problem(data)
    if problem is not None:
        return ImageOutcome(asin, "corrupt image", problem, moved)
    if stop is not None and stop.is_set():  # the report is being written without it
        return ImageOutcome(asin, "interrupted", "", moved)
    mio.write_bytes(dest, data)
    return ImageOutcome(asin, "fetched", "", moved)


def _safe_dest(images_dir: Path, asin: str) -> Path:
    dest = images_dir / image_filename(asin)
    if dest.resolve().parent != images_dir.resolve():  # image_filename guarantees it; be sure
        raise DataError(f"image path for asin {shown(asin)} escapes {images_dir}")
    return dest


class ImagesInterrupted(KeyboardInterrupt):
    """Ctrl-C while :func:`fetch_images` ran: ``report`` holds what was done by then."""

    def __init__(self, report: dict[str, Any]):
        super().__init__("interrupted")
        self.report = report


_POLL_S = 0.1  # how often the main thread wakes while it waits for image results


def fetch_images(
    urls: dict[str, str | None],
    images_dir: Path,
    policy: RetryPolicy,
    workers: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Fetch every item's image with ``workers`` threads; returns counts and the failures.

    The workers are daemon threads fed from a queue, so Ctrl-C takes effect at once:
    the items not yet started are never asked for, requests in flight are abandoned (an
    image that arrives afterwards is not written), and :class:`ImagesInterrupted` (a
    ``KeyboardInterrupt``) carries the report of what was done (``interrupted``: true,
    ``not_tried``: the items without an outcome). A re-run fetches the rest.
    """
    images_dir.mkdir(parents=True, exist_ok=True)
    todo = [(asin, url, _safe_dest(images_dir, asin)) for asin, url in sorted(urls.items())]
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    for job in todo:
        jobs.put(job)
    results: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    sessions = _Sessions()

    def work() -> None:
        while not stop.is_set():
            try:
                asin, url, dest = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                results.put(fetch_image(sessions, asin, url, dest, policy, stop))
            except BaseException as e:  # a bug (or a full disk): re-raised by the main thread
                results.put(e)
                return

    outcomes: Counter[str] = Counter()
    failures: list[dict[str, str | None]] = []
    moved: list[str] = []
    bar = _bar(progress, total=len(urls), desc="images", unit="img")
    threads = [
        threading.Thread(target=work, name=f"mdr-image-{i}", daemon=True)
        for i in range(max(1, min(workers, len(todo))))
    ]
    done = 0
    try:
        for t in threads:
            t.start()
        while done < len(todo):
            try:
                res = results.get(timeout=_POLL_S)  # wakes up for Ctrl-C
            except queue.Empty:
                continue
            if isinstance(res, BaseException):
                raise res
            done += 1
            outcomes[res.outcome] += 1
            if res.moved_aside is not None:
                moved.append(res.moved_aside)
            if res.outcome not in ("fetched", "skipped", "interrupted"):
                failures.append(
                    {
                        "asin": res.asin,
                        "url": urls[res.asin],
                        "reason": res.outcome,
                        "detail": res.detail,
                    }
                )
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        stop.set()
        raise ImagesInterrupted(
            _image_counts(
                urls, outcomes, failures, moved, len(todo) - done + outcomes["interrupted"]
            )
        ) from None
    finally:
        stop.set()  # the workers take no new item; one in flight is abandoned (daemon)
        sessions.close()
        if bar is not None:
            bar.close()
    return _image_counts(urls, outcomes, failures, moved, 0)


def _image_counts(
    urls: dict[str, str | None],
    outcomes: Counter[str],
    failures: list[dict[str, str | None]],
    moved: list[str],
    not_tried: int,
) -> dict[str, Any]:
    failures.sort(key=lambda f: f["asin"] or "")
    reasons = Counter(f["reason"] for f in failures)
    return {
        "items": len(urls),
        "ok": outcomes["fetched"] + outcomes["skipped"],
        "fetched": outcomes["fetched"],
        "skipped": outcomes["skipped"],
        "failed": len(failures),
        "interrupted": not_tried > 0,
        "not_tried": not_tried,
        "reasons": dict(sorted(reasons.items())),
        "moved_aside": sorted(moved),
        "failures": failures,
    }


# -- the whole job ----------------------------------------------------------------------------


def _own_name(name: str) -> bool:
    """Whether ``name`` (in a download folder) is one a download writes (:data:`_OWN_FILE`)."""
    return (
        name in ("images", "images_report.json")
        or _OWN_FILE.match(name) is not None
        or _OWN_TEMP.match(name) is not None
    )


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
    *,
    mirror: str | None = None,
    reviews_url: str | None = None,
    meta_url: str | None = None,
    mirrors: Sequence[Mirror] | None = None,
) -> dict[str, Any]:
    """Download a category's 5-core reviews and metadata into ``out``, then its item images.

    Sources as in :func:`plan_sources`: the release's mirrors in order (or
    ``mirrors``, a list of one's own), only ``mirror``, or ``reviews_url`` /
    ``meta_url`` / ``base_url``. A category outside the release's list is
    accepted (when a safe name) only with a URL of one's own.

    ``out`` follows the ownership rule of every mdr output (:func:`mdr.io.claim_folder`):
    a new or empty folder (it gets mdr's marker, kind ``amazon-raw``), a folder an earlier
    download made, or an unmarked folder holding nothing but what a download writes (the
    reviews and metadata files of any category, their ``.part`` files and what was moved
    aside, ``images/``, ``images_report.json``: files put there by hand, say). Anything
    else (a folder of one's own files, a symbolic link, mdr output of another kind) is
    refused with :class:`mdr.io.OutputError` before any request. Inside it, nothing the
    download did not write is deleted or replaced: a file it cannot use is moved aside
    (:func:`fetch_first`, :func:`fetch_image`).

    Returns a report: the category, each file's status (``fetched``/``skipped``,
    resumed or not, the source it came from and the sources that failed first),
    the item/user/review counts of the 5-core file, parse skips, and (with
    ``images``) image counts (``without_url``: items with no image URL, of
    which ``without_meta`` have no metadata record) with every failure and its
    reason, which is also written to ``<out>/images_report.json``. Raises
    :class:`DataError` for an unknown category, mirror or a bad URL, and
    :class:`DownloadError` when a file cannot be had from any source. Ctrl-C during the
    images writes the report of what was fetched by then, then raises KeyboardInterrupt.
    """
    own_urls = base_url is not None or reviews_url is not None or meta_url is not None
    cat = resolve_category(category, year, allow_custom=own_urls)
    plan = plan_sources(
        cat,
        year,
        mirror=mirror,
        reviews_url=reviews_url,
        meta_url=meta_url,
        base_url=base_url,
        mirrors=mirrors,
    )
    names = [m.name for m in (MIRRORS[year] if mirrors is None else mirrors)]
    out = Path(out)
    mio.claim_folder(
        out,
        OUTPUT_KIND,
        _own_name,
        "what a download writes (the release's reviews and metadata files, "
        "their .part files, images/, images_report.json)",
    )
    policy = RetryPolicy(retries=max(0, retries), backoff=backoff, timeout=timeout)
    report: dict[str, Any] = {"category": cat, "year": year, "out": str(out), "files": {}}
    failed_hosts: dict[str, str] = {}  # TLS failed or unreachable: not asked for the other file
    session = make_session()
    try:
        for kind in ("reviews", "meta"):
            name, sources = plan[kind]
            report["files"][kind] = fetch_first(
                session,
                sources,
                out / name,
                policy,
                progress,
                hint=_hint(sources, names),
                failed_hosts=failed_hosts,
            )
    finally:
        session.close()
    report["fetched"] = [f["file"] for f in report["files"].values() if f["status"] == "fetched"]
    report["skipped"] = [f["file"] for f in report["files"].values() if f["status"] == "skipped"]

    skips = SkipLog()
    asins, n_users, n_reviews = read_item_set(out / plan["reviews"][0], skips)
    report.update(n_items=len(asins), n_users=n_users, n_reviews=n_reviews)
    if images:
        metas = load_item_meta(out / plan["meta"][0], _FORMAT[year], asins, skips)
        report["n_items_with_meta"] = len(metas)
        urls = {
            a: (metas[a].image_urls[0] if a in metas and metas[a].image_urls else None)
            for a in asins
        }
        try:
            img = fetch_images(urls, out / "images", policy, workers, progress)
        except ImagesInterrupted as stopped:
            img = _write_images_report(out, cat, year, stopped.report, urls, metas, asins)
            log.warning(
                "interrupted: %s written (%d of %d images fetched or present, %d not "
                "tried); a re-run fetches the rest",
                out / "images_report.json",
                img["ok"],
                img["items"],
                img["not_tried"],
            )
            raise
        report["images"] = _write_images_report(out, cat, year, img, urls, metas, asins)
    report["skips"] = skips.as_dict()
    return report


def _write_images_report(
    out: Path,
    cat: str,
    year: int,
    img: dict[str, Any],
    urls: dict[str, str | None],
    metas: dict[str, ItemMeta],
    asins: set[str],
) -> dict[str, Any]:
    """The images report as returned and as ``<out>/images_report.json``."""
    for f in img["failures"]:  # say why an item has no URL: no record at all, or no field
        if f["reason"] == "no image URL":
            f["detail"] = (
                "no metadata record" if f["asin"] not in metas else "metadata lists no image"
            )
    # counted apart too (they stay among the failures): missing data, not a failed fetch
    counts = {
        "without_url": sum(u is None for u in urls.values()),
        "without_meta": len(asins) - len(metas),
    }
    img = _insert_after(img, "failed", counts)  # beside the counts, before the long list
    mio.write_json(out / "images_report.json", {"category": cat, "year": year, **img})
    return img


def _insert_after(d: dict[str, Any], key: str, extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out[k] = v
        if k == key:
            out.update(extra)
    return out


def _hint(sources: Sequence[Source], mirror_names: Sequence[str]) -> str:
    """What to try when every source of a file failed: the mirrors not tried, then own URLs."""
    tried = {s.label for s in sources}
    others = [f"--mirror {n}" for n in mirror_names if n not in tried]
    own = "--reviews-url/--meta-url" + ("" if others else " (the file's folder or its full URL)")
    return "try " + " or ".join([*others, own])
