"""Atomic writes: a result file is either complete or absent, never half-written; output
folders that carry this tool's ownership marker, so that nothing else is ever replaced."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _file_mode() -> int:
    """0666 minus the process umask: the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600 files; results get the usual mode
            os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def append_jsonl(path: str | Path, obj: Any) -> None:
    """Append one JSON line (flushed and fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, default=_json_default) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` atomically (checkpoints: a kill never leaves half a file). A write that
    fails (torch reports a full disk as a RuntimeError, not an OSError) is one
    :class:`OutputError` naming the file and the free space."""
    import torch

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (RuntimeError, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None and e.errno not in (28, 122):
            raise  # a path error the CLI names itself (not a full disk)
        raise OutputError(
            f"{path}: could not write it ({_first_line(e)}); {_free_space(path.parent)} free there"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


def _free_space(folder: Path) -> str:
    try:
        return human_bytes(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown space"


def truncate_jsonl_epochs(path: str | Path, last_epoch: int) -> None:
    """Keep the lines of a per-epoch log (``metrics.jsonl``) with ``epoch <= last_epoch``.

    Used on resume: lines after the checkpoint's epoch are redone. A line cut by a
    kill (not valid JSON) belongs to an epoch that is re-run, so it goes too.
    """
    path = Path(path)
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["epoch"] <= last_epoch:
                keep.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    write_text(path, "".join(keep))


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez``, but atomic and byte-reproducible (fixed zip timestamps, no
    pickles): equal data give equal files."""
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(
                zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue()
            )


# --------------------------------------------------------------------------- output folders
#
# Every folder this tool creates carries MARKER, a small JSON file naming the tool, the
# marker's version and the KIND of output. It is written into the temporary folder first,
# so a folder is recognisably ours from its first moment to its last. An existing folder
# is replaced only when it carries our marker of the same kind AND the caller asked for
# it; anything else (a user's files, a plain file, a link, another kind of output, an
# unmarked folder that merely looks like ours) is refused before any work is done, and
# checked again just before the move, so nothing that this tool did not create is ever
# deleted. An empty existing folder may be used.
#
# A killed run leaves ``.<name>.partial-*`` (or, when killed while swapping an old
# output out, ``.<name>.old-*``) beside the output. Both carry the marker; the next run
# into the same output removes them. A running build holds an exclusive ``flock`` on its
# partial folder's marker (released by the kernel when the process dies, ``kill -9``
# included), so a concurrent run never removes a build that is still going.

MARKER = ".mdr-output.json"
TOOL = "mdr-companion"
MARKER_VERSION = 1
KINDS = ("synthetic-raw", "prepared-dataset", "fashion-images", "amazon-raw")
_PARTIAL, _OLD = ".partial-", ".old-"
_TEMP_SUFFIX = re.compile(r"[a-z0-9_]{8}")  # what tempfile.mkdtemp appends


class OutputError(ValueError):
    """An output folder that this tool must not create or replace (names the folder and why)."""


class FolderInUse(OutputError):
    """Another command holds the folder's lock."""


def marker_text(kind: str) -> str:
    """The marker file's content for ``kind``: fixed bytes, so outputs stay reproducible."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {KINDS}")
    return (
        json.dumps({"tool": TOOL, "marker_version": MARKER_VERSION, "kind": kind}, indent=2) + "\n"
    )


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of ``folder`` when it is this tool's (a dict with ``kind``), else None."""
    path = Path(folder) / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("tool") != TOOL or doc.get("kind") not in KINDS:
        return None
    return doc


def check_output(path: str | Path, kind: str, overwrite: bool = False) -> None:
    """Raise :class:`OutputError` unless ``path`` may receive a new output of ``kind``.

    Allowed: a path that does not exist, an empty folder, and (with ``overwrite``)
    a folder holding this tool's output of the same ``kind``.
    """
    path = Path(path)
    if path.is_symlink():
        raise OutputError(
            f"{path}: is a symbolic link; refusing to replace it "
            "(give a new folder, or the folder the link points to)"
        )
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(
            f"{path}: exists and is not a folder; refusing to replace it "
            "(choose another output path)"
        )
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return
    marker = read_marker(path)
    if marker is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputError(
            f"{path}: exists, is not empty ({len(entries)} entries: {shown}) and was not made "
            f"by mdr (no {MARKER}); refusing to replace it: choose another output path, "
            "or empty or remove the folder yourself"
        )
    if marker["kind"] != kind:
        raise OutputError(
            f"{path}: holds mdr's {marker['kind']} output, not {kind}; "
            "refusing to replace it (choose another output path)"
        )
    if not overwrite:
        raise OutputError(
            f"{path}: already holds mdr's {kind} output; pass --overwrite "
            "(overwrite=True) to replace it, or choose another output path"
        )


# --------------------------------------------------------------------------- folders filled in place
#
# ``mdr data download`` adds files to its folder one by one (and a re-run completes what an
# earlier one began), so it does not build a new folder and swap it in. Its rule instead
# (:func:`claim_folder`): the folder is one it created (it carries the marker of its kind),
# or an empty one (then marked), or an unmarked folder holding nothing but names the command
# itself writes (e.g. files put there by hand, as its documentation invites); anything else
# is refused before any work. Inside, a file it cannot use is moved aside
# (:func:`move_aside`), never deleted or replaced.


def claim_folder(
    path: str | Path,
    kind: str,
    own_name: Callable[[str], bool],
    what: str = "files of this command",
) -> None:
    """Make sure ``path`` is a folder that a command of ``kind`` may fill in place.

    Accepted: a path that does not exist (created and marked), an empty folder (marked),
    a folder carrying this tool's marker of ``kind``, and an unmarked folder whose every
    entry is ``own_name(entry)`` (left unmarked: it is not ours, only its names are). A
    symbolic link (the folder, or an entry of an accepted name), a plain file, a folder of
    another kind, or one holding anything else is refused with :class:`OutputError`;
    ``what`` says in the message what the own names are.
    """
    path = Path(path)
    if path.is_symlink():
        raise OutputError(
            f"{path}: is a symbolic link; refusing to write into it "
            "(give a new folder, or the folder the link points to)"
        )
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"{path}: exists and is not a folder; refusing to write into it "
            "(choose another output path)"
        )
    if not path.exists():
        try:
            path.mkdir(parents=True)
        except OSError as e:
            raise OutputError(
                f"{path}: cannot create an output folder there ({e.strerror or e})"
            ) from e
        write_text(path / MARKER, marker_text(kind))
        return
    marker = read_marker(path)
    if marker is not None and marker["kind"] != kind:
        raise OutputError(
            f"{path}: holds mdr's {marker['kind']} output, not {kind}; "
            "refusing to write into it (choose another output path)"
        )
    entries = sorted(p.name for p in path.iterdir())
    linked = [n for n in entries if n != MARKER and (path / n).is_symlink()]
    if linked:
        raise OutputError(
            f"{path}/{linked[0]}: is a symbolic link; refusing to write "
            "through it (this command writes only into files and folders of its "
            "own)"
        )
    if marker is not None:
        return
    if not entries:
        write_text(path / MARKER, marker_text(kind))
        return
    foreign = [n for n in entries if not own_name(n)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise OutputError(
            f"{path}: exists, holds {len(foreign)} "
            f"{'entry that is' if len(foreign) == 1 else 'entries that are'} not {what} "
            f"({shown}) and "
            f"was not made by mdr (no {MARKER}); refusing to write into it: choose another "
            "output path (a new or empty folder), or move those entries away yourself"
        )


def move_aside(path: str | Path, why: str = "damaged") -> Path:
    """Rename the file ``path`` to ``<name>.<why>-<n>`` (the smallest ``n`` not taken) beside
    it, replacing nothing; returns the new path. What a command cannot use but did not
    create goes there instead of being deleted."""
    path = Path(path)
    n = 1
    while True:
        new = path.with_name(f"{path.name}.{why}-{n}")
        if not new.exists() and not new.is_symlink():
            os.rename(path, new)
            return new
        n += 1


def clean_leftovers(path: str | Path) -> list[Path]:
    """Remove what killed runs into ``path`` left beside it; returns the removed folders.

    Only ``.<name>.partial-*`` / ``.<name>.old-*`` folders are considered, and of those
    only the ones that are recognisably this tool's and not in use: a folder whose
    marker is this tool's and not locked by a running build, or one killed while being
    set up (empty, or holding nothing but an unfinished marker file).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    removed = []
    for prefix in (f".{path.name}{_PARTIAL}", f".{path.name}{_OLD}"):
        for entry in sorted(parent.glob(glob.escape(prefix) + "*")):
            if not _TEMP_SUFFIX.fullmatch(entry.name[len(prefix) :]):
                continue  # not a name mkdtemp gave (e.g. a user's ".out.old-backup")
            if entry.is_symlink() or not entry.is_dir():
                continue
            names = [p.name for p in entry.iterdir()]
            mark = entry / MARKER
            if not names:
                entry.rmdir()
            elif mark.is_symlink() or not mark.is_file() or _locked(mark):
                continue  # not ours, or a build that is still running
            elif read_marker(entry) is not None or names == [MARKER]:
                shutil.rmtree(entry, ignore_errors=True)
            else:
                continue  # an unreadable marker beside other files: not provably ours
            removed.append(entry)
    return removed


def _new_marker(folder: Path, kind: str) -> int | None:
    """Create ``folder``'s marker, locked before its first byte is written (so a concurrent
    cleanup never takes a starting build for a dead one); the open descriptor, which holds
    the lock until closed (None without fcntl)."""
    fd = os.open(folder / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no locking, leftovers are still told by the marker
            pass
        os.write(fd, marker_text(kind).encode("utf-8"))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _locked(path: Path) -> bool:
    """Whether another open descriptor holds a lock on ``path`` (a live build)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str, overwrite: bool = False) -> Iterator[Path]:
    """Build an output folder of ``kind`` in a marked temporary sibling; move it into place.

    Refuses (:class:`OutputError`, before anything is built) any ``path`` that
    :func:`check_output` refuses; cleans the leftovers of killed runs into ``path``
    (:func:`clean_leftovers`). An interrupted build leaves no folder at ``path`` that
    looks complete, and an earlier output at ``path`` stays as it was until the new one
    is complete. An OS error without a file name inside the block (e.g. a full disk) is
    re-raised as :class:`OutputError` naming ``path``. One command at a time builds an
    output: the build's marker is locked while it runs, and a second command that finds a
    live build of the same ``path`` is refused, naming its pid.
    """
    path = Path(path)
    check_output(path, kind, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in clean_leftovers(path):
            print(f"mdr: removed {old}, left by an interrupted run", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{_PARTIAL}", dir=path.parent))
    except OSError as e:
        raise OutputError(
            f"{path}: cannot create an output folder there ({e.strerror or e})"
        ) from e
    lock = None
    try:
        lock = _new_marker(tmp, kind)
        _refuse_concurrent_build(path, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the result is an ordinary folder
        try:
            yield tmp
        except OSError as e:
            if e.errno is not None and e.filename is None:
                raise OutputError(f"{path}: {e.strerror or e} while writing the output") from e
            raise
        check_output(path, kind, overwrite)  # again: the folder may have changed meanwhile
        (tmp / _BUILD_PID).unlink(missing_ok=True)
        _move_into_place(tmp, path)
    finally:
        if lock is not None:
            os.close(lock)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_BUILD_PID = ".mdr-build-pid"  # in a build folder while it runs: who builds it


def _refuse_concurrent_build(path: Path, mine: Path) -> None:
    """Refuse to build ``path`` while another live build of it exists (its marker locked).
    Two builds started at the same instant may both be refused; never both go on."""
    (mine / _BUILD_PID).write_text(f"{os.getpid()}\n", encoding="ascii")
    prefix = f".{path.name}{_PARTIAL}"
    for entry in sorted(path.parent.glob(glob.escape(prefix) + "*")):
        if entry == mine or not _TEMP_SUFFIX.fullmatch(entry.name[len(prefix) :]):
            continue
        if entry.is_dir() and not entry.is_symlink() and _locked(entry / MARKER):
            try:
                holder = (entry / _BUILD_PID).read_text(encoding="ascii").strip()[:20]
            except OSError:
                holder = "unknown"
            raise FolderInUse(
                f"{path}: being written by another command (pid {holder}); "
                "wait for it to finish, or stop it"
            )


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing (checked) ``path`` is swapped out, then removed."""
    if path.is_dir() and any(path.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}{_OLD}", dir=path.parent))
        os.replace(path, old)  # onto the empty placeholder folder
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)  # onto nothing, or onto an empty folder


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shared_folder(relative: Path, env: str) -> Path:
    """``$env``, else ``relative`` from the current folder, else from the checkout this
    package was imported from (the first that exists; the first candidate when none)."""
    if os.environ.get(env):
        return Path(os.environ[env])
    candidates = [Path.cwd() / relative, Path(__file__).resolve().parents[1] / relative]
    return next((c.resolve() for c in candidates if c.is_dir()), candidates[0].resolve())


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: sizes in messages."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------- locks


@contextlib.contextmanager
def folder_lock(lock_file: str | Path, folder: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` for the block: the lock of ``folder``,
    which one command at a time may write. A held lock is refused with one
    :class:`FolderInUse` line naming the holder's pid; a lock file left by a killed
    process holds no lock (the kernel releases it with the process), so it is taken over.
    The lock file itself stays (removing it would let a waiting command lock a file
    that is no longer the lock)."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
                raise FolderInUse(
                    f"{folder}: in use by another command (pid {holder}); "
                    "wait for it to finish, or stop it"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def own_temp_files(folder: str | Path, names: Iterator[str] | list[str]) -> list[Path]:
    """The temporary files :func:`atomic_path` leaves in ``folder`` when a process is
    killed mid-write, for the files ``names`` only (``.<name>.<random>.tmp``)."""
    folder = Path(folder)
    out = []
    for name in names:
        out += [
            p
            for p in folder.glob(glob.escape(f".{name}.") + "*.tmp")
            if p.is_file() and re.fullmatch(rf"\.{re.escape(name)}\.[A-Za-z0-9_]+\.tmp", p.name)
        ]
    return sorted(out)
