"""Atomic writes leave either the complete file or nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mdr import io as mio
from mdr.seeding import rng


def test_atomic_path_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    mio.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), mio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text().strip() == '{\n  "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_dir_is_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "proc"
    with pytest.raises(RuntimeError), mio.atomic_dir(out, "prepared-dataset") as tmp:
        (tmp / "dataset.json").write_text("{}")
        raise RuntimeError("interrupted")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with mio.atomic_dir(out, "prepared-dataset") as tmp:
        (tmp / "x.txt").write_text("done")
    assert (out / "x.txt").read_text() == "done"
    assert mio.read_marker(out) == {
        "tool": "mdr-companion",
        "marker_version": 1,
        "kind": "prepared-dataset",
    }


def _user_folder(root: Path) -> Path:
    (root / "thesis").mkdir(parents=True)
    (root / "thesis" / "ch1.tex").write_text("chapter one")
    return root


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: _user_folder(p), "not made by mdr"),
        (lambda p: p.write_text("notes"), "not a folder"),
        (lambda p: (p.mkdir(), (p / "dataset.json").write_text("{}")), "not made by mdr"),
        (lambda p: (p.mkdir(), (p / mio.MARKER).write_text("{not json")), "not made by mdr"),
        (
            lambda p: (p.mkdir(), (p / mio.MARKER).write_text(mio.marker_text("synthetic-raw"))),
            "synthetic-raw output, not prepared-dataset",
        ),
        (lambda p: p.symlink_to(_user_folder(p.parent / "real")), "symbolic link"),
    ],
)
def test_atomic_dir_refuses_what_it_did_not_create(tmp_path: Path, make, match: str) -> None:
    out = tmp_path / "out"
    make(out)
    before = {q.relative_to(tmp_path): q.read_bytes() for q in tmp_path.rglob("*") if q.is_file()}
    for overwrite in (False, True):
        with (
            pytest.raises(mio.OutputError, match=match),
            mio.atomic_dir(out, "prepared-dataset", overwrite=overwrite),
        ):
            pytest.fail("the body must not run")
    after = {q.relative_to(tmp_path): q.read_bytes() for q in tmp_path.rglob("*") if q.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".out.partial-*"))


def test_atomic_dir_replaces_its_own_kind_only_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with mio.atomic_dir(out, "prepared-dataset") as tmp:
        (tmp / "a").write_text("first")
    with (
        pytest.raises(mio.OutputError, match="--overwrite"),
        mio.atomic_dir(out, "prepared-dataset"),
    ):
        pytest.fail("the body must not run")
    with pytest.raises(RuntimeError), mio.atomic_dir(out, "prepared-dataset", True) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("killed")
    assert (out / "a").read_text() == "first"  # the old output stays until the new one is whole
    with mio.atomic_dir(out, "prepared-dataset", overwrite=True) as tmp:
        (tmp / "b").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == [mio.MARKER, "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    (tmp_path / "empty").mkdir()
    with mio.atomic_dir(tmp_path / "empty", "fashion-images") as tmp:
        (tmp / "c").write_text("x")
    assert (tmp_path / "empty" / "c").is_file()


def test_leftovers_of_killed_runs_are_removed_but_not_live_or_foreign_ones(tmp_path: Path) -> None:
    import fcntl
    import os

    out = tmp_path / "out"
    dead = tmp_path / ".out.partial-dead0000"
    dead.mkdir()
    (dead / mio.MARKER).write_text(mio.marker_text("prepared-dataset"))
    (dead / "half.npz").write_bytes(b"x")
    old = tmp_path / ".out.old-dead0000"
    old.mkdir()
    (old / mio.MARKER).write_text(mio.marker_text("prepared-dataset"))
    empty = tmp_path / ".out.partial-empty000"  # killed before its marker was written
    empty.mkdir()
    live = tmp_path / ".out.partial-live0000"
    live.mkdir()
    (live / mio.MARKER).write_text(mio.marker_text("prepared-dataset"))
    foreign = _user_folder(tmp_path / ".out.partial-mine0000")  # a name alike, not ours
    other = tmp_path / ".outer.partial-x0000000"  # another output's leftover
    backup = tmp_path / ".out.old-backup"  # a user's own name: not what mkdtemp gives
    backup.mkdir()
    (backup / mio.MARKER).write_text(mio.marker_text("prepared-dataset"))
    other.mkdir()
    (other / mio.MARKER).write_text(mio.marker_text("prepared-dataset"))
    (live / ".mdr-build-pid").write_text("4242\n")
    fd = os.open(live / mio.MARKER, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a build that is still running holds it
    try:  # one command at a time builds an output: the live build's pid is named
        with (
            pytest.raises(
                mio.FolderInUse,
                match=r"out: being written by another command "
                r"\(pid 4242\)",
            ),
            mio.atomic_dir(out, "prepared-dataset") as tmp,
        ):
            (tmp / "x").write_text("x")
    finally:
        os.close(fd)
    assert not out.exists()
    assert not dead.exists() and not old.exists() and not empty.exists()
    assert live.is_dir() and other.is_dir() and backup.is_dir()
    assert (foreign / "thesis" / "ch1.tex").read_text() == "chapter one"
    with mio.atomic_dir(out, "prepared-dataset") as tmp:  # its owner has gone now
        (tmp / "x").write_text("x")
    assert not live.exists() and (out / "x").is_file()
    assert sorted(p.name for p in out.iterdir()) == [mio.MARKER, "x"]  # no build pid file


def test_os_error_without_a_file_name_names_the_output(tmp_path: Path) -> None:
    import errno

    with (
        pytest.raises(mio.OutputError, match=r"out: No space left on device"),
        mio.atomic_dir(tmp_path / "out", "prepared-dataset"),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_npz_is_byte_reproducible_and_json_takes_numpy_values(tmp_path: Path) -> None:
    mio.write_npz(tmp_path / "a.npz", x=np.arange(4, dtype=np.int32), y=np.ones(2))
    mio.write_npz(tmp_path / "b.npz", x=np.arange(4, dtype=np.int32), y=np.ones(2))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert z["x"].tolist() == [0, 1, 2, 3] and z["y"].tolist() == [1.0, 1.0]
    mio.write_json(tmp_path / "b.json", {"x": np.float32(0.5), "n": np.int64(3)})
    assert '"x": 0.5' in (tmp_path / "b.json").read_text()


def test_named_rng_streams_are_reproducible_and_independent() -> None:
    a = rng(0, "train-neg", 1).integers(0, 1000, 5)
    assert a.tolist() == rng(0, "train-neg", 1).integers(0, 1000, 5).tolist()
    assert a.tolist() != rng(0, "train-neg", 2).integers(0, 1000, 5).tolist()
    assert a.tolist() != rng(1, "train-neg", 1).integers(0, 1000, 5).tolist()


def test_atomic_files_get_the_usual_mode_not_mkstemps_0600(tmp_path) -> None:
    import os
    import stat

    from mdr.io import write_text

    mask = os.umask(0)
    os.umask(mask)
    write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask != 0o600


def test_git_commit_is_that_of_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import shutil
    import subprocess

    from mdr.provenance import git_commit, manifest

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.chdir(tmp_path)  # not inside any checkout: no commit, whatever mdr is in
    assert git_commit() is None and manifest()["git_commit"] is None
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["init", "-q"], ["add", "f"], ["commit", "-q", "-m", "x"]):
        if cmd[0] == "add":
            (repo / "f").write_text("1")
        subprocess.run(["git", *cmd], cwd=repo, check=True, env={**os.environ, **env})
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    assert git_commit() == sha
    (repo / "f").write_text("2")
    assert git_commit() == sha + "+dirty"
    (repo / "f").write_text("1")
    (repo / "untracked").write_text("x")  # untracked files do not make a tree dirty
    assert git_commit() == sha
    (repo / "results").mkdir()  # nor the committed outputs that a rerun rewrites
    (repo / "results" / "t.csv").write_text("a")
    subprocess.run(["git", "add", "results/t.csv"], cwd=repo, check=True)
    subprocess.run(
        ["git", "commit", "-q", "-m", "y"], cwd=repo, check=True, env={**os.environ, **env}
    )
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    (repo / "results" / "t.csv").write_text("b")
    assert git_commit() == sha
    assert git_commit(tmp_path) is None
