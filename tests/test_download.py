"""Download against local HTTP(S) servers on 127.0.0.1: mirrors, TLS, resume, retries, images."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import logging
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mdr.data.download import (
    CATEGORY_ALIASES,
    MIRRORS,
    DownloadError,
    Mirror,
    RetryPolicy,
    download,
    fetch_images,
    gzip_is_complete,
    image_problem,
    plan_sources,
    resolve_category,
    source_files,
)
from mdr.data.parse import DataError, image_filename
from mdr.io import MARKER, OutputError, marker_text

pytestmark = pytest.mark.network_local


from tests.http_server import LocalHTTPServer  # noqa: E402

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
        json.dumps(
            {
                "reviewerID": u,
                "asin": a,
                "reviewText": f"nice toy {a}",
                "summary": "ok",
                "overall": 4.0,
                "unixReviewTime": 1_400_000_000 + 10 * i + j,
            }
        )
        for i, u in enumerate(USERS)
        for j, a in enumerate(items)
    ]
    return _gz(lines)


def _img_path(asin: str) -> str:
    return f"/img/{asin.replace('../', 'dotdot_')}.jpg"


def _meta_2014(srv: Any, drop: frozenset[str] = frozenset()) -> bytes:
    """Python-literal lines; one malformed line; one item outside the 5-core set; no ``drop``."""
    lines = []
    for a in [a for a in [*ITEMS, "B0000OTHER"] if a not in drop]:
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
    [
        ("cloth", 2014, "Clothing_Shoes_and_Jewelry"),
        ("TOYS", 2018, "Toys_and_Games"),
        ("office", 2014, "Office_Products"),
        ("video_games", 2014, "Video_Games"),
        ("AMAZON_FASHION", 2018, "AMAZON_FASHION"),
    ],
)
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
    snap = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
    assert source_files("Office_Products", 2014) == {
        "reviews": (
            "reviews_Office_Products_5.json.gz",
            f"{snap}/reviews_Office_Products_5.json.gz",
        ),
        "meta": ("meta_Office_Products.json.gz", f"{snap}/meta_Office_Products.json.gz"),
    }
    v2 = "https://jmcauley.ucsd.edu/data/amazon_v2"
    assert source_files("Office_Products", 2018) == {
        "reviews": (
            "Office_Products_5.json.gz",
            f"{v2}/categoryFilesSmall/Office_Products_5.json.gz",
        ),
        "meta": ("meta_Office_Products.json.gz", f"{v2}/metaFiles2/meta_Office_Products.json.gz"),
    }
    mirror = source_files("Office_Products", 2018, base_url="http://m.example/x/")
    assert mirror["reviews"][1] == "http://m.example/x/Office_Products_5.json.gz"
    assert mirror["meta"][1] == "http://m.example/x/meta_Office_Products.json.gz"


def test_mirror_table() -> None:
    assert [m.name for m in MIRRORS[2014]] == ["snap", "mcauleylab"]
    assert [m.name for m in MIRRORS[2018]] == ["jmcauley", "mcauleylab", "datarepo"]
    for year, mirrors in MIRRORS.items():
        for m in mirrors:
            assert m.reviews.startswith("https://") and m.meta.startswith("https://"), m
            assert not m.reviews.endswith("/") and m.source, m
            if year == 2014:  # reviews and metadata share one folder
                assert m.reviews == m.meta and m.reviews.endswith("/categoryFiles"), m
            else:  # 2018: apart, on every mirror
                assert m.reviews.endswith("/amazon_v2/categoryFilesSmall"), m
                assert m.meta.endswith("/amazon_v2/metaFiles2"), m
    lab = plan_sources("Toys_and_Games", 2018, mirror="McAuleyLab")  # any case
    assert lab["meta"][1][0].url == (
        "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/"
        "metaFiles2/meta_Toys_and_Games.json.gz"
    )
    default = plan_sources("Toys_and_Games", 2018)
    assert [s.label for s in default["reviews"][1]] == ["jmcauley", "mcauleylab", "datarepo"]


def test_own_urls_folder_or_file() -> None:
    plan = plan_sources(
        "Toys_and_Games",
        2018,
        reviews_url="http://h/dl/any_name.json.gz?sig=1",
        meta_url="http://h/meta",
    )
    assert plan["reviews"] == (f"{CAT}_5.json.gz", [plan["reviews"][1][0]])
    assert plan["reviews"][1][0].url == "http://h/dl/any_name.json.gz?sig=1"  # the file itself
    assert plan["meta"][1][0].url == f"http://h/meta/meta_{CAT}.json.gz"  # a folder
    assert plan["reviews"][1][0].label == "--reviews-url"
    # a file without its own URL still comes from the mirrors
    only_meta = plan_sources(CAT, 2014, meta_url="http://h/m/", mirror="snap")
    assert [s.label for s in only_meta["reviews"][1]] == ["snap"]
    assert only_meta["meta"][1][0].url == f"http://h/m/meta_{CAT}.json.gz"
    signed = plan_sources(CAT, 2014, meta_url="https://h/m?sig=a/b", mirror="snap")
    assert signed["meta"][1][0].url == f"https://h/m/meta_{CAT}.json.gz?sig=a/b"
    # --base-url: one folder for both, even when it looks like a file name
    both = plan_sources(CAT, 2014, base_url="http://h/x.gz")
    assert both["meta"][1][0].url == f"http://h/x.gz/meta_{CAT}.json.gz"
    assert both["meta"][1][0].label == "--base-url"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mirror": "nowhere"}, r"unknown mirror 'nowhere' for the 2014 release; mirrors: snap, "),
        ({"mirror": "jmcauley"}, r"unknown mirror 'jmcauley' for the 2014"),  # a 2018-only mirror
        ({"base_url": "http://h/", "meta_url": "http://h/m"}, r"--base-url is one folder"),
        ({"base_url": "http://h/", "mirror": "snap"}, r"--base-url is one folder"),
        ({"reviews_url": "http://h/r_5.json"}, r"--reviews-url .* uncompressed"),
        ({"meta_url": "ftp://h/m/"}, r"--meta-url must be an http\(s\) URL"),
        ({"meta_url": "/local/folder"}, r"--meta-url must be an http\(s\) URL"),
    ],
)
def test_bad_source_options_are_one_clear_error(
    tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        download(CAT, tmp_path / "out", **kwargs, progress=False)
    assert not (tmp_path / "out").exists()  # nothing is created before the options are checked


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
    assert by_asin[NO_URL] == {
        "asin": NO_URL,
        "url": None,
        "reason": "no image URL",
        "detail": "metadata lists no image",
    }
    assert (img["without_url"], img["without_meta"]) == (1, 0)

    on_disk = json.loads((out / "images_report.json").read_text())
    assert on_disk["failures"] == img["failures"] and on_disk["failed"] == 3

    # exactly the valid images, the unsafe ASIN under a hashed name inside images/
    assert image_filename(EVIL).startswith("_")
    expected = {f"images/{image_filename(a)}" for a in [*GOOD, EVIL]}
    assert _files_under(out) == expected | {
        f"reviews_{CAT}_5.json.gz",
        f"meta_{CAT}.json.gz",
        "images_report.json",
        MARKER,
    }
    assert json.loads((out / MARKER).read_text())["kind"] == "amazon-raw"  # a folder of its own
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

    # the damaged image was moved aside, not deleted
    aside = out / "images" / f"{image_filename(GOOD[0])}.damaged-1"
    assert aside.read_bytes() == b"garbage"
    assert report["images"]["moved_aside"] == [aside.name]
    assert image_problem((out / "images" / image_filename(GOOD[0])).read_bytes()) is None

    # a damaged image whose re-fetch fails is not kept under its name either: moved aside
    (out / "images" / image_filename(GOOD[1])).write_bytes(b"garbage")
    shop.files.pop(_img_path(GOOD[1]))
    report = download(CAT, out, base_url=shop.url("/data"), **FAST)
    assert report["images"]["reasons"]["HTTP 404"] == 2
    assert not (out / "images" / image_filename(GOOD[1])).exists()
    assert (out / "images" / f"{image_filename(GOOD[1])}.damaged-1").read_bytes() == b"garbage"


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
    # the .part found on disk (not this run's) was moved aside, never truncated or deleted
    why = "unused" if case == "server_ignores_range" else "damaged"
    aside = out / f"reviews_{CAT}_5.json.gz.part.{why}-1"
    assert aside.read_bytes().startswith(prefix)
    assert report["files"]["reviews"]["moved_aside"] == [aside.name]
    assert not (out / f"reviews_{CAT}_5.json.gz.part").exists()


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
            d: dict[str, Any] = {
                "asin": a,
                "title": a,
                "category": ["Toys", "Dolls"],
                "imageURL": [srv.url(f"/lo/{a}.jpg")],
            }
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
    with pytest.raises(
        DownloadError, match=r"reviews_Toys_and_Games_5\.json\.gz after 3 attempt"
    ) as err:
        download(CAT, tmp_path / "out", base_url=base, **FAST)
    assert "cannot connect (Connection refused); no source could be reached" in str(err.value)
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
    # the corrupt .part files were this run's own, from their first byte: discarded
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER]


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


def test_items_without_image_url_are_counted(shop: Any, tmp_path: Path) -> None:
    # GOOD[1] has no metadata record at all; NO_URL's record has no imUrl
    shop.add(META, _meta_2014(shop, drop=frozenset({GOOD[1]})))
    out = tmp_path / "out"
    report = download(CAT, out, base_url=shop.url("/data"), **FAST)

    img = report["images"]
    assert (img["without_url"], img["without_meta"]) == (2, 1)
    assert img["reasons"]["no image URL"] == 2
    by_asin = {f["asin"]: f["detail"] for f in img["failures"]}
    assert by_asin[GOOD[1]] == "no metadata record"
    assert by_asin[NO_URL] == "metadata lists no image"
    on_disk = json.loads((out / "images_report.json").read_text())
    assert (on_disk["without_url"], on_disk["without_meta"]) == (2, 1)
    assert report["n_items_with_meta"] == 5


# -- mirrors ----------------------------------------------------------------------------------


def _mirror(name: str, srv: Any, prefix: str) -> Mirror:
    """A mirror on a local server with separate reviews and metadata folders, as 2018's."""
    return Mirror(name, srv.url(f"{prefix}/reviews"), srv.url(f"{prefix}/meta"), "test")


def _publish(srv: Any, prefix: str, shop: Any) -> None:
    srv.add(f"{prefix}/reviews/reviews_{CAT}_5.json.gz", shop.files[REVIEWS])
    srv.add(f"{prefix}/meta/meta_{CAT}.json.gz", shop.files[META])


def test_mirror_fallback_after_404(shop: Any, tmp_path: Path, caplog: Any) -> None:
    _publish(shop, "/second", shop)  # /first holds nothing
    mirrors = [_mirror("first", shop, "/first"), _mirror("second", shop, "/second")]
    with caplog.at_level(logging.WARNING, logger="mdr.data.download"):
        report = download(CAT, tmp_path / "out", images=False, mirrors=mirrors, **FAST)

    for kind, name in (("reviews", f"reviews_{CAT}_5.json.gz"), ("meta", f"meta_{CAT}.json.gz")):
        f = report["files"][kind]
        assert (f["status"], f["source"]) == ("fetched", "second")
        assert [(t["source"], t["attempts"]) for t in f["tried"]] == [("first", 1)]
        assert f["tried"][0]["error"].startswith("HTTP 404")
        assert (tmp_path / "out" / name).read_bytes() == shop.files[
            REVIEWS if kind == "reviews" else META
        ]
    # each file is asked for in its own folder, once per mirror; a 404 is not retried
    assert shop.counts[f"/first/reviews/reviews_{CAT}_5.json.gz"] == 1
    assert shop.counts[f"/first/meta/meta_{CAT}.json.gz"] == 1
    assert shop.counts[f"/second/reviews/meta_{CAT}.json.gz"] == 0
    assert shop.counts[f"/second/meta/reviews_{CAT}_5.json.gz"] == 0
    assert any(
        r.getMessage().startswith(f"reviews_{CAT}_5.json.gz from first: HTTP 404")
        and r.getMessage().endswith("; trying second")
        for r in caplog.records
    )


def test_unreachable_mirror_is_not_asked_again(shop: Any, tmp_path: Path) -> None:
    _publish(shop, "/ok", shop)
    port = _closed_port()
    down = Mirror("down", f"http://127.0.0.1:{port}/r", f"http://127.0.0.1:{port}/m", "test")
    report = download(
        CAT, tmp_path / "out", images=False, mirrors=[down, _mirror("ok", shop, "/ok")], **FAST
    )
    reviews, meta = report["files"]["reviews"], report["files"]["meta"]
    assert (reviews["source"], meta["source"]) == ("ok", "ok")
    assert reviews["tried"][0]["attempts"] == 3  # retried: a refused connection may be passing
    assert (
        reviews["tried"][0]["error"]
        == "connection error: 127.0.0.1: cannot connect (Connection refused)"
    )
    assert (meta["tried"][0]["attempts"], meta["tried"][0]["skipped"]) == (0, True)


def test_every_mirror_failing_lists_each(shop: Any, tmp_path: Path) -> None:
    shop.fail(f"/second/reviews/reviews_{CAT}_5.json.gz", status=503, times=10)
    mirrors = [_mirror("first", shop, "/first"), _mirror("second", shop, "/second")]
    with pytest.raises(DownloadError) as err:
        download(CAT, tmp_path / "out", images=False, mirrors=mirrors, **FAST)
    lines = str(err.value).splitlines()
    assert lines[0] == f"could not download reviews_{CAT}_5.json.gz from any of its 2 sources:"
    assert lines[1].startswith("  first: HTTP 404") and lines[1].endswith("after 1 attempt(s))")
    assert lines[2].startswith("  second: HTTP 503") and lines[2].endswith("after 3 attempt(s))")
    assert lines[3] == "try --reviews-url/--meta-url (the file's folder or its full URL)"


def test_reviews_and_meta_urls_anywhere(shop: Any, tmp_path: Path) -> None:
    """A category of one's own: the reviews by full URL (any name), the metadata by folder."""
    shop.add("/dl/export-2024.json.gz", shop.files[REVIEWS])
    shop.add("/other/meta_My_Shop.json.gz", shop.files[META])
    out = tmp_path / "out"
    report = download(
        "My_Shop",
        out,
        images=False,
        reviews_url=shop.url("/dl/export-2024.json.gz"),
        meta_url=shop.url("/other/"),
        **FAST,
    )
    assert report["category"] == "My_Shop"
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER,
        "meta_My_Shop.json.gz",
        "reviews_My_Shop_5.json.gz",
    ]
    assert report["files"]["reviews"]["source"] == "--reviews-url"
    assert report["n_items"] == 6
    with pytest.raises(DataError, match="unknown category 'My_Shop'"):  # the mirrors lack it
        download("My_Shop", tmp_path / "out2", progress=False)


def test_cli_help_names_every_mirror(capsys: Any) -> None:
    from mdr.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "download", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--mirror", "--reviews-url", "--meta-url", "--base-url"):
        assert flag in text
    for year, mirrors in MIRRORS.items():
        names = ", ".join(m.name for m in mirrors)
        assert f"{year}: {names}" in text  # in table order


# -- the folder's ownership, files moved aside ------------------------------------------------


def _mine(root: Path) -> Path:
    """A folder of the user's own files."""
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    (root / f"reviews_{CAT}_5.json.gz").write_bytes(b"my own file of that name")
    return root


@pytest.mark.parametrize(
    "case", ["user-folder", "other-kind", "symlink", "plain-file", "images-symlink"]
)
def test_download_writes_only_into_a_folder_of_its_own(
    shop: Any, tmp_path: Path, case: str
) -> None:
    out = tmp_path / "out"
    if case == "user-folder":
        _mine(out)
        message = "not made by mdr"
    elif case == "other-kind":
        _mine(out)
        (out / MARKER).write_text(marker_text("prepared-dataset"))
        message = "holds mdr's prepared-dataset output, not amazon-raw"
    elif case == "symlink":
        out.symlink_to(_mine(tmp_path / "target"))
        message = "is a symbolic link"
    elif case == "plain-file":
        out.write_text("keep me")
        message = "exists and is not a folder"
    else:  # a folder download made, whose images/ was replaced by a link to elsewhere
        download(CAT, out, base_url=shop.url("/data"), images=False, **FAST)
        (out / "images").symlink_to(_mine(tmp_path / "target"), target_is_directory=True)
        message = "images: is a symbolic link"
    before = {str(p): (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    asked = sum(shop.counts.values())
    with pytest.raises(OutputError, match=message) as err:
        download(CAT, out, base_url=shop.url("/data"), **FAST)
    assert "\n" not in str(err.value)
    assert sum(shop.counts.values()) == asked  # refused before any request
    after = {str(p): (p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    assert after == before  # nothing created, moved or replaced


def test_download_into_a_folder_of_release_files_put_there_by_hand(
    shop: Any, tmp_path: Path
) -> None:
    out = tmp_path / "by-hand"
    out.mkdir()
    (out / f"reviews_{CAT}_5.json.gz").write_bytes(shop.files[REVIEWS])
    (out / "meta_Office_Products.json.gz.part").write_bytes(b"another category's partial")
    report = download(CAT, out, base_url=shop.url("/data"), **FAST)
    assert (report["skipped"], report["fetched"]) == (
        [f"reviews_{CAT}_5.json.gz"],
        [f"meta_{CAT}.json.gz"],
    )
    assert shop.counts[REVIEWS] == 0 and report["images"]["ok"] == 3
    assert not (out / MARKER).exists()  # not a folder mdr made: it is not marked as one
    assert (out / "meta_Office_Products.json.gz.part").read_bytes() == b"another category's partial"
    # and again: the folder now holds only what a download writes
    assert download(CAT, out, base_url=shop.url("/data"), **FAST)["images"]["skipped"] == 3


def test_a_damaged_file_is_moved_aside_once_its_replacement_is_complete(
    shop: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    download(CAT, out, base_url=shop.url("/data"), images=False, **FAST)
    name = f"reviews_{CAT}_5.json.gz"
    for n in (1, 2):  # damaged twice: each copy keeps its own name
        damaged = shop.files[REVIEWS][: -5 * n]
        (out / name).write_bytes(damaged)
        report = download(CAT, out, base_url=shop.url("/data"), images=False, **FAST)
        assert report["files"]["reviews"]["moved_aside"] == [f"{name}.damaged-{n}"]
        assert (out / f"{name}.damaged-{n}").read_bytes() == damaged
        assert (out / name).read_bytes() == shop.files[REVIEWS]
    # while its replacement cannot be had, the damaged file stays where it is
    (out / name).write_bytes(b"damaged")
    shop.files.pop(REVIEWS)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(CAT, out, base_url=shop.url("/data"), images=False, **FAST)
    assert (out / name).read_bytes() == b"damaged"


def test_messages_quote_an_input_bounded(tmp_path: Path) -> None:
    huge = "x" * 100_000
    for kwargs in (
        {"category": huge},
        {"category": CAT, "meta_url": "ftp://" + huge},
        {"category": CAT, "reviews_url": f"http://h/{huge}.json"},
        {"category": CAT, "mirror": huge},
    ):
        with pytest.raises(DataError) as err:
            download(out=tmp_path / "out", progress=False, **kwargs)
        # the value is cut and its full length said (the prefix or suffix counted with it)
        assert len(str(err.value)) < 1200
        assert re.search(r"\.\.\. \(1000\d\d characters\)", str(err.value)), str(err.value)
    assert not (tmp_path / "out").exists()


# -- Ctrl-C -----------------------------------------------------------------------------------


def _slow_images(srv: Any, n: int, seconds: float) -> str:
    """A 2014 shop of ``n`` items under /slow whose every image takes ``seconds`` to answer."""
    items = [f"B{i:09d}" for i in range(n)]
    srv.add(f"/slow/reviews_{CAT}_5.json.gz", _reviews(items))
    srv.add(
        f"/slow/meta_{CAT}.json.gz",
        _gz([repr({"asin": a, "title": a, "imUrl": srv.url(f"/simg/{a}.jpg")}) for a in items]),
    )
    jpeg = _jpeg((10, 120, 30))
    for a in items:
        srv.add(f"/simg/{a}.jpg", jpeg)
        srv.delay(f"/simg/{a}.jpg", seconds, times=5)
    return srv.url("/slow")


def interrupted_download(
    srv: Any,
    base: str,
    out: Path,
    after: int = 16,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``mdr data download`` of the /slow shop in a subprocess, send it SIGINT once the
    server has been asked for ``after`` images, and return the seconds from the signal to
    its exit, with its status and output."""
    proc = subprocess.Popen(
        [
            python,
            "-m",
            "mdr.cli",
            "data",
            "download",
            "--category",
            CAT,
            "--out",
            str(out),
            "--base-url",
            base,
            "--workers",
            "8",
            "-q",
        ],
        cwd=out.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(v for k, v in srv.counts.items() if k.startswith("/simg/")) < after:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no image was asked for"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out_text, err_text = proc.communicate(timeout=60)
        return time.monotonic() - t0, subprocess.CompletedProcess(
            proc.args, proc.returncode, out_text, err_text
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_stops_the_images_at_once_and_writes_the_report(tmp_path: Path) -> None:
    n = 100
    with LocalHTTPServer(max_lifetime_s=90) as srv:
        base = _slow_images(srv, n, seconds=1.2)  # 8 workers: about 16 s for all of them
        out = tmp_path / "out"
        seconds, r = interrupted_download(srv, base, out)
        asked = sum(v for k, v in srv.counts.items() if k.startswith("/simg/"))
        time.sleep(0.3)
        assert sum(v for k, v in srv.counts.items() if k.startswith("/simg/")) == asked
    assert r.returncode == 130, r.stderr
    assert seconds < 1.5, f"{seconds:.2f} s from SIGINT to exit"
    assert "Traceback" not in r.stderr and r.stderr.strip().endswith("mdr: interrupted")
    assert "images_report.json written" in r.stderr
    report = json.loads((out / "images_report.json").read_text())
    on_disk = sorted(p.name for p in (out / "images").iterdir())
    assert report["interrupted"] is True and report["items"] == n
    assert report["fetched"] == len(on_disk) < n // 2  # what was fetched, nothing half-written
    assert report["not_tried"] == n - report["fetched"] - report["failed"] > n // 2
    assert asked < n  # the items still queued were never asked for
    assert all(image_problem((out / "images" / f).read_bytes()) is None for f in on_disk)


# -- TLS --------------------------------------------------------------------------------------

_OPENSSL_CONFIG = """
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = mdr test CA
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ ca ]
default_ca = test_ca
[ test_ca ]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = policy_any
unique_subject = no
x509_extensions = leaf
[ policy_any ]
commonName = supplied
[ leaf ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path] | Path]:
    """A test CA and, for 127.0.0.1, a valid, an expired and a self-signed certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    (d / "cfg").write_text(_OPENSSL_CONFIG)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True, timeout=30)

    def stamp(t: dt.datetime) -> str:
        return t.strftime("%y%m%d%H%M%SZ")

    now = dt.datetime.now(dt.UTC)
    run(
        "req",
        "-x509",
        "-config",
        "cfg",
        "-extensions",
        "v3_ca",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
    )
    run(
        "req",
        "-new",
        "-config",
        "cfg",
        *ec,
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    for name, start, end in [
        ("good", now - dt.timedelta(days=1), now + dt.timedelta(days=30)),
        ("expired", now - dt.timedelta(days=60), now - dt.timedelta(days=30)),
    ]:
        run(
            "ca",
            "-config",
            "cfg",
            "-batch",
            "-notext",
            "-in",
            "leaf.csr",
            "-out",
            f"{name}.pem",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-startdate",
            stamp(start),
            "-enddate",
            stamp(end),
        )
    run(
        "req",
        "-x509",
        "-config",
        "cfg",
        "-extensions",
        "leaf",
        *ec,
        "-keyout",
        "self.key",
        "-out",
        "self.pem",
        "-days",
        "30",
        "-subj",
        "/CN=127.0.0.1",
    )
    return {
        "ca": d / "ca.pem",
        "good": (d / "good.pem", d / "leaf.key"),
        "expired": (d / "expired.pem", d / "leaf.key"),
        "self-signed": (d / "self.pem", d / "self.key"),
    }


def _handshakes_settle(srv: Any, failures: int) -> None:
    """The server counts a refused handshake a moment after the client gave up: wait for it."""
    deadline = time.monotonic() + 3
    while srv.tls_failures < failures and time.monotonic() < deadline:
        time.sleep(0.01)


def test_https_mirror_with_a_trusted_certificate(
    shop: Any, certs: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs["ca"]))
    with LocalHTTPServer(max_lifetime_s=30, tls=certs["good"]) as tls:
        _publish(tls, "/v", shop)
        report = download(
            CAT, tmp_path / "out", images=False, mirrors=[_mirror("https", tls, "/v")], **FAST
        )
        assert report["fetched"] == [f"reviews_{CAT}_5.json.gz", f"meta_{CAT}.json.gz"]
        assert report["files"]["meta"]["url"].startswith("https://127.0.0.1:")
        assert tls.tls_failures == 0


@pytest.mark.parametrize(
    ("cert", "why"),
    [("expired", "certificate has expired"), ("self-signed", "self-signed certificate")],
)
def test_tls_failure_is_one_line_and_not_retried(
    shop: Any, certs: Any, tmp_path: Path, monkeypatch: Any, cert: str, why: str
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs["ca"]))  # trusted CA, bad leaf
    with LocalHTTPServer(max_lifetime_s=30, tls=certs[cert]) as tls:
        _publish(tls, "/v", shop)
        mirrors = [_mirror("first", tls, "/v"), _mirror("second", shop, "/nowhere")]
        t0 = time.perf_counter()
        with pytest.raises(DownloadError) as err:
            download(
                CAT,
                tmp_path / "out",
                images=False,
                mirrors=mirrors,
                mirror="first",
                **{**FAST, "retries": 4, "backoff": 1.0},
            )
        assert time.perf_counter() - t0 < 3  # no backoff: a certificate error is not retried
        assert str(err.value) == (
            f"127.0.0.1: TLS certificate verification failed ({why}); "
            "try --mirror second or --reviews-url/--meta-url"
        )
        _handshakes_settle(tls, 1)
        assert (tls.tls_handshakes, tls.tls_failures) == (1, 1)
        assert sum(tls.counts.values()) == 0
    assert not (tmp_path / "out" / f"reviews_{CAT}_5.json.gz.part").exists()


def test_tls_failure_moves_on_to_the_next_mirror(
    shop: Any, certs: Any, tmp_path: Path, monkeypatch: Any, caplog: Any
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs["ca"]))
    with LocalHTTPServer(max_lifetime_s=30, tls=certs["expired"]) as tls:
        _publish(tls, "/v", shop)
        _publish(shop, "/ok", shop)
        mirrors = [_mirror("expired", tls, "/v"), _mirror("ok", shop, "/ok")]
        with caplog.at_level(logging.WARNING, logger="mdr.data.download"):
            report = download(CAT, tmp_path / "out", mirrors=mirrors, **FAST)
        _handshakes_settle(tls, 1)
        # the host that failed TLS for the reviews is not asked again for the metadata
        assert (tls.tls_handshakes, tls.tls_failures) == (1, 1)
    reviews, meta = report["files"]["reviews"], report["files"]["meta"]
    assert (reviews["source"], meta["source"]) == ("ok", "ok")
    assert reviews["tried"][0]["error"] == (
        "127.0.0.1: TLS certificate verification failed (certificate has expired)"
    )
    assert meta["tried"][0]["attempts"] == 0
    assert "not asked again" in meta["tried"][0]["error"]
    assert report["images"]["ok"] == 3  # the job went on to the images
    assert [r.getMessage() for r in caplog.records] == [
        f"reviews_{CAT}_5.json.gz from expired: 127.0.0.1: TLS certificate verification failed "
        "(certificate has expired); trying ok"
    ]


def test_image_tls_failure_is_reported_not_retried(
    certs: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs["ca"]))
    with LocalHTTPServer(max_lifetime_s=30, tls=certs["expired"]) as tls:
        tls.add("/i.jpg", _jpeg((1, 2, 3)))
        result = fetch_images(
            {"B1": tls.url("/i.jpg")},
            tmp_path / "img",
            RetryPolicy(retries=3, backoff=0.5, timeout=5),
            progress=False,
        )
        _handshakes_settle(tls, 1)
        assert tls.tls_handshakes == 1
    assert result["reasons"] == {"TLS error": 1}
    assert "certificate has expired" in result["failures"][0]["detail"]


def test_https_to_a_plain_http_server_is_one_line(shop: Any, tmp_path: Path) -> None:
    base = shop.url("/data").replace("http://", "https://")
    t0 = time.perf_counter()
    with pytest.raises(DownloadError) as err:
        download(CAT, tmp_path / "out", base_url=base, **{**FAST, "backoff": 1.0})
    assert time.perf_counter() - t0 < 3
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("127.0.0.1: TLS handshake failed (")
    assert str(err.value).endswith(
        "; try --mirror snap or --mirror mcauleylab or --reviews-url/--meta-url"
    )


def test_cli_prints_the_tls_line(certs: Any, tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    from mdr.cli import main

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs["ca"]))
    with LocalHTTPServer(max_lifetime_s=30, tls=certs["expired"]) as tls:
        rc = main(
            [
                "data",
                "download",
                "--category",
                "toys",
                "--year",
                "2018",
                "--quiet",
                "--out",
                str(tmp_path / "out"),
                "--reviews-url",
                tls.url("/r/"),
                "--meta-url",
                tls.url("/m/"),
            ]
        )
    assert rc == 2
    err = capsys.readouterr().err
    assert err == (
        "mdr: error: 127.0.0.1: TLS certificate verification failed (certificate has "
        "expired); try --mirror jmcauley or --mirror mcauleylab or --mirror datarepo "
        "or --reviews-url/--meta-url\n"
    )
