"""Download against a local HTTP server on 127.0.0.1: resume, retries, images, safety."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mdr.data.download import (
    CATEGORY_ALIASES,
    DownloadError,
    download,
    gzip_is_complete,
    image_problem,
    resolve_category,
    source_files,
)
from mdr.data.parse import DataError, image_filename

pytestmark = pytest.mark.network_local


def _load_http_server() -> Any:
    """Import tests/http_server.py by path (pytest runs with --import-mode=importlib)."""
    name = "mdr_tests_http_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("http_server.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


LocalHTTPServer = _load_http_server().LocalHTTPServer

CAT = "Toys_and_Games"
GOOD = ["B00000GOOD1", "B00000GOOD2"]
EVIL = "../evil"
CORRUPT, MISSING, NO_URL = "B00000CORR", "B00000MISS", "B00000NOURL"
ITEMS = [*GOOD, EVIL, CORRUPT, MISSING, NO_URL]
USERS = [f"U{i}" for i in range(5)]
FAST = {"retries": 2, "backoff": 0.001, "timeout": 5.0, "workers": 4, "progress": False}


# -- fixture data -----------------------------------------------------------------------------


def _gz(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="JPEG")
    return buf.getvalue()


def _reviews(items: list[str]) -> bytes:
    """Every user reviews every item: a 5-core file."""
    lines = [
        json.dumps({"reviewerID": u, "asin": a, "reviewText": f"nice toy {a}", "summary": "ok",
                    "overall": 4.0, "unixReviewTime": 1_400_000_000 + 10 * i + j})
        for i, u in enumerate(USERS) for j, a in enumerate(items)
    ]  # fmt: skip
    return _gz(lines)


def _img_path(asin: str) -> str:
    return f"/img/{asin.replace('../', 'dotdot_')}.jpg"


def _meta_2014(srv: Any) -> bytes:
    """Python-literal lines; one malformed line; one item outside the 5-core set."""
    lines = []
    for a in [*ITEMS, "B0000OTHER"]:
        d: dict[str, Any] = {"asin": a, "title": f"toy {a}", "categories": [["Toys", "Cars"]]}
        if a != NO_URL:
            d["imUrl"] = srv.url(_img_path(a))
        lines.append(repr(d))
    lines.insert(2, "{'title': 'broken line")
    return _gz(lines)


@pytest.fixture
def shop() -> Iterator[Any]:
    """A server holding the 2014 files of CAT under /data and the item images under /img."""
    with LocalHTTPServer(max_lifetime_s=30) as srv:
        srv.add(f"/data/reviews_{CAT}_5.json.gz", _reviews(ITEMS))
        srv.add(f"/data/meta_{CAT}.json.gz", _meta_2014(srv))
        for k, a in enumerate([*GOOD, EVIL]):
            srv.add(_img_path(a), _jpeg((40 * k, 200, 90)))
        srv.add(_img_path("B0000OTHER"), _jpeg((1, 2, 3)))
        srv.add(_img_path(CORRUPT), b"\xff\xd8\xff\xe0 this is not really a jpeg")
        yield srv


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


REVIEWS, META = f"/data/reviews_{CAT}_5.json.gz", f"/data/meta_{CAT}.json.gz"


# -- names and URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "year", "expected"),
    [("cloth", 2014, "Clothing_Shoes_and_Jewelry"), ("TOYS", 2018, "Toys_and_Games"),
     ("office", 2014, "Office_Products"), ("video_games", 2014, "Video_Games"),
     ("AMAZON_FASHION", 2018, "AMAZON_FASHION")],
)  # fmt: skip
def test_resolve_category(name: str, year: int, expected: str) -> None:
    assert resolve_category(name, year) == expected
    assert set(CATEGORY_ALIASES) == {"cloth", "toys", "office"}


def test_unknown_category_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown category 'Nonsense' for the 2014 release"):
        download("Nonsense", tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="unknown category 'AMAZON_FASHION' for the 2014"):
        resolve_category("AMAZON_FASHION", 2014)  # a 2018-only category
    with pytest.raises(DataError, match="unknown category"):  # a mirror still needs a safe name
        resolve_category("../x", 2014, allow_custom=True)
    with pytest.raises(DataError, match="release year"):
        resolve_category("toys", 2016)
    assert resolve_category("Synthetic", 2014, allow_custom=True) == "Synthetic"
    assert not (tmp_path / "out").exists()


def test_source_urls_known_answer() -> None:
    snap = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
    assert source_files("Office_Products", 2014) == {
        "reviews": ("reviews_Office_Products_5.json.gz", f"{snap}/reviews_Office_Products_5.json.gz"),
        "meta": ("meta_Office_Products.json.gz", f"{snap}/meta_Office_Products.json.gz"),
    }
    v2 = "https://jmcauley.ucsd.edu/data/amazon_v2"
    assert source_files("Office_Products", 2018) == {
        "reviews": ("Office_Products_5.json.gz", f"{v2}/categoryFilesSmall/Office_Products_5.json.gz"),
        "meta": ("meta_Office_Products.json.gz", f"{v2}/metaFiles2/meta_Office_Products.json.gz"),
    }
    mirror = source_files("Office_Products", 2018, base_url="http://m.example/x/")
    assert mirror["reviews"][1] == "http://m.example/x/Office_Products_5.json.gz"
    assert mirror["meta"][1] == "http://m.example/x/meta_Office_Products.json.gz"


# -- the whole job ----------------------------------------------------------------------------


def test_full_download_reports_every_missing_image(shop: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = download("toys", out, base_url=shop.url("/data"), **{**FAST, "progress": True})

    assert report["category"] == CAT
    assert sorted(report["fetched"]) == sorted([f"reviews_{CAT}_5.json.gz", f"meta_{CAT}.json.gz"])
    assert (report["n_items"], report["n_users"], report["n_reviews"]) == (6, 5, 30)
    assert report["n_items_with_meta"] == 6
    assert report["skips"]["counts"] == {"malformed meta line": 1}
    img = report["images"]
    assert (img["items"], img["ok"], img["fetched"], img["failed"]) == (6, 3, 3, 3)
    assert img["reasons"] == {"HTTP 404": 1, "corrupt image": 1, "no image URL": 1}
    by_asin = {f["asin"]: f for f in img["failures"]}
    assert by_asin[MISSING]["reason"] == "HTTP 404"
    assert by_asin[CORRUPT]["reason"] == "corrupt image"
    assert by_asin[NO_URL] == {"asin": NO_URL, "url": None, "reason": "no image URL",
                               "detail": "metadata lists no image"}

    on_disk = json.loads((out / "images_report.json").read_text())
    assert on_disk["failures"] == img["failures"] and on_disk["failed"] == 3

    # exactly the valid images, the unsafe ASIN under a hashed name inside images/
    assert image_filename(EVIL).startswith("_")
    expected = {f"images/{image_filename(a)}" for a in [*GOOD, EVIL]}
    assert _files_under(out) == expected | {
        f"reviews_{CAT}_5.json.gz", f"meta_{CAT}.json.gz", "images_report.json"}
    assert _files_under(tmp_path) == {f"out/{p}" for p in _files_under(out)}  # nothing outside out
    for a in [*GOOD, EVIL]:
        assert image_problem((out / "images" / image_filename(a)).read_bytes()) is None

    # items outside the 5-core set are never fetched; a 404 or corrupt image is not retried
    assert shop.counts[_img_path("B0000OTHER")] == 0
    assert shop.counts[_img_path(MISSING)] == 1
    assert shop.counts[_img_path(CORRUPT)] == 1


def test_rerun_downloads_nothing_new(shop: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    download(CAT, out, base_url=shop.url("/data"), **FAST)
    first = dict(shop.counts)
    # a damaged image on disk is fetched again; everything complete is skipped
    (out / "images" / image_filename(GOOD[0])).write_bytes(b"garbage")
    report = download(CAT, out, base_url=shop.url("/data"), **FAST)

    assert report["fetched"] == [] and len(report["skipped"]) == 2
    assert all(f["attempts"] == 0 for f in report["files"].values())
    assert (report["images"]["skipped"], report["images"]["fetched"]) == (2, 1)
    assert report["images"]["failed"] == 3
    grew = {p for p in shop.counts if shop.counts[p] != first.get(p, 0)}
    # only the damaged image and the two failures worth another try were requested again
    assert grew == {_img_path(GOOD[0]), _img_path(MISSING), _img_path(CORRUPT)}
    assert shop.counts[REVIEWS] == first[REVIEWS] == 1

    # a damaged image whose re-fetch fails is removed, not kept
    (out / "images" / image_filename(GOOD[1])).write_bytes(b"garbage")
    shop.files.pop(_img_path(GOOD[1]))
    report = download(CAT, out, base_url=shop.url("/data"), **FAST)
    assert report["images"]["reasons"]["HTTP 404"] == 2
    assert not (out / "images" / image_filename(GOOD[1])).exists()


def test_part_file_is_resumed_with_range(shop: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    full = shop.files[REVIEWS]
    have = len(full) // 3
    (out / f"reviews_{CAT}_5.json.gz.part").write_bytes(full[:have])

    report = download(CAT, out, base_url=shop.url("/data"), images=False, **FAST)

    assert shop.ranges[REVIEWS] == [f"bytes={have}-"]
    assert report["files"]["reviews"]["resumed"] is True
    assert (out / f"reviews_{CAT}_5.json.gz").read_bytes() == full
    assert not (out / f"reviews_{CAT}_5.json.gz.part").exists()
    assert "images" not in report and not (out / "images").exists()
    assert report["n_items"] == 6


@pytest.mark.parametrize("case", ["server_ignores_range", "part_is_garbage"])
def test_bad_resume_restarts(shop: Any, tmp_path: Path, case: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    full = shop.files[REVIEWS]
    if case == "server_ignores_range":
        shop.ignore_range(REVIEWS)
        prefix = full[:10]
    else:
        prefix = b"not the start of any gzip file"
    (out / f"reviews_{CAT}_5.json.gz.part").write_bytes(prefix)

    report = download(CAT, out, base_url=shop.url("/data"), images=False, **FAST)

    assert (out / f"reviews_{CAT}_5.json.gz").read_bytes() == full
    # ignored Range: one 200 answer restarts; garbage + 206: verification fails, one fresh retry
    assert shop.counts[REVIEWS] == (1 if case == "server_ignores_range" else 2)
    assert shop.ranges[REVIEWS][0] == f"bytes={len(prefix)}-"
    assert report["files"]["reviews"]["status"] == "fetched"


def test_500_once_and_truncation_once_are_retried(shop: Any, tmp_path: Path) -> None:
    shop.fail(REVIEWS, status=500)
    shop.truncate(META)
    shop.truncate(_img_path(GOOD[1]))
    shop.fail(_img_path(GOOD[0]), status=503)
    out = tmp_path / "out"

    report = download(CAT, out, base_url=shop.url("/data"), **FAST)

    assert (out / f"reviews_{CAT}_5.json.gz").read_bytes() == shop.files[REVIEWS]
    assert (out / f"meta_{CAT}.json.gz").read_bytes() == shop.files[META]
    assert report["files"]["reviews"]["attempts"] == 2
    assert report["files"]["meta"]["attempts"] == 2
    assert shop.counts[REVIEWS] == shop.counts[META] == 2
    # the truncated transfer's bytes were kept and the retry asked only for the rest
    assert shop.ranges[META] == [None, f"bytes={len(shop.files[META]) // 2}-"]
    assert report["files"]["meta"]["resumed"] is True
    assert shop.counts[_img_path(GOOD[0])] == shop.counts[_img_path(GOOD[1])] == 2
    assert report["images"]["ok"] == 3
    assert report["images"]["reasons"] == {"HTTP 404": 1, "corrupt image": 1, "no image URL": 1}


def test_2018_format_uses_high_res_first(tmp_path: Path) -> None:
    items = ["B1", "B2", "B3", "B4", "B5"]
    with LocalHTTPServer(max_lifetime_s=30) as srv:
        meta = []
        for a in items:
            d: dict[str, Any] = {"asin": a, "title": a, "category": ["Toys", "Dolls"],
                                 "imageURL": [srv.url(f"/lo/{a}.jpg")]}
            if a != "B5":  # B5 has only the small picture
                d["imageURLHighRes"] = [srv.url(f"/hi/{a}.jpg"), srv.url(f"/hi/{a}-2.jpg")]
            meta.append(json.dumps(d))
            srv.add(f"/hi/{a}.jpg", _jpeg((200, 10, 10)))
            srv.add(f"/lo/{a}.jpg", _jpeg((10, 10, 200)))
        srv.add(f"/v2/{CAT}_5.json.gz", _reviews(items))
        srv.add(f"/v2/meta_{CAT}.json.gz", _gz(meta))
        out = tmp_path / "out"

        report = download("toys", out, year=2018, base_url=srv.url("/v2"), **FAST)

        assert report["fetched"] == [f"{CAT}_5.json.gz", f"meta_{CAT}.json.gz"]
        assert report["images"]["ok"] == 5 and report["images"]["failed"] == 0
        assert [srv.counts[f"/hi/{a}.jpg"] for a in items] == [1, 1, 1, 1, 0]
        assert [srv.counts[f"/lo/{a}.jpg"] for a in items] == [0, 0, 0, 0, 1]
        assert srv.counts["/hi/B1-2.jpg"] == 0
        red = Image.open(out / "images" / "B1.jpg").convert("RGB").getpixel((8, 8))
        assert red[0] > 150 and red[2] < 80  # the high-res (red) picture was kept


# -- failures ---------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_clear_error_after_retries(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/data"
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match=r"reviews_Toys_and_Games_5\.json\.gz after 3 attempt"):
        download(CAT, tmp_path / "out", base_url=base, **FAST)
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "out" / f"reviews_{CAT}_5.json.gz").exists()


def test_missing_file_is_not_retried(shop: Any, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"after 1 attempt\(s\): HTTP 404.*category right"):
        download("office", tmp_path / "out", base_url=shop.url("/data"), **FAST)


def test_corrupt_gzip_is_refetched_then_fails(shop: Any, tmp_path: Path) -> None:
    shop.add(REVIEWS, b"\x1f\x8b\x08\x00" + b"\x00" * 40)  # a gzip header over junk
    with pytest.raises(DownloadError, match="corrupt gzip"):
        download(CAT, tmp_path / "out", base_url=shop.url("/data"), **FAST)
    assert shop.counts[REVIEWS] == 3
    assert not (tmp_path / "out" / f"reviews_{CAT}_5.json.gz").exists()


def test_image_timeout_is_reported(shop: Any, tmp_path: Path) -> None:
    shop.delay(_img_path(GOOD[0]), seconds=1.0, times=10)
    opts = {**FAST, "timeout": 0.2, "retries": 1}
    report = download(CAT, tmp_path / "out", base_url=shop.url("/data"), **opts)
    by_asin = {f["asin"]: f["reason"] for f in report["images"]["failures"]}
    assert by_asin[GOOD[0]] == "timeout"
    assert shop.counts[_img_path(GOOD[0])] == 2


def test_helpers_known_answers(tmp_path: Path) -> None:
    ok = tmp_path / "ok.gz"
    ok.write_bytes(_gz(["a", "b"]))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(ok.read_bytes()[:-6])
    assert gzip_is_complete(ok) and not gzip_is_complete(cut)
    assert image_problem(_jpeg((1, 2, 3))) is None
    assert image_problem(_jpeg((1, 2, 3))[:60]) is not None  # a truncated JPEG
    assert image_problem(b"") is not None
