"""What bad input gets: a table of damaged inputs and careless commands, each with its outcome.

Every row of :data:`CASES` is one command of the ``mdr`` CLI, run in-process on a copy of the
tiny shop (the raw shop and its prepared folder are built once per session by ``conftest``),
and asserts its exact outcome: the exit status, a substring of the message, and for some rows
a check of what is on disk afterwards (the user's files intact, the counts, the skip named
with its file and line). Adding a case is one line::

    Case("id", lambda c: [...argv...], exit_status, "expected text", optional_check),

where ``c`` is a :class:`Ctx` (a fresh folder per case, helpers to make damaged copies).
A failing command (exit 2) must print exactly one line, ``mdr...: error: ...``, and no
traceback. ``kill -9`` cases are separate tests below (they need a real subprocess).

``python tests/test_bad_input.py`` prints the table as markdown (for the README), with the
number of cases.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REV, META = "reviews_Synthetic_5.json.gz", "meta_Synthetic.json.gz"
FLAGS = ("--n-neg", "50", "--image-size", "32", "-q")  # the tiny shop has ~75 unseen items


# --------------------------------------------------------------------------- the harness


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Ctx:
    """What a case's command line is built from: a fresh folder and the shared tiny shop."""

    tmp: Path  # empty, this case's own
    shop: Path  # the raw tiny shop (read only)
    proc: Path  # its prepared folder (read only)
    run: Path | None = None  # a finished short MDR run on it (read only)

    def p(self, *parts: str) -> Path:
        return self.tmp.joinpath(*parts)

    def raw(
        self, edits: dict[str, Callable[[bytes], bytes] | None] | None = None, name: str = "raw"
    ) -> Path:
        """A copy of the raw shop with ``edits`` applied: file name -> transform of its bytes
        (None removes the file; a name not in the shop is created from b"")."""
        root = self.p(name)
        root.mkdir()
        for f in self.shop.iterdir():
            if f.is_file():
                shutil.copyfile(f, root / f.name)
        (root / "images").symlink_to(self.shop / "images")
        for fname, edit in (edits or {}).items():
            path = root / fname
            if edit is None:
                path.unlink()
            else:
                path.write_bytes(edit(path.read_bytes() if path.exists() else b""))
        return root

    def proc_copy(self, edits: dict[str, Callable[[bytes], bytes] | None] | None = None) -> Path:
        """A copy of the prepared tiny shop with ``edits`` applied (as :meth:`raw`)."""
        root = self.p("proc")
        shutil.copytree(self.proc, root)
        for fname, edit in (edits or {}).items():
            path = root / fname
            if edit is None:
                path.unlink()
            else:
                path.write_bytes(edit(path.read_bytes()))
        return root

    def run_copy(self, remove: Sequence[str] = ()) -> Path:
        """A copy of the finished run, without the files named in ``remove``."""
        assert self.run is not None
        root = self.p("run")
        shutil.copytree(self.run, root)
        for name in remove:
            (root / name).unlink()
        return root

    def user_folder(self, name: str = "victim") -> Path:
        """A folder of the user's own files (checked by :func:`untouched`)."""
        root = self.p(name)
        (root / "thesis").mkdir(parents=True)
        (root / "thesis" / "ch1.tex").write_text("chapter one")
        (root / "notes.txt").write_text("keep me")
        return root


Check = Callable[[Ctx, Result], None]


def described(text: str) -> Callable[[Check], Check]:
    """Give a check the words the README table shows for it."""

    def wrap(check: Check) -> Check:
        check.describe = text  # type: ignore[attr-defined]
        return check

    return wrap


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Ctx], Sequence[Any]]
    exit: int
    message: str = ""  # must appear in stderr (exit != 0) or stdout (exit 0)
    check: Check | None = None


def run_cli(argv: Sequence[Any]) -> Result:
    """``mdr ARGV`` in this process; its exit status and what it printed."""
    from mdr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
    return Result(code, out.getvalue(), err.getvalue())


# --------------------------------------------------------------------------- building blocks


def prep(c: Ctx, *extra: Any, raw: Path | None = None, out: Path | None = None) -> list[Any]:
    return ["data", "prepare", "--raw", raw or c.shop, "--out", out or c.p("out"), *FLAGS, *extra]


def synth(c: Ctx, *extra: Any, out: Path | None = None) -> list[Any]:
    return ["data", "synth", "--size", "tiny", "--out", out or c.p("out"), "-q", *extra]


def stats(root: Path) -> list[Any]:
    return ["data", "stats", root, "--json"]


def lines(fn: Callable[[list[str]], list[str]]) -> Callable[[bytes], bytes]:
    """A transform of a gzip file's lines."""

    def edit(data: bytes) -> bytes:
        text = gzip.decompress(data).decode("utf-8")
        return gzip.compress(("\n".join(fn(text.splitlines())) + "\n").encode(), mtime=0)

    return edit


def cut(fraction: float) -> Callable[[bytes], bytes]:
    return lambda data: data[: int(len(data) * fraction)]


def flip_middle_byte(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


def set_time(token: str, line: int = 1) -> Callable[[bytes], bytes]:
    """Put the raw JSON ``token`` as the unixReviewTime of review line ``line``."""

    def fn(ls: list[str]) -> list[str]:
        ls[line - 1] = re.sub(
            r'"unixReviewTime": \d+', f'"unixReviewTime": {token}', ls[line - 1], count=1
        )
        return ls

    return lines(fn)


def newest_review_twice(ls: list[str]) -> list[str]:
    rows = [json.loads(x) for x in ls]
    u = rows[0]["reviewerID"]
    newest = max((r["unixReviewTime"], i) for i, r in enumerate(rows) if r["reviewerID"] == u)
    return [*ls, ls[newest[1]]]


def review_again_later(ls: list[str]) -> list[str]:
    r = json.loads(ls[0])
    again = dict(r, unixReviewTime=r["unixReviewTime"] + 10**8, reviewText="bought it again")
    return [*ls, json.dumps(again)]


def mostly_broken(ls: list[str]) -> list[str]:
    return [x if i % 3 == 0 else x[:25] for i, x in enumerate(ls)]


def few_broken(ls: list[str]) -> list[str]:
    return [*ls[:2], '{"reviewerID": "A", "asin": ', *ls[2:]]


def meta_as_2018_json(ls: list[str]) -> list[str]:
    import ast

    return [json.dumps({**ast.literal_eval(x), "price": None}) for x in ls]


def meta_of_other_items(ls: list[str]) -> list[str]:
    return [re.sub(r"'asin': '([^']+)'", r"'asin': 'X\1'", x) for x in ls]


def meta_injection(target: Path) -> Callable[[bytes], bytes]:
    return lines(lambda ls: [f"__import__('os').system('touch {target}')", *ls])


def line_break_in_id(ls: list[str]) -> list[str]:
    r = json.loads(ls[0])
    return [json.dumps(dict(r, reviewerID=r["reviewerID"] + "\nX")), *ls[1:]]


def gunzip(data: bytes) -> bytes:
    return gzip.decompress(data)


def marker(kind: str) -> Callable[[Path], Path]:
    """A folder that carries mdr's marker of ``kind`` (and one file)."""

    def make(root: Path) -> Path:
        from mdr.io import MARKER, marker_text

        root.mkdir()
        (root / MARKER).write_text(marker_text(kind))
        (root / "dataset.json").write_text("{}")
        return root

    return make


def fashion_corpus(root: Path) -> Path:
    """Three photos in the Fashion Product Images layout (enough to get past its checks)."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rows = ["id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage"]
    for i, colour in enumerate(("Red", "Blue", "Red"), 1):
        Image.new("RGB", (20, 20), (200, 0, 0)).save(root / "images" / f"{i}.jpg")
        rows.append(f"{i},Men,Apparel,Topwear,Tshirts,{colour},Fall,2012,Casual")
    (root / "styles.csv").write_text("\n".join(rows) + "\n")
    (root / "styles_text.csv").write_text("productDisplayName\n" + "shirt\n" * 3)
    return root


def fashion(c: Ctx, *extra: Any, out: Path | None = None) -> list[Any]:
    return [
        "data",
        "fashion-images",
        "--dir",
        fashion_corpus(c.p("corpus")),
        "--out",
        out or c.p("out"),
        "-q",
        *extra,
    ]


# --------------------------------------------------------------------------- checks


def untouched(name: str = "victim") -> Check:
    @described("the user's files intact")
    def check(c: Ctx, r: Result) -> None:
        root = c.p(name)
        assert (root / "thesis" / "ch1.tex").read_text() == "chapter one"
        assert (root / "notes.txt").read_text() == "keep me"
        assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "thesis"]
        assert not list(c.tmp.glob(f".{name}.*")), "a partial or old folder was left"

    return check


def file_intact(name: str, text: str) -> Check:
    """``name`` (under the case's folder) still holds ``text`` ("": the shop's file of that
    name, for copies of the shop)."""

    @described(f"{name} intact")
    def check(c: Ctx, r: Result) -> None:
        expected = text or (c.shop / Path(name).name).read_text()
        assert c.p(name).read_text() == expected

    return check


def manifest(c: Ctx) -> dict[str, Any]:
    return json.loads(c.p("out", "dataset.json").read_text())


def counts(**expected: Any) -> Check:
    @described(", ".join(f"{k} = {v}" for k, v in expected.items()))
    def check(c: Ctx, r: Result) -> None:
        got = manifest(c)["counts"]
        for k, v in expected.items():
            assert got[k] == v, (k, got[k], v)

    return check


def skipped(reason: str, where: str, n: int = 1) -> Check:
    """A counted skip whose reason contains ``reason``, and an example naming ``where``
    (``file:line``, or the file)."""

    @described(f'counted skip "{reason}" naming {where}' + (f" ({n})" if n != 1 else ""))
    def check(c: Ctx, r: Result) -> None:
        sk = manifest(c)["skips"]
        hits = {k: v for k, v in sk["counts"].items() if reason in k}
        assert sum(hits.values()) == n, (reason, sk["counts"])
        assert any(where in e and reason in e for e in sk["examples"]), sk["examples"]

    return check


@described("valid and test items differ, neither in the history")
def one_behaviour_per_pair(c: Ctx, r: Result) -> None:
    from mdr.data.dataset import TRAIN, ProcessedDataset

    ds = ProcessedDataset.open(c.p("out"))
    b = ds.behaviors
    for u in range(ds.n_users):
        mine = b["user"] == u
        assert len(set(b["item"][mine].tolist())) == int(mine.sum())
        valid, test = ds.eval_lists["valid"][u, 0], ds.eval_lists["test"][u, 0]
        history = set(b["item"][mine & (b["split"] == TRAIN)].tolist())
        assert valid != test and valid not in history and test not in history


@described("every stored time a real date")
def times_are_sane(c: Ctx, r: Result) -> None:
    from mdr.data.dataset import ProcessedDataset

    t = ProcessedDataset.open(c.p("out")).behaviors["time"]
    assert t.min() >= 1199145600 and t.max() <= 1406073600  # the shop's 2008..2014 days


def all_of(*checks: Check) -> Check:
    @described("; ".join(getattr(ch, "describe", "") for ch in checks))
    def check(c: Ctx, r: Result) -> None:
        for ch in checks:
            ch(c, r)

    return check


@described("nothing created")
def nothing_created(c: Ctx, r: Result) -> None:
    assert not c.p("out").exists() and not list(c.tmp.glob(".out.*"))


def still_prepared(name: str) -> Check:
    @described(f"{name} still a complete prepared folder")
    def check(c: Ctx, r: Result) -> None:
        from mdr.data.dataset import ProcessedDataset

        assert ProcessedDataset.open(c.p(name)).stats()["behaviors"] == T

    return check


@described("a complete prepared folder")
def is_prepared(c: Ctx, r: Result) -> None:
    from mdr.data.dataset import ProcessedDataset

    ProcessedDataset.open(c.p("out"))


@described("the line's code never runs")
def not_executed(c: Ctx, r: Result) -> None:
    assert not c.p("pwned").exists()


# --------------------------------------------------------------------------- round two's inputs


def set_field(name: str, token: str, line: int = 1) -> Callable[[bytes], bytes]:
    """Add the raw JSON ``"name": token`` at the end of review line ``line`` (a repeated key:
    the last one wins, so it replaces the line's own value)."""

    def fn(ls: list[str]) -> list[str]:
        ls[line - 1] = ls[line - 1][:-1] + f', "{name}": {token}}}'
        return ls

    return lines(fn)


def set_meta(text: str, line: int = 1) -> Callable[[bytes], bytes]:
    """Add the raw Python-literal ``text`` (``'key': value``) at the end of meta line ``line``."""

    def fn(ls: list[str]) -> list[str]:
        ls[line - 1] = ls[line - 1][:-1] + f", {text}}}"
        return ls

    return lines(fn)


def first_user_renamed(escape: str) -> Callable[[bytes], bytes]:
    """Every review of the first line's user, its reviewerID ``escape`` (raw JSON text)."""

    def fn(ls: list[str]) -> list[str]:
        u = json.loads(ls[0])["reviewerID"]
        return [x.replace(f'"reviewerID": "{u}"', f'"reviewerID": "{escape}"') for x in ls]

    return lines(fn)


def first_item_renamed(asin: str) -> Callable[[bytes], bytes]:
    """Every review of the first line's item renamed ``asin``."""

    def fn(ls: list[str]) -> list[str]:
        a = json.loads(ls[0])["asin"]
        return [x.replace(f'"asin": "{a}"', f'"asin": "{asin}"') for x in ls]

    return lines(fn)


def meta_of_first_item_renamed(asin: str, times: int = 2) -> Callable[[bytes], bytes]:
    """The first meta line (the reviews' first item) renamed ``asin``, ``times`` over."""

    def fn(ls: list[str]) -> list[str]:
        return [*[re.sub(r"'asin': '[^']+'", f"'asin': '{asin}'", ls[0], count=1)] * times, *ls[1:]]

    return lines(fn)


def replaced(find: str, put: str) -> Callable[[bytes], bytes]:
    """A file's first ``find`` (text) replaced by ``put``."""
    return lambda b: b.decode().replace(find, put, 1).encode()


@described("users.txt holds the repaired id (U+FFFD), every review counted")
def user_id_repaired(c: Ctx, r: Result) -> None:
    users = c.p("out", "users.txt").read_text(encoding="utf-8").splitlines()
    assert sum(1 for u in users if u.endswith("\ufffd")) == 1, users[:3]
    assert manifest(c)["counts"]["behaviors"] == T


def item_text(field: str, expected: str) -> Check:
    @described(f"items.jsonl holds {field} {expected!a}")
    def check(c: Ctx, r: Result) -> None:
        rows = [json.loads(x) for x in c.p("out", "items.jsonl").read_text("utf-8").splitlines()]
        assert any(row[field] == expected for row in rows), [row[field] for row in rows][:5]

    return check


@described("the skips of the shop's own prepare, nothing more")
def nothing_skipped(c: Ctx, r: Result) -> None:
    shop = json.loads((c.proc / "dataset.json").read_text())
    assert manifest(c)["skips"] == shop["skips"]
    assert manifest(c)["counts"]["behaviors"] == T


@described("every skip example of dataset.json under 400 characters")
def examples_bounded(c: Ctx, r: Result) -> None:
    examples = manifest(c)["skips"]["examples"]
    assert examples and max(len(e) for e in examples) < 400, [len(e) for e in examples]


def err_shorter_than(n: int) -> Check:
    @described(f"the message under {n} characters")
    def check(c: Ctx, r: Result) -> None:
        assert len(r.err) < n, len(r.err)

    return check


DEAD = "http://127.0.0.1:9/data"  # nothing listens there: a download that asked would fail


def download_cmd(out: Path, *extra: Any) -> list[Any]:
    return [
        "data",
        "download",
        "--category",
        "Synthetic",
        "--out",
        out,
        "--base-url",
        DEAD,
        "--no-images",
        "-q",
        *extra,
    ]


def release_files(c: Ctx) -> Path:
    """A folder holding the shop's reviews and metadata files only, put there by hand."""
    root = c.p("by-hand")
    root.mkdir()
    for name in (REV, META):
        shutil.copyfile(c.shop / name, root / name)
    return root


@described("both files kept as they were, the folder not marked as mdr's")
def hand_put_files_kept(c: Ctx, r: Result) -> None:
    root = c.p("by-hand")
    assert sorted(p.name for p in root.iterdir()) == sorted([META, REV])
    for name in (REV, META):
        assert (root / name).read_bytes() == (c.shop / name).read_bytes()


# --------------------------------------------------------------------------- the table

BAD_TIME = "review with an invalid unixReviewTime"
T = 1050  # the tiny shop's behaviours
CONFIG = Path(__file__).resolve().parent.parent / "benchmarks" / "configs" / "mdr_synthetic.yaml"
FAST = ("--epochs", "1", "--max-steps", "1", "--set", "train.full_ranking=false", "-q")


def train(c: Ctx, *extra: Any, out: Path | None = None, config: Path = CONFIG) -> list[Any]:
    """``mdr train`` of a short run on the tiny shop into ``out`` (default ``tmp/r``)."""
    return ["train", "--config", config, "--data", c.proc, "--out", out or c.p("r"), *extra, *FAST]


def not_utf8_config(c: Ctx) -> Path:
    path = c.p("bad.yaml")
    path.write_bytes(CONFIG.read_bytes() + b"\n# caf\xe9\n")
    return path


def other_data(c: Ctx) -> Path:
    """A copy of the prepared shop that is other data (its manifest differs)."""

    def edit(b: bytes) -> bytes:
        doc = json.loads(b)
        doc["counts"]["behaviors"] += 1
        return json.dumps(doc).encode()

    return c.proc_copy({"dataset.json": edit})


@described("nothing written at --out")
def no_run(c: Ctx, r: Result) -> None:
    assert not c.p("r").exists()


@described("config.yaml records lr 0.001")
def lr_is_a_number(c: Ctx, r: Result) -> None:
    assert "lr: 0.001" in c.p("r", "config.yaml").read_text()


@described("the finished run is untouched")
def run_untouched(c: Ctx, r: Result) -> None:
    assert c.p("run", "test.json").read_bytes() == (c.run / "test.json").read_bytes()


_HELD: list[int] = []  # lock file descriptors held for the case in progress


def held(folder: Path) -> Path:
    """``folder`` with its run-folder lock held, as another command holding it would (pid
    4242 written in it); :func:`released` lets it go."""
    import fcntl

    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    _HELD.append(fd)
    return folder


@described("the finished run is untouched; the lock is released")
def released(c: Ctx, r: Result) -> None:
    while _HELD:
        os.close(_HELD.pop())
    run_untouched(c, r)


def run_with_cut(name: str, keep: int) -> Callable[[Ctx], Path]:
    """A copy of the finished run whose ``name`` is cut to its first ``keep`` bytes."""

    def make(c: Ctx) -> Path:
        root = c.run_copy()
        (root / name).write_bytes((root / name).read_bytes()[:keep])
        return root

    return make


@described("no DONE: the run is not marked finished")
def not_finished(c: Ctx, r: Result) -> None:
    assert not c.p("r", "DONE").exists() and not c.p("r", "test.json").exists()


def config_with(c: Ctx, extra: str) -> Path:
    path = c.p("twice.yaml")
    path.write_text(CONFIG.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


CASES: list[Case] = [
    # --- data loss: no command deletes what it did not create
    Case(
        "synth-out-user-folder",
        lambda c: synth(c, out=c.user_folder()),
        2,
        "not made by mdr",
        untouched(),
    ),
    Case(
        "synth-out-user-folder-overwrite",
        lambda c: synth(c, "--overwrite", out=c.user_folder()),
        2,
        "not made by mdr",
        untouched(),
    ),
    Case(
        "synth-out-plain-file",
        lambda c: (c.p("f").write_text("x"), synth(c, out=c.p("f")))[1],
        2,
        "exists and is not a folder",
        file_intact("f", "x"),
    ),
    Case(
        "synth-out-symlink",
        lambda c: (c.p("l").symlink_to(c.user_folder()), synth(c, "--overwrite", out=c.p("l")))[1],
        2,
        "symbolic link",
        untouched(),
    ),
    Case(
        "synth-out-prepared-dataset",
        lambda c: synth(c, "--overwrite", out=c.proc_copy()),
        2,
        "holds mdr's prepared-dataset output, not synthetic-raw",
        still_prepared("proc"),
    ),
    Case(
        "synth-rerun-without-overwrite",
        lambda c: synth(c, out=marker("synthetic-raw")(c.p("out"))),
        2,
        "already holds mdr's synthetic-raw output; pass --overwrite",
        file_intact("out/dataset.json", "{}"),
    ),
    Case(
        "synth-rerun-with-overwrite",
        lambda c: synth(c, "--overwrite", out=marker("synthetic-raw")(c.p("out"))),
        0,
        '"behaviors": 1050',
        described("replaced as a whole")(lambda c, r: not c.p("out", "dataset.json").exists()),
    ),
    Case("synth-into-empty-folder", lambda c: (c.p("out").mkdir(), synth(c))[1], 0, '"users": 150'),
    Case(
        "synth-out-under-a-file",
        lambda c: (c.p("f").write_text("x"), synth(c, out=c.p("f", "shop")))[1],
        2,
        "cannot create an output folder there",
        file_intact("f", "x"),
    ),
    Case(
        "prepare-out-user-folder",
        lambda c: prep(c, out=c.user_folder()),
        2,
        "not made by mdr",
        untouched(),
    ),
    Case(
        "prepare-out-user-folder-overwrite",
        lambda c: prep(c, "--overwrite", out=c.user_folder()),
        2,
        "not made by mdr",
        untouched(),
    ),
    Case(
        "prepare-out-stray-dataset-json",
        lambda c: (
            c.user_folder(),
            c.p("victim", "dataset.json").write_text("{}"),
            prep(c, "--overwrite", out=c.p("victim")),
        )[2],
        2,
        "not made by mdr",
        file_intact("victim/notes.txt", "keep me"),
    ),
    Case(
        "prepare-out-plain-file",
        lambda c: (c.p("f").write_text("x"), prep(c, out=c.p("f")))[1],
        2,
        "exists and is not a folder",
        file_intact("f", "x"),
    ),
    Case(
        "prepare-out-is-raw",
        lambda c: prep(c, raw=c.raw(), out=c.p("raw")),
        2,
        "must not be (or contain) the raw folder",
        file_intact("raw/factors.json", ""),
    ),
    Case(
        "prepare-out-contains-raw",
        lambda c: prep(c, raw=c.raw(), out=c.tmp),
        2,
        "must not be (or contain) the raw folder",
    ),
    Case(
        "prepare-out-other-kind",
        lambda c: prep(c, "--overwrite", out=marker("synthetic-raw")(c.p("shop"))),
        2,
        "holds mdr's synthetic-raw output, not prepared-dataset",
        file_intact("shop/dataset.json", "{}"),
    ),
    Case(
        "prepare-rerun-without-overwrite",
        lambda c: prep(c, out=c.proc_copy()),
        2,
        "already holds mdr's prepared-dataset output; pass --overwrite",
        still_prepared("proc"),
    ),
    Case(
        "prepare-rerun-with-overwrite",
        lambda c: prep(c, "--overwrite", out=c.proc_copy()),
        0,
        "150 users, 100 items, 1050 behaviours",
    ),
    Case(
        "prepare-into-empty-folder",
        lambda c: (c.p("out").mkdir(), prep(c))[1],
        0,
        "150 users",
        is_prepared,
    ),
    Case(
        "fashion-out-user-folder",
        lambda c: fashion(c, "--overwrite", out=c.user_folder()),
        2,
        "not made by mdr",
        untouched(),
    ),
    Case(
        "fashion-out-prepared-dataset",
        lambda c: fashion(c, "--overwrite", out=marker("prepared-dataset")(c.p("proc"))),
        2,
        "prepared-dataset output, not fashion-images",
    ),
    Case(
        "fashion-rerun-without-overwrite",
        lambda c: fashion(c, out=marker("fashion-images")(c.p("out"))),
        2,
        "already holds mdr's fashion-images output; pass --overwrite",
    ),
    # --- whole-file damage fails by default; --lenient keeps the counted skips
    Case(
        "reviews-gzip-cut-95",
        lambda c: prep(c, raw=c.raw({REV: cut(0.95)})),
        2,
        f"{REV}: truncated gzip stream after",
        nothing_created,
    ),
    Case(
        "reviews-gzip-cut-95-lenient",
        lambda c: prep(c, "--lenient", raw=c.raw({REV: cut(0.95)})),
        0,
        "prepared",
        skipped("file truncated or corrupt", f"{REV}: file truncated or corrupt (truncated gzip"),
    ),
    Case(
        "meta-gzip-cut-50",
        lambda c: prep(c, raw=c.raw({META: cut(0.5)})),
        2,
        f"{META}: truncated gzip stream after",
    ),
    Case(
        "meta-gzip-cut-50-lenient",
        lambda c: prep(c, "--lenient", raw=c.raw({META: cut(0.5)})),
        0,
        "prepared",
        described("items without meta counted")(
            lambda c, r: manifest(c)["counts"]["items_without_meta"] > 0
        ),
    ),
    Case(
        "reviews-gzip-corrupt-byte",
        lambda c: prep(c, raw=c.raw({REV: flip_middle_byte})),
        2,
        f"{REV}: corrupt gzip stream after",
    ),
    Case(
        "reviews-not-gzip",
        lambda c: prep(c, raw=c.raw({REV: lambda b: b"hello\n" * 10})),
        2,
        f"{REV}: not a gzip file",
    ),
    Case(
        "reviews-empty-file",
        lambda c: prep(c, raw=c.raw({REV: lambda b: b""})),
        2,
        f"{REV}: no usable review lines",
    ),
    Case(
        "reviews-mostly-malformed",
        lambda c: prep(c, raw=c.raw({REV: lines(mostly_broken)})),
        2,
        "non-empty lines are malformed (more than half; first line 2: malformed review line)",
    ),
    Case(
        "reviews-mostly-malformed-lenient",
        lambda c: prep(c, "--lenient", raw=c.raw({REV: lines(mostly_broken)})),
        2,
        "no user and item survive 5-core filtering",
    ),  # lenient, and nothing is left
    Case(
        "reviews-few-malformed",
        lambda c: prep(c, raw=c.raw({REV: lines(few_broken)})),
        0,
        "1050 behaviours",
        skipped("malformed review line", f"{REV}:3"),
    ),
    Case(
        "reviews-few-malformed-strict",
        lambda c: prep(c, "--strict", raw=c.raw({REV: lines(few_broken)})),
        2,
        f"{REV}:3: malformed review line",
    ),
    Case(
        "meta-of-the-2018-release",
        lambda c: prep(c, raw=c.raw({META: lines(meta_as_2018_json)})),
        2,
        "100 of 100 non-empty lines are malformed (more than half; first line 1: malformed "
        "meta line) (they are JSON: metadata of the 2018 release?",
    ),
    Case(
        "meta-of-other-items",
        lambda c: prep(c, raw=c.raw({META: lines(meta_of_other_items)})),
        2,
        "none of the 100 items of reviews_Synthetic_5.json.gz has a metadata line",
    ),
    Case(
        "meta-missing",
        lambda c: prep(c, raw=c.raw({META: None})),
        2,
        "no metadata file: looked for meta_Synthetic.json.gz, meta_Synthetic.json; pass "
        "--allow-missing-meta",
    ),
    Case(
        "meta-missing-allowed",
        lambda c: prep(c, "--allow-missing-meta", raw=c.raw({META: None})),
        0,
        "1050 behaviours",
        counts(items_without_meta=100, categories=1),
    ),
    Case(
        "meta-code-injection",
        lambda c: prep(c, raw=c.raw({META: meta_injection(c.p("pwned"))})),
        0,
        "prepared",
        all_of(not_executed, skipped("malformed meta line", f"{META}:1")),
    ),
    Case(
        "meta-deeply-nested-line",
        lambda c: prep(
            c, raw=c.raw({META: lines(lambda ls: ["[" * 100_000 + "]" * 100_000, *ls])})
        ),
        0,
        "prepared",
        skipped("malformed meta line", f"{META}:1"),
    ),
    Case(
        "reviews-uncompressed",
        lambda c: prep(
            c,
            raw=c.raw(
                {
                    REV: None,
                    "reviews_Synthetic_5.json": lambda _: gunzip(c.shop.joinpath(REV).read_bytes()),
                }
            ),
        ),
        0,
        "150 users, 100 items, 1050 behaviours",
    ),
    Case(
        "reviews-byte-order-mark",
        lambda c: prep(
            c, raw=c.raw({REV: lambda b: gzip.compress(b"\xef\xbb\xbf" + gunzip(b), mtime=0)})
        ),
        0,
        "1050 behaviours",
        described("no line malformed")(
            lambda c, r: not any("malformed" in k for k in manifest(c)["skips"]["counts"])
        ),
    ),
    # --- repeats and times
    Case(
        "newest-review-twice",
        lambda c: prep(c, raw=c.raw({REV: lines(newest_review_twice)})),
        0,
        "1051 behaviours (1050 distinct)",
        all_of(
            counts(exact_duplicates_removed=1, behaviors=T + 1, behaviors_distinct=T),
            one_behaviour_per_pair,
        ),
    ),
    Case(
        "same-item-reviewed-again-later",
        lambda c: prep(c, raw=c.raw({REV: lines(review_again_later)})),
        0,
        "1051 behaviours (1050 distinct)",
        all_of(counts(repeated_pairs_removed=1), one_behaviour_per_pair),
    ),
    *[
        Case(
            f"time-{name}",
            lambda c, tok=tok: prep(c, raw=c.raw({REV: set_time(tok)})),
            0,
            "prepared",
            all_of(skipped(BAD_TIME, f"{REV}:1"), times_are_sane),
        )
        for name, tok in [
            ("true", "true"),
            ("negative", "-5"),
            ("infinity", "Infinity"),
            ("nan", "NaN"),
            ("1e30", "1e30"),
            ("string", '"abc"'),
            ("fraction", "1400000000.5"),
        ]
    ],
    Case(
        "time-null",
        lambda c: prep(c, raw=c.raw({REV: set_time("null")})),
        0,
        "prepared",
        skipped("review without unixReviewTime", f"{REV}:1"),
    ),
    Case(
        "time-infinity-strict",
        lambda c: prep(c, "--strict", raw=c.raw({REV: set_time("Infinity")})),
        2,
        f"{REV}:1: {BAD_TIME}",
    ),
    Case(
        "review-id-with-line-break",
        lambda c: prep(c, raw=c.raw({REV: lines(line_break_in_id)})),
        0,
        "prepared",
        skipped("review id with a line break", f"{REV}:1"),
    ),
    # --- arguments, checked where they are parsed
    Case(
        "n-neg-0",
        lambda c: prep(c, "--n-neg", "0"),
        2,
        "argument --n-neg: must be from 1 to 100000, got 0",
        nothing_created,
    ),
    Case("n-neg-negative", lambda c: prep(c, "--n-neg", "-3"), 2, "argument --n-neg"),
    Case(
        "n-neg-not-a-number",
        lambda c: prep(c, "--n-neg", "ten"),
        2,
        "argument --n-neg: expected an integer, got 'ten'",
    ),
    Case(
        "n-neg-more-than-the-data-has",
        lambda c: prep(c, "--n-neg", "99"),
        2,
        "fewer than n_neg=99",
        nothing_created,
    ),
    Case(
        "image-size-0",
        lambda c: prep(c, "--image-size", "0"),
        2,
        "argument --image-size: must be from 4 to 512, got 0",
    ),
    Case(
        "image-size-100000",
        lambda c: prep(c, "--image-size", "100000"),
        2,
        "argument --image-size: must be from 4 to 512, got 100000",
        nothing_created,
    ),
    Case("image-size-3", lambda c: prep(c, "--image-size", "3"), 2, "argument --image-size"),
    Case(
        "label-fraction-2",
        lambda c: prep(c, "--label-fraction", "2"),
        2,
        "argument --label-fraction: must be from 0 to 1, got 2",
    ),
    Case(
        "label-fraction-nan",
        lambda c: prep(c, "--label-fraction", "nan"),
        2,
        "argument --label-fraction: must be from 0 to 1, got nan",
    ),
    Case("seed-negative", lambda c: prep(c, "--seed", "-1"), 2, "argument --seed"),
    Case("year-2015", lambda c: prep(c, "--year", "2015"), 2, "argument --year: invalid choice"),
    Case(
        "strict-and-lenient",
        lambda c: prep(c, "--strict", "--lenient"),
        2,
        "argument --lenient: not allowed with argument --strict",
    ),
    Case("synth-seed-negative", lambda c: synth(c, "--seed", "-5"), 2, "argument --seed"),
    Case(
        "synth-size-unknown",
        lambda c: ["data", "synth", "--size", "huge", "--out", c.p("o")],
        2,
        "argument --size: invalid choice: 'huge'",
    ),
    Case(
        "fashion-image-size-0",
        lambda c: fashion(c, "--image-size", "0"),
        2,
        "argument --image-size: must be from 8 to 512",
    ),
    Case(
        "fashion-image-size-100000",
        lambda c: fashion(c, "--image-size", "100000"),
        2,
        "argument --image-size: must be from 8 to 512",
    ),
    Case(
        "fashion-label-fraction-2",
        lambda c: fashion(c, "--label-fraction", "2"),
        2,
        "argument --label-fraction",
    ),
    Case("fashion-limit-0", lambda c: fashion(c, "--limit", "0"), 2, "argument --limit"),
    Case(
        "fashion-dir-missing",
        lambda c: ["data", "fashion-images", "--dir", c.p("nope"), "--out", c.p("out")],
        2,
        "fashion corpus folder not found",
    ),
    # --- finding the files
    Case("raw-missing", lambda c: prep(c, raw=c.p("nope")), 2, "nope: raw data folder not found"),
    Case(
        "raw-is-a-file",
        lambda c: (c.p("f").write_text("x"), prep(c, raw=c.p("f")))[1],
        2,
        "not a folder (give the folder holding the review files)",
    ),
    Case(
        "raw-without-review-files",
        lambda c: (c.p("empty").mkdir(), prep(c, raw=c.p("empty")))[1],
        2,
        "no Amazon review file: looked for reviews_<Cat>_5.json.gz / .json (2014) and "
        "<Cat>_5.json.gz / .json (2018); found: no files",
    ),
    Case(
        "category-not-in-folder",
        lambda c: prep(c, "--category", "toys"),
        2,
        "no review file for category 'toys': looked for reviews_toys_5.json.gz, "
        "reviews_toys_5.json, toys_5.json.gz, toys_5.json, reviews_Toys_and_Games_5.json.gz",
    ),
    Case(
        "category-unsafe-name",
        lambda c: prep(c, "--category", "../../etc/x"),
        2,
        "argument --category: '../../etc/x' cannot be part of a file name",
    ),
    Case(
        "category-other-case",
        lambda c: prep(c, "--category", "synthetic"),
        0,
        "(2014 release, Synthetic)",
    ),
    Case(
        "wrong-year",
        lambda c: prep(c, "--year", "2018"),
        2,
        "no Amazon review file: looked for reviews_<Cat>_5.json.gz / .json (2014) and "
        "<Cat>_5.json.gz / .json (2018) of the 2018 release",
    ),
    Case(
        "two-categories-no-choice",
        lambda c: prep(c, raw=c.raw({"Other_5.json.gz": lambda _: (c.shop / REV).read_bytes()})),
        2,
        "holds several review files (Synthetic (2014: reviews_Synthetic_5.json.gz), Other "
        "(2018: Other_5.json.gz)); choose one with --category",
    ),
    Case(
        "images-dir-missing",
        lambda c: prep(c, "--images-dir", c.p("nope")),
        2,
        "images folder not found (--images-dir)",
    ),
    Case(
        "name-with-path",
        lambda c: prep(c, "--name", "../../results/x"),
        2,
        "argument --name: '../../results/x' cannot be part of a file name",
    ),
    Case(
        "factors-json-corrupt",
        lambda c: prep(c, raw=c.raw({"factors.json": lambda b: b[:40]})),
        2,
        "factors.json:3: not valid JSON",
    ),
    Case(
        "factors-json-not-utf8",
        lambda c: prep(c, raw=c.raw({"factors.json": lambda b: b"\xff" + b})),
        2,
        "factors.json: not UTF-8 text",
    ),
    # --- a damaged prepared folder: one line naming the file, when opened
    Case(
        "stats-behaviors-npz-truncated",
        lambda c: stats(c.proc_copy({"behaviors.npz": cut(0.5)})),
        2,
        "behaviors.npz: damaged or truncated (BadZipFile",
    ),
    Case(
        "stats-images-npy-truncated",
        lambda c: stats(c.proc_copy({"images.npy": cut(0.5)})),
        2,
        "images.npy: truncated",
    ),
    Case(
        "stats-images-npy-header-only",
        lambda c: stats(c.proc_copy({"images.npy": cut(0.0001)})),
        2,
        "images.npy: damaged or truncated",
    ),
    Case(
        "stats-eval-lists-garbage",
        lambda c: stats(c.proc_copy({"eval_lists.npz": lambda b: b"garbage" * 10})),
        2,
        "eval_lists.npz: damaged or truncated",
    ),
    Case(
        "stats-dataset-json-corrupt",
        lambda c: stats(c.proc_copy({"dataset.json": cut(0.5)})),
        2,
        "dataset.json: corrupt",
    ),
    Case(
        "stats-dataset-json-not-utf8",
        lambda c: stats(c.proc_copy({"dataset.json": lambda b: b"\xff\xfe" + b})),
        2,
        "dataset.json: corrupt",
    ),
    Case(
        "stats-dataset-json-counts-missing",
        lambda c: stats(c.proc_copy({"dataset.json": lambda b: b'{"format_version": 1}'})),
        2,
        "dataset.json: corrupt (counts of users, items, categories and behaviors missing)",
    ),
    Case(
        "stats-no-dataset-json",
        lambda c: stats(c.proc_copy({"dataset.json": None})),
        2,
        "no dataset.json - not a prepared dataset",
    ),
    Case(
        "stats-file-missing",
        lambda c: stats(c.proc_copy({"text.npz": None})),
        2,
        "incomplete prepared dataset, missing ['text.npz']",
    ),
    Case(
        "stats-folder-missing", lambda c: stats(c.p("nope")), 2, "prepared dataset folder not found"
    ),
    # --- train, evaluate, explain: every argument and config value checked before any work
    Case(
        "train-batch-size-0",
        lambda c: train(c, "--set", "train.batch_size=0"),
        2,
        "need batch_size from 1 to 1000000 (got 0)",
        no_run,
    ),
    Case(
        "train-epochs-0-in-config",
        lambda c: train(c, "--set", "train.epochs=0")[: -len(FAST)],
        2,
        "need epochs from 1 to 100000 (got 0)",
        no_run,
    ),
    Case(
        "train-epochs-0-flag",
        lambda c: [
            "train",
            "--config",
            CONFIG,
            "--data",
            c.proc,
            "--out",
            c.p("r"),
            "--epochs",
            "0",
        ],
        2,
        "argument --epochs: must be from 1 to 100000, got 0",
        no_run,
    ),
    Case(
        "train-device-gpu",
        lambda c: train(c, "--device", "gpu"),
        2,
        "device cpu, cuda, cuda:N or auto (got 'gpu')",
        no_run,
    ),
    Case(
        "train-negative-lr",
        lambda c: train(c, "--set", "train.lr=-0.1"),
        2,
        "lr a positive finite number (got -0.1)",
        no_run,
    ),
    Case(
        "train-set-without-value",
        lambda c: train(c, "--set", "train.lr"),
        2,
        "--set 'train.lr': expected KEY=VALUE",
        no_run,
    ),
    Case(
        "train-unknown-key",
        lambda c: train(c, "--set", "loss.etaa=0"),
        2,
        "unknown key 'etaa'",
        no_run,
    ),
    Case(
        "train-unknown-model",
        lambda c: train(c, "--model", "transformer"),
        2,
        "unknown model 'transformer'",
        no_run,
    ),
    Case(
        "train-config-not-utf8",
        lambda c: train(c, config=not_utf8_config(c)),
        2,
        "bad.yaml: not a UTF-8 text file",
        no_run,
    ),
    Case(
        "train-config-missing",
        lambda c: train(c, config=c.p("nope.yaml")),
        2,
        "config file not found",
        no_run,
    ),
    Case(
        "train-out-plain-file",
        lambda c: (c.p("f").write_text("x"), train(c, out=c.p("f")))[1],
        2,
        "exists and is not a folder",
        file_intact("f", "x"),
    ),
    Case(
        "train-out-user-folder",
        lambda c: train(c, "--overwrite", out=c.user_folder()),
        2,
        "not empty and not a run folder",
        untouched(),
    ),
    Case(
        "train-over-a-finished-run",
        lambda c: train(c, "--model", "deepfm", out=c.run_copy()),
        2,
        "holds a finished run",
        run_untouched,
    ),
    Case(
        "train-lr-in-exponent-notation",
        lambda c: train(c, "--set", "train.lr=1e-3"),
        0,
        '"epochs_run": 1',
        lr_is_a_number,
    ),
    Case(
        "train-data-missing",
        lambda c: ["train", "--config", CONFIG, "--data", c.p("nope"), "--out", c.p("r")],
        2,
        "unknown dataset",
        no_run,
    ),
    Case("evaluate-run-missing", lambda c: ["evaluate", c.p("nope")], 2, "run folder not found"),
    Case(
        "evaluate-not-a-run",
        lambda c: ["evaluate", c.user_folder()],
        2,
        "no config.yaml - not a run folder",
    ),
    Case(
        "evaluate-unfinished-run",
        lambda c: ["evaluate", c.run_copy(["DONE"]), "-q"],
        2,
        "an unfinished run (no DONE/test.json",
    ),
    Case(
        "evaluate-unfinished-allowed",
        lambda c: ["evaluate", c.run_copy(["DONE"]), "-q", "--allow-unfinished"],
        0,
        "gauc:",
    ),
    Case(
        "evaluate-other-data",
        lambda c: ["evaluate", c.run_copy(), "--data", other_data(c), "-q"],
        2,
        "other data. Pass --allow-other-data",
    ),
    Case(
        "evaluate-other-data-allowed",
        lambda c: ["evaluate", c.run_copy(), "--data", other_data(c), "-q", "--allow-other-data"],
        0,
        "gauc:",
    ),
    Case(
        "evaluate-corrupt-best-pt",
        lambda c: (
            c.run_copy(),
            c.p("run", "best.pt").write_bytes(b"junk"),
            ["evaluate", c.p("run"), "-q"],
        )[2],
        2,
        "best.pt: not a readable checkpoint",
    ),
    Case(
        "explain-top-negative",
        lambda c: ["explain", c.run_copy(), "--user", "#0", "--item", "#1", "--top", "-1"],
        2,
        "argument --top: must be from 0 to 1000, got -1",
    ),
    Case(
        "explain-unfinished-run",
        lambda c: ["explain", c.run_copy(["DONE", "test.json"]), "--user", "#0", "--item", "#1"],
        2,
        "an unfinished run",
    ),
    Case(
        "explain-unknown-user",
        lambda c: ["explain", c.run_copy(), "--user", "nobody", "--item", "#1"],
        2,
        "unknown user 'nobody'",
    ),
    # --- round two: any value a parser refuses is a counted skip naming file:line
    Case(
        "time-integer-of-5000-digits",
        lambda c: prep(c, raw=c.raw({REV: set_time("1" + "0" * 5000)})),
        0,
        "prepared",
        all_of(skipped("malformed review line", f"{REV}:1"), times_are_sane),
    ),
    Case(
        "time-integer-of-5000-digits-lenient",
        lambda c: prep(c, "--lenient", raw=c.raw({REV: set_time("1" + "0" * 5000)})),
        0,
        "prepared",
        skipped("malformed review line", f"{REV}:1"),
    ),
    Case(
        "time-integer-of-5000-digits-strict",
        lambda c: prep(c, "--strict", raw=c.raw({REV: set_time("9" * 5000)})),
        2,
        f"{REV}:1: malformed review line (an integer literal of more than 4300 digits)",
        nothing_created,
    ),
    Case(
        "unused-field-integer-of-5000-digits",
        lambda c: prep(
            c, raw=c.raw({REV: set_field("helpful", "[" + "7" * 5000 + ", 0]", line=4)})
        ),
        0,
        "prepared",
        skipped("malformed review line", f"{REV}:4"),
    ),
    Case(
        "review-value-nested-100000-deep",
        lambda c: prep(
            c, raw=c.raw({REV: set_field("helpful", "[" * 100_000 + "]" * 100_000, line=2)})
        ),
        0,
        "prepared",
        skipped("malformed review line", f"{REV}:2"),
    ),
    Case(
        "rating-integer-of-400-digits",
        lambda c: prep(c, raw=c.raw({REV: set_field("overall", "1" + "0" * 400)})),
        0,
        "1050 behaviours",
        nothing_skipped,
    ),
    Case(
        "rating-nan",
        lambda c: prep(c, raw=c.raw({REV: set_field("overall", "NaN")})),
        0,
        "1050 behaviours",
        nothing_skipped,
    ),
    Case(
        "rating-a-string",
        lambda c: prep(c, raw=c.raw({REV: set_field("overall", '"5"')})),
        0,
        "1050 behaviours",
        nothing_skipped,
    ),
    Case(
        "meta-integer-of-5000-digits",
        lambda c: prep(c, raw=c.raw({META: set_meta("'price': " + "3" * 5000)})),
        0,
        "prepared",
        skipped("malformed meta line", f"{META}:1"),
    ),
    Case(
        "meta-integer-of-5000-digits-strict",
        lambda c: prep(
            c, "--strict", raw=c.raw({META: set_meta("'price': " + "3" * 5000, line=2)})
        ),
        2,
        f"{META}:2: malformed meta line (an integer literal of more than 4300 digits)",
    ),
    Case(
        "meta-categories-a-number",
        lambda c: prep(c, raw=c.raw({META: set_meta("'categories': 5")})),
        0,
        "1050 behaviours",
        counts(categories=9),
    ),
    Case(
        "meta-unhashable-key",
        lambda c: prep(c, raw=c.raw({META: set_meta("[1]: 2")})),
        0,
        "prepared",
        skipped("malformed meta line", f"{META}:1"),
    ),
    Case(
        "meta-nested-100000-deep",
        lambda c: prep(
            c, raw=c.raw({META: set_meta("'related': " + "[" * 100_000 + "]" * 100_000, line=3)})
        ),
        0,
        "prepared",
        skipped("malformed meta line", f"{META}:3"),
    ),
    Case(
        "meta-null-byte",
        lambda c: prep(c, raw=c.raw({META: set_meta("'x': 1\x00")})),
        0,
        "prepared",
        skipped("malformed meta line", f"{META}:1"),
    ),
    # --- text that parses but could not be written back: repaired to U+FFFD, counted
    Case(
        "review-id-lone-surrogate",
        lambda c: prep(c, raw=c.raw({REV: first_user_renamed("AKHLR2SAMMTEZ4\\ud800")})),
        0,
        "1050 behaviours",
        all_of(
            user_id_repaired,
            described("counted as repaired, naming the line")(
                lambda c, r: skipped(
                    "text field repaired",
                    f"{REV}:1",
                    manifest(c)["skips"]["counts"].get(
                        "text field repaired (characters not writable as UTF-8 replaced by U+FFFD)",
                        -1,
                    ),
                )(c, r)
            ),
        ),
    ),
    Case(
        "review-text-lone-surrogates",
        lambda c: prep(
            c,
            raw=c.raw(
                {
                    REV: lines(
                        lambda ls: [
                            x.replace('"reviewText": "', '"reviewText": "\\udfff\\ud800 ')
                            for x in ls
                        ]
                    )
                }
            ),
        ),
        0,
        "1050 behaviours",
        is_prepared,
    ),
    Case(
        "meta-title-lone-surrogate",
        lambda c: prep(c, raw=c.raw({META: set_meta("'title': 'caf\\ud800'")})),
        0,
        "prepared",
        all_of(item_text("title", "caf\ufffd"), skipped("text field repaired", f"{META}:1")),
    ),
    Case(
        "meta-title-surrogate-pair",
        lambda c: prep(c, raw=c.raw({META: set_meta("'title': 'smile \\ud83d\\ude00'")})),
        0,
        "prepared",
        all_of(item_text("title", "smile \U0001f600"), skipped("text field repaired", f"{META}:1")),
    ),
    Case(
        "meta-category-lone-surrogate",
        lambda c: prep(
            c, raw=c.raw({META: set_meta("'categories': [['Synthetic', 'Caps\\udc80']]", line=5)})
        ),
        0,
        "prepared",
        all_of(
            described("categories.txt holds the repaired name")(
                lambda c, r: "Caps\ufffd" in c.p("out", "categories.txt").read_text("utf-8")
            ),
            skipped("text field repaired", f"{META}:5"),
        ),
    ),
    Case(
        "meta-asin-escaped",
        lambda c: prep(
            c,
            raw=c.raw(
                {
                    META: lines(
                        lambda ls: [
                            re.sub(r"'asin': 'B", r"'asin': '\\x42", ls[0], count=1),
                            *ls[1:],
                        ]
                    )
                }
            ),
        ),
        0,
        "1050 behaviours",
        counts(items_without_meta=0),
    ),
    # --- a prepared folder's JSON files damaged the same way: one line naming the file
    Case(
        "stats-dataset-json-integer-of-5000-digits",
        lambda c: stats(
            c.proc_copy({"dataset.json": replaced('"users": 150', '"users": 1' + "0" * 5000)})
        ),
        2,
        "dataset.json: corrupt (an integer of more than 4300 digits)",
    ),
    Case(
        "stats-dataset-json-nested-100000-deep",
        lambda c: stats(c.proc_copy({"dataset.json": lambda b: b"[" * 100_000 + b"]" * 100_000})),
        2,
        "dataset.json: corrupt (nested too deeply)",
    ),
    Case(
        "stats-dataset-json-negative-count",
        lambda c: stats(c.proc_copy({"dataset.json": replaced('"users": 150', '"users": -150')})),
        2,
        "dataset.json: corrupt (counts of users, items, categories and behaviors missing)",
    ),
    Case(
        "stats-dataset-json-count-a-float",
        lambda c: stats(c.proc_copy({"dataset.json": replaced('"users": 150', '"users": 150.0')})),
        2,
        "dataset.json: corrupt (counts of users",
    ),
    Case(
        "explain-items-jsonl-integer-of-5000-digits",
        lambda c: [
            "explain",
            c.run_copy(),
            "--data",
            c.proc_copy({"items.jsonl": lambda b: b"7" * 5000 + b"\n" + b.split(b"\n", 1)[1]}),
            "--user",
            "#0",
            "--item",
            "#1",
        ],
        2,
        "items.jsonl:1: damaged (an integer of more than 4300 digits)",
    ),
    Case(
        "explain-items-jsonl-not-objects",
        lambda c: [
            "explain",
            c.run_copy(),
            "--data",
            c.proc_copy({"items.jsonl": lambda b: b"[1, 2]\n" + b.split(b"\n", 1)[1]}),
            "--user",
            "#0",
            "--item",
            "#1",
        ],
        2,
        "items.jsonl:1: damaged (not a JSON object)",
    ),
    # --- messages quote an input at most 200 characters long
    Case(
        "n-neg-too-many-user-id-of-100000-characters",
        lambda c: prep(c, "--n-neg", "99", raw=c.raw({REV: first_user_renamed("0" * 100_000)})),
        2,
        "... (100000 characters) has only",
        err_shorter_than(600),
    ),
    Case(
        "skip-examples-of-an-id-of-100000-characters",
        lambda c: prep(
            c,
            raw=c.raw(
                {
                    REV: first_item_renamed("B" * 100_000),
                    META: meta_of_first_item_renamed("B" * 100_000),
                }
            ),
        ),
        0,
        "prepared",
        all_of(examples_bounded, skipped("repeated meta line", f"{META}:2")),
    ),
    Case(
        "review-line-of-10-mb-strict",
        lambda c: prep(
            c,
            "--strict",
            raw=c.raw(
                {
                    REV: lines(
                        lambda ls: [
                            '{"reviewerID": "A", "asin": "B", "unixReviewTime": "'
                            + "9" * 10**7
                            + '"}',
                            *ls,
                        ]
                    )
                }
            ),
        ),
        2,
        f"{REV}:1: review with an invalid unixReviewTime",
        err_shorter_than(600),
    ),
    # --- download writes only into a folder of its own, moves aside what it cannot use
    Case(
        "download-out-user-folder",
        lambda c: download_cmd(c.user_folder()),
        2,
        "not made by mdr",
        untouched(),
    ),
    Case(
        "download-out-user-folder-with-a-release-file",
        lambda c: (
            c.user_folder(),
            shutil.copyfile(c.shop / REV, c.p("victim", REV)),
            download_cmd(c.p("victim")),
        )[2],
        2,
        "holds 2 entries that are not what a download writes",
        file_intact("victim/notes.txt", "keep me"),
    ),
    Case(
        "download-out-plain-file",
        lambda c: (c.p("f").write_text("x"), download_cmd(c.p("f")))[1],
        2,
        "exists and is not a folder",
        file_intact("f", "x"),
    ),
    Case(
        "download-out-symlink",
        lambda c: (c.p("l").symlink_to(c.user_folder()), download_cmd(c.p("l")))[1],
        2,
        "symbolic link",
        untouched(),
    ),
    Case(
        "download-out-prepared-dataset",
        lambda c: download_cmd(c.proc_copy()),
        2,
        "holds mdr's prepared-dataset output, not amazon-raw",
        still_prepared("proc"),
    ),
    Case(
        "download-out-synthetic-shop",
        lambda c: download_cmd(marker("synthetic-raw")(c.p("shop"))),
        2,
        "holds mdr's synthetic-raw output, not amazon-raw",
        file_intact("shop/dataset.json", "{}"),
    ),
    Case(
        "download-into-hand-put-release-files",
        lambda c: download_cmd(release_files(c)),
        0,
        f'"skipped": [\n    "{REV}",\n    "{META}"\n  ]',
        hand_put_files_kept,
    ),
    # --- one command per folder, names that stay in their folder, divergence as one line
    Case(
        "train-resume-on-a-run-in-use",
        lambda c: train(c, "--resume", out=held(c.run_copy())),
        2,
        "in use by another command (pid 4242)",
        released,
    ),
    Case(
        "train-resume-after-a-cut-test-json",
        lambda c: [
            "train",
            "--config",
            CONFIG,
            "--data",
            c.proc,
            "--resume",
            "-q",
            "--out",
            run_with_cut("test.json", 20)(c),
            "--epochs",
            "2",
            "--max-steps",
            "6",
            "--set",
            "train.batch_size=256",
            "--set",
            "train.full_ranking=false",
        ],
        0,
        "",
        described("test.json scored again: the same bytes as the finished run's")(run_untouched),
    ),
    Case(
        "prepare-name-a-path",
        lambda c: prep(c, "--name", "../evil"),
        2,
        "argument --name: '../evil' cannot be part of a file name",
        nothing_created,
    ),
    Case(
        "download-category-a-path",
        lambda c: download_cmd(c.p("dl"), "--category", "../../etc"),
        2,
        "argument --category: '../../etc' cannot be part of a file name",
    ),
    Case(
        "train-diverges",
        lambda c: train(c, "--set", "train.lr=1e30"),
        2,
        "diverged; lower train.lr",
        not_finished,
    ),
    Case(
        "train-weight-decay-infinite",
        lambda c: train(c, "--set", "train.weight_decay=.inf"),
        2,
        "config.train.weight_decay: expected a finite number, got inf",
        no_run,
    ),
    Case(
        "train-config-key-twice",
        lambda c: train(c, config=config_with(c, "\ntrain:\n  lr: 0.1\n")),
        2,
        "key 'train' given twice (first on line",
        no_run,
    ),
    Case(
        "train-image-channels-empty",
        lambda c: train(c, "--set", "model.image_channels=[]"),
        2,
        "need image_channels: 1 to 16 widths from 1 to 4096 (got [])",
        no_run,
    ),
    Case(
        "train-id-dim-negative",
        lambda c: train(c, "--set", "model.id_dim=-1"),
        2,
        "need id_dim and text_hidden from 1 to 4096 (got -1",
        no_run,
    ),
]


def _cases_by_id() -> dict[str, Case]:
    ids = [c.id for c in CASES]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"repeated case ids: {dup}"
    return {c.id: c for c in CASES}


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def shop(data_root: Path) -> tuple[Path, Path]:
    """The raw and the prepared tiny shop of the session (read only)."""
    return data_root / "raw" / "synthetic-tiny", data_root / "proc" / "synthetic-tiny"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, shop: tuple[Path, Path], tiny_mdr_run: Path, tmp_path: Path) -> None:
    ctx = Ctx(tmp_path, *shop, run=tiny_mdr_run)
    result = run_cli(case.argv(ctx))
    assert result.code == case.exit, (result.code, result.err[-2000:])
    assert "Traceback" not in result.err
    if case.exit == 0:
        assert case.message in result.out, result.out
    else:
        err_lines = result.err.strip().splitlines()
        assert len(err_lines) == 1, result.err  # one clear line
        assert re.match(r"^mdr( [a-z-]+)*: error: ", err_lines[0]), err_lines[0]
        assert case.message in err_lines[0], err_lines[0]
    if case.check is not None:
        outcome = case.check(ctx, result)
        assert outcome is None or outcome is True


def test_the_table_has_unique_ids_and_counts_its_cases() -> None:
    assert len(_cases_by_id()) == len(CASES) >= 80


# --------------------------------------------------------------------------- kill -9


def _start(argv: list[str]) -> subprocess.Popen:
    """``mdr ARGV`` in its own process group (so the kill reaches its workers too)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mdr.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_when(
    proc: subprocess.Popen,
    pattern: Path,
    ready: Callable[[Path], bool] = lambda p: True,
    timeout: float = 120,
) -> Path:
    """SIGKILL ``proc`` (and its workers) as soon as a folder matching ``pattern`` (a glob)
    exists and is ``ready``; returns the folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in pattern.parent.glob(pattern.name) if p.is_dir() and ready(p)]
        if found:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"the command ended (status {proc.returncode}) before it could be killed")
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("no partial folder appeared")


def _marked(folder: Path) -> bool:
    from mdr.io import read_marker

    return read_marker(folder) is not None


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_kill_9_during_synth_loses_nothing_and_the_rerun_cleans_up(tmp_path: Path) -> None:
    ctx = Ctx(tmp_path, tmp_path, tmp_path)
    ctx.user_folder()
    (tmp_path / "shop-notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    proc = _start(["data", "synth", "--size", "small", "--out", str(tmp_path / "shop"), "-q"])
    # killed in the middle: while its workers draw the images into the partial folder
    partial = _kill_when(
        proc, tmp_path / ".shop.partial-*", lambda p: len(list(p.glob("images/*.jpg"))) >= 10
    )
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "shop").exists()  # nothing that looks complete
    assert (partial / ".mdr-output.json").is_file()  # recognisably ours
    assert {k: v for k, v in _snapshot(tmp_path).items() if not k.startswith(".shop.")} == before
    r = run_cli(["data", "synth", "--size", "tiny", "--out", tmp_path / "shop", "-q"])
    assert r.code == 0 and f"removed {partial}, left by an interrupted run" in r.err
    assert not partial.exists() and not list(tmp_path.glob(".shop.*"))
    untouched()(ctx, r)
    assert (tmp_path / "shop-notes.txt").read_text() == "mine"


def test_kill_9_during_prepare_overwrite_keeps_the_old_dataset(
    shop: tuple[Path, Path], tmp_path: Path
) -> None:
    raw, proc_src = shop
    ctx = Ctx(tmp_path, raw, proc_src)
    out = ctx.proc_copy()  # an earlier prepared dataset at --out
    old = _snapshot(out)
    ctx.user_folder()
    argv = ["data", "prepare", "--raw", str(raw), "--out", str(out), *FLAGS, "--overwrite"]
    proc = _start(argv)
    partial = _kill_when(proc, tmp_path / ".proc.partial-*", _marked)  # while it parses
    assert _snapshot(out) == old  # the old dataset is whole until the new one is
    from mdr.data.dataset import ProcessedDataset

    ProcessedDataset.open(out)
    untouched()(ctx, Result(0, "", ""))
    r = run_cli(argv)
    assert r.code == 0 and f"removed {partial}" in r.err, r.err
    assert not list(tmp_path.glob(".proc.*"))
    assert ProcessedDataset.open(out).stats()["behaviors"] == T
    untouched()(ctx, r)


def test_kill_9_during_prepare_into_a_new_folder(shop: tuple[Path, Path], tmp_path: Path) -> None:
    raw, _ = shop
    argv = ["data", "prepare", "--raw", str(raw), "--out", str(tmp_path / "out"), *FLAGS]
    partial = _kill_when(_start(argv), tmp_path / ".out.partial-*")  # as soon as it exists
    assert not (tmp_path / "out").exists()
    r = run_cli(["data", "prepare", "--raw", raw, "--out", tmp_path / "out", *FLAGS])
    assert r.code == 0 and not partial.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- for the README


def table_markdown() -> str:
    """The cases as a markdown table: what was tried, the exit status, what the user reads."""
    rows = ["| case | exit | what the user reads | checked after |", "|---|---|---|---|"]
    for c in CASES:
        after = getattr(c.check, "describe", "") if c.check else ""
        rows.append(f"| `{c.id}` | {c.exit} | {c.message.replace('|', '/')} | {after} |")
    return f"{len(CASES)} cases (+ 3 kill -9 tests)\n\n" + "\n".join(rows)


if __name__ == "__main__":
    print(table_markdown())


# --------------------------------------------------------------------------- main()'s rule


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (
            FileNotFoundError(2, "No such file or directory", "/data/x.json"),
            2,
            "mdr: error: /data/x.json: No such file or directory",
        ),
        (
            PermissionError(13, "Permission denied", "/data/out"),
            2,
            "mdr: error: /data/out: Permission denied",
        ),
        (
            OSError(28, "No space left on device", "/data/out/images.npy"),
            2,
            "mdr: error: /data/out/images.npy: No space left on device",
        ),
    ],
)
def test_os_errors_about_a_path_are_one_line(
    error: OSError, code: int, line: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mdr.cli

    def boom(a: Any) -> int:
        raise error

    monkeypatch.setattr(mdr.cli, "_cmd_stats", boom)
    r = run_cli(["data", "stats", tmp_path])
    assert (r.code, r.err.strip()) == (code, line)


@pytest.mark.parametrize(
    "error",
    [OSError(5, "Input/output error"), ValueError("a bug"), TypeError("a bug"), KeyError("a bug")],
)
def test_a_bug_keeps_its_traceback(
    error: Exception, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mdr.cli

    def boom(a: Any) -> int:
        raise error

    monkeypatch.setattr(mdr.cli, "_cmd_stats", boom)
    with pytest.raises(type(error)):
        run_cli(["data", "stats", tmp_path])


@pytest.mark.parametrize(
    ("fname", "damage", "attr", "message"),
    [
        ("vocab.txt", lambda b: b"\xff\xfe" + b, "vocab", "vocab.txt: damaged or truncated"),
        ("users.txt", lambda b: b + b"\xc3\n", "user_ids", "users.txt: damaged or truncated"),
        ("items.jsonl", lambda b: b[: len(b) // 2], "items", "items.jsonl:"),
        ("text.npz", flip_middle_byte, "text", "text.npz: damaged or truncated"),
        ("word2vec.npy", cut(0.5), "word_vectors", "word2vec.npy: truncated"),
    ],
)
def test_damaged_files_of_a_prepared_folder_name_the_file_when_read(
    fname: str,
    damage: Callable[[bytes], bytes],
    attr: str,
    message: str,
    shop: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    from mdr.data.dataset import DataError, ProcessedDataset

    ctx = Ctx(tmp_path, *shop)
    root = ctx.proc_copy({fname: damage})
    with pytest.raises(DataError, match=re.escape(message)):
        getattr(ProcessedDataset.open(root), attr)


def test_images_that_would_not_fit_are_refused_before_the_memory_map(
    shop: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections import namedtuple

    import mdr.data.preprocess as pp

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(pp.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 1000, 1000))
    r = run_cli(prep(Ctx(tmp_path, *shop)))
    assert r.code == 2 and "images.npy: 100 images at 32x32 need 300.0 KiB, only 1000 B" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no sparse file, no partial folder


def test_photos_that_would_not_fit_in_memory_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mdr.data.fashion as fa

    monkeypatch.setattr(fa, "_available_memory", lambda: 10_000)
    r = run_cli(fashion(Ctx(tmp_path, tmp_path, tmp_path), "--image-size", "512"))
    assert r.code == 2 and "3 photos at 512x512 need 4.5 MiB of memory, 9.8 KiB" in r.err, r.err
    assert not (tmp_path / "out").exists()
