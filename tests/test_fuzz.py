"""Property-based tests (hypothesis) of what bad input gets, on random damage.

Whatever the bytes of a review or metadata file (either release), the line parsers
(:func:`mdr.data.parse.iter_reviews`, :func:`mdr.data.parse.iter_meta`) give records, counted
skips or one :class:`DataError`, never another exception; every line is accounted for (a
record or a counted skip); every string they return can be written as UTF-8; every message
and skip example is bounded. ``prepare`` of a small random shop with random damage (random
bytes, cut lines, wrong types, huge values, odd Unicode, a cut gzip) gives a complete
prepared folder or one of the project's error types, never another exception, and nothing
outside its output folder changes.

Examples are DERANDOMISED (``derandomize=True``, no example database): every run tries the
same inputs, so CI never turns red by chance and a failure reproduces by running the test
again (hypothesis prints the falsifying example, shrunk). Fixed budgets (``max_examples``,
no per-example deadline: the machine is shared) keep the whole file under a minute on two
cores. To explore new inputs locally, ``MDR_FUZZ=explore`` draws random examples, ten times
as many; a failure then prints a ``@reproduce_failure(...)`` line to paste above the test.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mdr.config import ConfigError, PrepareConfig  # noqa: E402
from mdr.data.parse import (  # noqa: E402
    MAX_SHOWN,
    REPAIRED,
    DataError,
    SkipLog,
    iter_meta,
    iter_reviews,
)
from mdr.io import OutputError  # noqa: E402

_EXPLORE = os.environ.get("MDR_FUZZ") == "explore"


def budget(n: int) -> Callable[[Any], Any]:
    """This file's settings: ``n`` examples, derandomised, no deadline, no database (nothing
    written into the checkout); ``MDR_FUZZ=explore``: ten times as many, random."""
    return settings(
        max_examples=n * 10 if _EXPLORE else n,
        derandomize=not _EXPLORE,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


USER_ERRORS = (DataError, OutputError, ConfigError)  # what the CLI turns into one line

# --------------------------------------------------------------------------- strategies

# text that parsers and writers find hard: lone surrogates, line breaks of every kind, NUL,
# a BOM, quotes and backslashes, combining marks, right-to-left, non-BMP characters
_ODD_CHARS = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.sampled_from(
        [
            "\n",
            "\r",
            "\v",
            "\x1c",
            "\x85",
            "\u2028",
            "\x00",
            "\ufeff",
            "\\",
            '"',
            "'",
            "\u0301",
            "\u202e",
            "\U0001f600",
            "\ufffd",
            " ",
        ]
    ),
)
odd_text = st.lists(_ODD_CHARS, max_size=12).map("".join)
words = st.lists(
    st.sampled_from(["soft", "blue", "shirt", "nice", "fits", "well", "cheap", "warm"]),
    min_size=1,
    max_size=8,
).map(" ".join)
text = st.one_of(words, odd_text, words.flatmap(lambda w: odd_text.map(lambda o: w + o)))

# raw JSON / Python-literal tokens the parsers refuse or must not trust
HUGE = st.sampled_from(
    [
        "1" + "0" * 5000,
        "-" + "9" * 4400,
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        "[" * 3000 + "]" * 3000,
        "1.5",
        "2" + "0" * 400,
        "0x" + "f" * 3000,
        "True",
        "None",
        '"\\ud800"',
        '"\\udfff\\ud800"',
        '"' + "x" * 20_000 + '"',
    ]
)

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _dumps(obj: Any, ascii_only: bool) -> str:
    try:
        return json.dumps(obj, ensure_ascii=ascii_only)
    except ValueError:  # a float json cannot write: the line comes out malformed anyway
        return repr(obj)


@st.composite
def review_line(draw: st.DrawFn, year: int) -> str:
    """A review line of ``year``'s release: well formed, with wrong types, or with a raw
    token the parser refuses spliced in."""
    obj: dict[str, Any] = {
        "reviewerID": draw(st.one_of(st.sampled_from(["U1", "U2", "U3"]), text, json_value)),
        "asin": draw(st.one_of(st.sampled_from(["B1", "B2"]), text, json_value)),
        "unixReviewTime": draw(st.one_of(st.integers(0, 2**40), st.integers(), json_value)),
        "reviewText": draw(st.one_of(text, json_value)),
        "summary": draw(st.one_of(text, st.none())),
        "overall": draw(st.one_of(st.floats(allow_nan=True), st.integers(), json_value)),
    }
    if year == 2018:
        obj.update(
            vote=draw(st.one_of(st.just("1,234"), json_value)),
            verified=draw(st.booleans()),
            style=draw(json_value),
        )
    for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=2, unique=True)):
        del obj[key]
    line = _dumps(obj, draw(st.booleans()))
    if draw(st.booleans()):  # a raw token in place of a value (the last key wins)
        key = draw(st.sampled_from(["unixReviewTime", "overall", "helpful", "asin"]))
        line = line[:-1].rstrip() + (", " if len(line) > 2 else "") + f'"{key}": {draw(HUGE)}}}'
    return line


@st.composite
def meta_line(draw: st.DrawFn, year: int) -> str:
    """A metadata line: a Python literal (2014) or JSON (2018), with odd values."""
    obj: dict[str, Any] = {
        "asin": draw(st.one_of(st.sampled_from(["B1", "B2", "B3"]), text, json_value)),
        "title": draw(st.one_of(text, json_value)),
        "brand": draw(st.one_of(text, json_value)),
    }
    if year == 2014:
        obj["categories"] = draw(
            st.one_of(st.lists(st.lists(text, max_size=3), max_size=2), json_value)
        )
        obj["imUrl"] = draw(st.one_of(text, json_value))
        line = repr(obj)
    else:
        obj["category"] = draw(st.one_of(st.lists(text, max_size=3), json_value))
        obj["imageURLHighRes"] = draw(st.one_of(st.lists(text, max_size=2), json_value))
        line = _dumps(obj, draw(st.booleans()))
    if draw(st.booleans()):
        token = draw(HUGE)
        line = line[:-1].rstrip() + (", " if len(line) > 2 else "") + f"'price': {token}}}"
    return line


def damaged(line: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """A line as bytes, sometimes cut, sometimes with random bytes in it, sometimes random
    bytes alone."""

    def cut(data: bytes, at: float) -> bytes:
        return data[: int(len(data) * at)]

    plain = line.map(lambda s: s.encode("utf-8", "surrogatepass"))
    return st.one_of(
        plain,
        plain,
        st.tuples(plain, st.floats(0, 1)).map(lambda t: cut(*t)),
        st.tuples(plain, st.binary(max_size=8), st.floats(0, 1)).map(
            lambda t: cut(t[0], t[2]) + t[1] + t[0][len(cut(t[0], t[2])) :]
        ),
        st.binary(max_size=40),
    )


@st.composite
def raw_file(draw: st.DrawFn, lines: st.SearchStrategy[bytes]) -> tuple[bytes, bool]:
    """A file's bytes from ``lines``: plain or gzip, maybe a BOM, maybe cut; and whether it is
    plain (then every line read can be accounted for)."""
    body = b"\n".join(draw(st.lists(lines, max_size=12)))
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    if draw(st.booleans()):
        return body, True
    data = gzip.compress(body, mtime=0)
    if draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data, False


def _nonempty_lines(data: bytes) -> int:
    """Non-empty lines as the parser reads a plain file (UTF-8, BOM ignored, bad bytes
    replaced; what ``str.strip`` leaves)."""
    import io

    return sum(
        1
        for x in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="replace")
        if x.strip()
    )


def _writable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_error(e: DataError, path: Path) -> None:
    """One bounded message naming the file."""
    text = str(e)
    assert str(path.name) in text, text
    assert len(text) < 1000, len(text)


def _check_skips(skips: SkipLog) -> None:
    for example in skips.examples:
        assert len(example) < 2 * MAX_SHOWN + 200, len(example)
        assert _writable(example), ascii(example)


# --------------------------------------------------------------------------- line parsers


@pytest.mark.parametrize("year", [2014, 2018])
@pytest.mark.parametrize("mode", ["default", "strict", "lenient"])
@budget(60)
@given(data=st.data())
def test_review_lines_give_records_skips_or_one_error(
    year: int, mode: str, data: st.DataObject
) -> None:
    content, plain = data.draw(raw_file(damaged(review_line(year))))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("r.json" if plain else "r.json.gz")
        path.write_bytes(content)
        skips = SkipLog()
        try:
            got = list(
                iter_reviews(path, skips, strict=mode == "strict", lenient=mode == "lenient")
            )
        except DataError as e:
            _check_error(e, path)
            return
        assert sorted(p.name for p in Path(d).iterdir()) == [path.name]  # read only
    for r in got:
        assert isinstance(r.user, str) and r.user and isinstance(r.asin, str) and r.asin
        assert isinstance(r.time, int) and 0 <= r.time < 2**53
        assert r.rating is None or (isinstance(r.rating, float) and math.isfinite(r.rating))
        assert all(_writable(s) for s in (r.user, r.asin, r.text))
    _check_skips(skips)
    if plain:  # every line is a record or a counted skip: nothing dropped silently
        line_skips = skips.total() - skips.counts[REPAIRED]
        assert len(got) + line_skips == _nonempty_lines(content), skips.counts


@pytest.mark.parametrize("year", [2014, 2018])
@pytest.mark.parametrize("mode", ["default", "strict", "lenient"])
@budget(60)
@given(data=st.data())
def test_meta_lines_give_records_skips_or_one_error(
    year: int, mode: str, data: st.DataObject
) -> None:
    content, plain = data.draw(raw_file(damaged(meta_line(year))))
    asins = data.draw(st.one_of(st.none(), st.just(["B1", "B2"])))
    fmt = "amazon2014" if year == 2014 else "amazon2018"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("m.json" if plain else "m.json.gz")
        path.write_bytes(content)
        skips = SkipLog()
        try:
            got = list(
                iter_meta(
                    path,
                    fmt,
                    asins=asins,
                    skips=skips,
                    strict=mode == "strict",
                    lenient=mode == "lenient",
                )
            )
        except DataError as e:
            _check_error(e, path)
            return
    for m in got:
        assert isinstance(m.asin, str) and (asins is None or m.asin in asins)
        strings = [
            m.asin,
            m.title,
            m.brand,
            m.leaf_category,
            *m.image_urls,
            *(c for path_ in m.categories for c in path_),
        ]
        assert all(isinstance(s, str) and _writable(s) for s in strings)
    _check_skips(skips)
    if plain and asins is None:  # with asins, lines of other items are passed over uncounted
        line_skips = skips.total() - skips.counts[REPAIRED]
        assert len(got) + line_skips == _nonempty_lines(content), skips.counts


# --------------------------------------------------------------------------- prepare

N_USERS, N_ITEMS, PER_USER = 10, 8, 6  # each item reviewed by 7 or 8 users: a 5-core shop
CFG = PrepareConfig(
    image_size=4, n_neg=1, w2v_dim=4, w2v_epochs=1, w2v_min_count=1, image_workers=1, shape_top_k=3
)
WORDS = ["soft", "blue", "shirt", "nice", "fits", "well", "cheap", "warm"]


def _shop_lines(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """The reviews and 2014 metadata lines of a small well-formed shop, with odd text."""
    reviews = []
    for u in range(N_USERS):
        for k in range(PER_USER):
            i = (u + k) % N_ITEMS
            reviews.append(
                json.dumps(
                    {
                        "reviewerID": f"U{u:02d}",
                        "asin": f"B{i:02d}",
                        "overall": 4.0,
                        "unixReviewTime": 1_300_000_000 + 86_400 * (7 * u + k),
                        "reviewText": " ".join(WORDS[(u + k + j) % len(WORDS)] for j in range(4)),
                        "summary": "ok",
                    }
                )
            )
    meta = [
        repr(
            {
                "asin": f"B{i:02d}",
                "title": draw(text),
                "brand": draw(text),
                "categories": [["Shop", draw(text)]],
            }
        )
        for i in range(N_ITEMS)
    ]
    return reviews, meta


@st.composite
def damaged_shop(draw: st.DrawFn) -> dict[str, bytes]:
    """The files of a small shop, with random damage to some lines and maybe to a file."""
    reviews, meta = _shop_lines(draw)
    out: dict[str, bytes] = {}
    for name, ls, make in (
        ("reviews_Fuzz_5.json.gz", reviews, review_line(2014)),
        ("meta_Fuzz.json.gz", meta, meta_line(2014)),
    ):
        lines = [x.encode("utf-8", "surrogatepass") for x in ls]
        for _ in range(draw(st.integers(0, 4))):  # replace, insert or cut a few lines
            at = draw(st.integers(0, len(lines) - 1))
            how = draw(st.sampled_from(["replace", "insert", "cut"]))
            bad = draw(damaged(make))
            if how == "replace":
                lines[at] = bad
            elif how == "insert":
                lines.insert(at, bad)
            else:
                lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        data = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)
        if draw(st.integers(0, 9)) == 0:  # now and then the file itself is cut
            data = data[: draw(st.integers(0, len(data)))]
        out[name] = data
    return out


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@budget(25)
@given(files=damaged_shop(), mode=st.sampled_from(["default", "strict", "lenient"]))
def test_prepare_of_a_damaged_shop_is_a_dataset_or_one_user_error(
    files: dict[str, bytes], mode: str
) -> None:
    from mdr.data.dataset import ProcessedDataset
    from mdr.data.preprocess import prepare

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        raw = root / "raw"
        raw.mkdir()
        for name, data in files.items():
            (raw / name).write_bytes(data)
        (root / "mine.txt").write_text("keep me")
        before = _snapshot(root)
        out = root / "out"
        try:
            manifest = prepare(
                raw,
                out,
                cfg=CFG,
                progress=False,
                strict=mode == "strict",
                lenient=mode == "lenient",
            )
        except USER_ERRORS as e:
            assert len(str(e)) < 2000, len(str(e))
            assert not out.exists()
        else:
            ds = ProcessedDataset.open(out)  # complete, and readable back
            assert len(ds.user_ids) == ds.n_users == manifest["counts"]["users"]
            assert len(ds.items) == ds.n_items and len(ds.vocab) >= 3
            _check_skips_dict(manifest["skips"])
        after = {
            k: v for k, v in _snapshot(root).items() if k != "out" and not k.startswith("out/")
        }
        assert after == before  # nothing outside the output folder changed (no leftovers)


def _check_skips_dict(skips: dict[str, Any]) -> None:
    for example in skips["examples"]:
        assert len(example) < 2 * MAX_SHOWN + 200, len(example)
