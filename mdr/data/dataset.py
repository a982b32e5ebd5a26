"""The prepared-dataset folder (``mdr data prepare`` writes it; everything else reads it).

One format for the real Amazon data and the synthetic shop. Item ids are
``0..n_items-1``, user ids ``0..n_users-1``, both in a stable order.

=====================  =====================================================
file                   content
=====================  =====================================================
``dataset.json``       manifest: name, source (format, year, category, review
                       and meta file, input sha256), counts (users, items,
                       categories, behaviors, sparsity_percent: Table 1's
                       figures; behaviors_distinct: the rows of
                       behaviors.npz, see below), skips (reason -> count,
                       examples), config (image_size, n_neg, seed, ...),
                       text (tokenizer, Unicode version), labels (name ->
                       class names), factors (synthetic only). Written LAST:
                       a folder without it is not a dataset.
``.mdr-output.json``   mdr's ownership marker (kind ``prepared-dataset``,
                       :mod:`mdr.io`): only a folder carrying it is ever
                       replaced, and only with ``--overwrite``.
``users.txt``          original user id, one a line (line i = user i)
``items.jsonl``        {"asin", "title", "category", "brand"}, line i = item i
``categories.txt``     leaf category names, line c = category id c
``items.npz``          ``category`` int32 [I]
``behaviors.npz``      ``user`` int32 [B], ``item`` int32 [B], ``time`` int64
                       [B], ``split`` int8 [B] (0 train, 1 valid, 2 test);
                       sorted by user, then time, then a deterministic
                       tie-break (file line). Each user's last behaviour is
                       test, the one before valid, the rest train. One row
                       per (user, item) pair: a repeated review is not a new
                       behaviour (:mod:`mdr.data.preprocess`), so a user's
                       valid and test items differ and are not in the
                       user's training history. ``counts.behaviors`` (Table
                       1) counts the published lines instead, repeats
                       included; ``counts.behaviors_distinct`` the rows.
``eval_lists.npz``     ``valid``/``test`` int32 [U, 1 + n_neg]: column 0 the
                       held-out positive, then n_neg sampled negatives never
                       in the user's history; drawn once with a fixed seed.
``vocab.txt``          token per line; line 0 ``<pad>``, line 1 ``<unk>``
``text.npz``           ``tokens`` int32 [I, L] (0 = pad), ``lengths`` int32
                       [I]: each item's text from TRAINING reviews only.
``word2vec.npy``       float32 [V, d] aligned with vocab.txt (row 0 zeros);
``word2vec.model``     the gensim model it came from.
``images.npy``         uint8 [I, S, S, 3] RGB, padded to square and resized
``image_mask.npy``     bool [I]: True where the item has a usable image
``labels.npz``         weak labels: name -> int64 [I], -1 = unlabelled
                       (the labelled-fraction budget already applied)
``factors.npz``        synthetic only: ground-truth factor -> int64 [I]
=====================  =====================================================
"""

from __future__ import annotations

import functools
import json
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mdr.data.parse import DataError, clip, shown

FORMAT_VERSION = 1
TRAIN, VALID, TEST = 0, 1, 2
PAD, UNK = 0, 1

REQUIRED_FILES = (
    "dataset.json",
    "users.txt",
    "items.jsonl",
    "categories.txt",
    "items.npz",
    "behaviors.npz",
    "eval_lists.npz",
    "vocab.txt",
    "text.npz",
    "word2vec.npy",
    "images.npy",
    "image_mask.npy",
    "labels.npz",
)


def check_prepared(
    root: Path, required: Sequence[str], format_version: int, how: str
) -> dict[str, Any]:
    """Check that ``root`` is a complete prepared folder of ``format_version``; returns its
    manifest. ``how`` tells the user what makes one (e.g. "run `mdr data prepare` again").

    Also checks every required ``.npy``/``.npz`` file's structure (a header that
    fits the file's size; a readable zip directory), so that a truncated array is a
    :class:`DataError` naming it here, not a numpy or zipfile traceback later.
    """
    if not root.is_dir():
        raise DataError(f"{root}: prepared dataset folder not found")
    if not (root / "dataset.json").is_file():
        raise DataError(
            f"{root}: no dataset.json - not a prepared dataset, or an interrupted one ({how})"
        )
    missing = [f for f in required if not (root / f).is_file()]
    if missing:
        raise DataError(f"{root}: incomplete prepared dataset, missing {missing}")
    manifest = read_manifest(root)
    if manifest.get("format_version") != format_version:
        raise DataError(
            f"{root}/dataset.json: format_version "
            f"{shown(manifest.get('format_version'))}, expected {format_version}; "
            f"{how}"
        )
    for f in required:
        if f.endswith(".npy"):
            check_npy(root / f, how)
        elif f.endswith(".npz"):
            check_npz(root / f, how)
    return manifest


def _damaged(path: Path, e: BaseException, how: str) -> DataError:
    return DataError(f"{path}: damaged or truncated ({type(e).__name__}: {clip(str(e))}); {how}")


# what json.loads raises for text it refuses: JSONDecodeError, the int-string limit's
# ValueError (an integer of 5,000 digits), RecursionError (nesting too deep), MemoryError
_JSON_ERRORS = (ValueError, RecursionError, MemoryError)


def _json_problem(e: BaseException) -> str:
    """What json.loads refused, in a few words."""
    if isinstance(e, json.JSONDecodeError):
        return e.msg
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if "integer string conversion" in str(e):
        return "an integer of more than 4300 digits"
    return f"{type(e).__name__}: {clip(str(e), 80)}" if str(e) else type(e).__name__


def check_npy(path: Path, how: str = "prepare the dataset again") -> None:
    """Raise :class:`DataError` unless ``path`` holds a whole ``.npy`` array (header + data)."""
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise _damaged(path, e, how) from e
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise DataError(f"{path}: truncated ({size} bytes, the header needs {need}); {how}")


def check_npz(path: Path, how: str = "prepare the dataset again") -> None:
    """Raise :class:`DataError` unless ``path`` is a readable zip (its directory at the end)."""
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise _damaged(path, e, how) from e


def load_npz(path: Path, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (every one, or only ``keys``: the others are never
    read), loaded without pickles; damage is a DataError naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if keys is None or k in keys}
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, KeyError) as e:
        raise _damaged(path, e, "prepare the dataset again") from e


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """An ``.npy`` array (memory-mapped with ``mmap``); damage is a DataError naming it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise _damaged(path, e, "prepare the dataset again") from e


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file of a prepared folder; damage is a DataError naming it."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise _damaged(path, e, "prepare the dataset again") from e


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object a line (``items.jsonl``, lines end with "\\n"); a damaged line (not
    JSON, refused by the parser, not an object) or file (not UTF-8) is a DataError naming
    the file and line."""
    out = []
    try:
        rows = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise _damaged(path, e, "prepare the dataset again") from e
    if rows and rows[-1] == "":
        rows.pop()
    # split on "\n" alone: JSON leaves U+2028, U+0085... unescaped in a string, and
    # str.splitlines would cut a line there
    for n, line in enumerate(rows, 1):
        try:
            value = json.loads(line)
        except _JSON_ERRORS as e:
            raise DataError(
                f"{path}:{n}: damaged ({_json_problem(e)}); prepare the dataset again"
            ) from e
        if not isinstance(value, dict):
            raise DataError(f"{path}:{n}: damaged (not a JSON object); prepare the dataset again")
        out.append(value)
    return out


def read_manifest(root: Path) -> dict[str, Any]:
    """``ROOT/dataset.json`` of a prepared folder; a corrupt one is a DataError naming it."""
    path = root / "dataset.json"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: corrupt ({clip(str(e))})") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: corrupt ({e})") from e
    except _JSON_ERRORS as e:
        raise DataError(f"{path}: corrupt ({_json_problem(e)})") from e
    if not isinstance(doc, dict):
        raise DataError(f"{path}: corrupt (not a JSON object)")
    return doc


def _is_count(value: Any) -> bool:
    """A count of the manifest: an integer (not a bool, not a float) from 0 to 2**63 - 1."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


@dataclass
class ProcessedDataset:
    """Read-only view of a prepared dataset folder; arrays load lazily and are cached."""

    root: Path

    @classmethod
    def open(cls, root: str | Path) -> ProcessedDataset:
        root = Path(root)
        manifest = check_prepared(
            root, REQUIRED_FILES, FORMAT_VERSION, "run `mdr data prepare` again"
        )
        counts = manifest.get("counts")
        if not isinstance(counts, dict) or not all(
            _is_count(counts.get(k)) for k in ("users", "items", "categories", "behaviors")
        ):
            raise DataError(
                f"{root}/dataset.json: corrupt (counts of users, items, categories "
                "and behaviors missing); run `mdr data prepare` again"
            )
        return cls(root)

    # ------------------------------------------------------------------ metadata
    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.root)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def n_users(self) -> int:
        return int(self.manifest["counts"]["users"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["counts"]["items"])

    @property
    def n_categories(self) -> int:
        return int(self.manifest["counts"]["categories"])

    @property
    def is_synthetic(self) -> bool:
        return bool(self.manifest.get("synthetic", False))

    @functools.cached_property
    def vocab(self) -> list[str]:
        return read_lines(self.root / "vocab.txt")

    @functools.cached_property
    def items(self) -> list[dict[str, Any]]:
        return read_jsonl(self.root / "items.jsonl")

    @functools.cached_property
    def category_names(self) -> list[str]:
        return read_lines(self.root / "categories.txt")

    @functools.cached_property
    def user_ids(self) -> list[str]:
        return read_lines(self.root / "users.txt")

    @property
    def label_names(self) -> dict[str, list[str]]:
        """Weak-label name -> class names."""
        return dict(self.manifest.get("labels", {}))

    # ------------------------------------------------------------------ arrays
    def _npz(self, name: str, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        return load_npz(self.root / name, keys)

    @functools.cached_property
    def behaviors(self) -> dict[str, np.ndarray]:
        return self._npz("behaviors.npz")

    @functools.cached_property
    def item_category(self) -> np.ndarray:
        return self._npz("items.npz")["category"]

    @functools.cached_property
    def eval_lists(self) -> dict[str, np.ndarray]:
        return self._npz("eval_lists.npz")

    @property
    def has_test(self) -> bool:
        """Whether this view holds the test behaviours and lists (see :meth:`validation_only`)."""
        return True

    def validation_only(self) -> ValidationView:
        """The same folder without its test split: what the tuner and every protocol
        choice read. Its behaviours hold no test behaviour and its evaluation lists no
        test list (the test arrays of eval_lists.npz are never read), so no choice made
        on it can depend on them."""
        return ValidationView(self.root)

    @functools.cached_property
    def text(self) -> dict[str, np.ndarray]:
        return self._npz("text.npz")

    @functools.cached_property
    def word_vectors(self) -> np.ndarray:
        return load_npy(self.root / "word2vec.npy")

    @functools.cached_property
    def images(self) -> np.ndarray:
        """uint8 [I, S, S, 3], memory-mapped (the Cloth images do not need to fit in RAM)."""
        return load_npy(self.root / "images.npy", mmap=True)

    @functools.cached_property
    def image_mask(self) -> np.ndarray:
        return load_npy(self.root / "image_mask.npy")

    @functools.cached_property
    def labels(self) -> dict[str, np.ndarray]:
        return self._npz("labels.npz")

    @functools.cached_property
    def factors(self) -> dict[str, np.ndarray]:
        """Ground-truth factors (synthetic data only; empty dict otherwise)."""
        path = self.root / "factors.npz"
        return self._npz("factors.npz") if path.is_file() else {}

    # ------------------------------------------------------------------ derived
    @functools.cached_property
    def user_sequences(self) -> list[np.ndarray]:
        """Per user, item ids of all behaviours in time order (train, then valid, then test)."""
        b = self.behaviors
        bounds = np.flatnonzero(np.diff(b["user"])) + 1
        return np.split(b["item"], bounds)

    def stats(self) -> dict[str, Any]:
        """The Table 1 figures (``behaviors``: published lines, repeats included), the
        distinct behaviours the splits use, and skip counts."""
        c = self.manifest["counts"]
        return {
            "dataset": self.name,
            "users": int(c["users"]),
            "items": int(c["items"]),
            "categories": int(c["categories"]),
            "behaviors": int(c["behaviors"]),
            "sparsity_percent": float(c["sparsity_percent"]),
            "behaviors_distinct": int(c.get("behaviors_distinct", c["behaviors"])),
            "skips": self.manifest.get("skips", {}).get("counts", {}),
        }


@dataclass
class ValidationView(ProcessedDataset):
    """A prepared folder without its test split (:meth:`ProcessedDataset.validation_only`):
    every user's last behaviour is gone from :attr:`behaviors` (so it is no longer excluded
    from the training negatives either) and :attr:`eval_lists` holds ``valid`` only."""

    @property
    def has_test(self) -> bool:
        return False

    @functools.cached_property
    def behaviors(self) -> dict[str, np.ndarray]:
        b = self._npz("behaviors.npz")
        keep = b["split"] != TEST
        return {k: v[keep] for k, v in b.items()}

    @functools.cached_property
    def eval_lists(self) -> dict[str, np.ndarray]:
        return self._npz("eval_lists.npz", keys=("valid",))
