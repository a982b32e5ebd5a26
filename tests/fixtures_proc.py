"""A tiny prepared-dataset folder, written directly in the format of :mod:`mdr.data.dataset`.

Test helper only (no preprocessing involved), so the batching, training and
evaluation code can be tested with hand-made, known sequences. Every file of
the format is written (images, tokens, word vectors, weak labels), so real
content models can run on it too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mdr.data.dataset import FORMAT_VERSION, TEST, TRAIN, VALID
from mdr.io import MARKER, marker_text

# Hand-made sequences (item ids in time order) for known-answer tests: 4 users, 10 items.
KNOWN_SEQUENCES: list[list[int]] = [
    [0, 1, 2, 3, 4],  # user 0: train 0 1 2, valid 3, test 4
    [5, 6, 7, 8, 9, 0, 1],  # user 1: train 5 6 7 8 9, valid 0, test 1
    [2, 4, 6],  # user 2: train 2, valid 4, test 6
    [9, 8, 7, 6],  # user 3: train 9 8, valid 7, test 6
]

COLOURS = ["red", "green", "blue"]
SHAPES = ["round", "square"]
WORDS = [
    "<pad>",
    "<unk>",
    "red",
    "green",
    "blue",
    "round",
    "square",
    "soft",
    "big",
    "small",
    "nice",
    "cheap",
]


def random_sequences(
    n_users: int, n_items: int, seed: int = 0, min_len: int = 4, max_len: int = 12
) -> list[list[int]]:
    """Per user a random sequence of distinct items with a simple learnable structure.

    Each user prefers one residue class of item ids (``item % 3``), so a model
    that learns from history beats chance.
    """
    gen = np.random.default_rng(seed)
    seqs = []
    ids = np.arange(n_items)
    for u in range(n_users):
        n = int(gen.integers(min_len, max_len + 1))
        liked, other = ids[ids % 3 == u % 3], ids[ids % 3 != u % 3]
        n_other = max(n - len(liked), n // 4)
        seq = gen.choice(liked, size=n - n_other, replace=False).tolist()
        for i in gen.choice(other, size=n_other, replace=False).tolist():
            seq.insert(int(gen.integers(0, len(seq) - 1)), i)  # valid/test stay liked
        seqs.append([int(i) for i in seq])
    return seqs


def write_tiny_proc(
    root: str | Path,
    sequences: Sequence[Sequence[int]] | None = None,
    n_items: int | None = None,
    n_neg_eval: int = 3,
    image_size: int = 16,
    word_dim: int = 8,
    max_len: int = 6,
    seed: int = 0,
    name: str = "tiny-fixture",
) -> Path:
    """Write a complete prepared dataset folder at ``root`` and return its path.

    ``sequences``: per user, item ids in time order (at least 3 each: the last is
    test, the one before valid). ``n_items`` defaults to the largest id + 1.
    Evaluation lists hold the positive plus ``n_neg_eval`` negatives that the
    user never interacted with, drawn from ``np.random.default_rng(seed)``.
    """
    seqs = [list(s) for s in (KNOWN_SEQUENCES if sequences is None else sequences)]
    if any(len(s) < 3 for s in seqs):
        raise ValueError("every user needs at least 3 behaviours")
    n_items = n_items or max(max(s) for s in seqs) + 1
    n_users = len(seqs)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(seed)

    _write_behaviours(root, seqs)
    _write_eval_lists(root, seqs, n_items, n_neg_eval, gen)
    _write_items(root, n_items, n_users)
    _write_text(root, n_items, word_dim, max_len, gen)
    _write_images(root, n_items, image_size)
    n_behaviors = sum(len(s) for s in seqs)
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "synthetic": True,
        "source": {"format": "fixture", "category": "tiny", "sha256": {}},
        "counts": {
            "users": n_users,
            "items": n_items,
            "categories": 2,
            "behaviors": n_behaviors,
            "sparsity_percent": 100.0 * n_behaviors / (n_users * n_items),
            "behaviors_distinct": n_behaviors,
        },
        "skips": {"counts": {}, "examples": []},
        "config": {"image_size": image_size, "n_neg": n_neg_eval, "seed": seed},
        "labels": {"colour": COLOURS, "shape": SHAPES},
        "factors": {"colour": COLOURS, "shape": SHAPES},
    }
    (root / "dataset.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (root / MARKER).write_text(marker_text("prepared-dataset"), encoding="utf-8")
    return root


def _write_behaviours(root: Path, seqs: list[list[int]]) -> None:
    user, item, time, split = [], [], [], []
    for u, s in enumerate(seqs):
        n = len(s)
        for t, i in enumerate(s):
            user.append(u)
            item.append(i)
            time.append(1_000_000 + 1000 * u + t)
            split.append(TEST if t == n - 1 else VALID if t == n - 2 else TRAIN)
    np.savez(
        root / "behaviors.npz",
        user=np.array(user, np.int32),
        item=np.array(item, np.int32),
        time=np.array(time, np.int64),
        split=np.array(split, np.int8),
    )
    (root / "users.txt").write_text(
        "".join(f"U{u:03d}\n" for u in range(len(seqs))), encoding="utf-8"
    )


def _write_eval_lists(
    root: Path, seqs: list[list[int]], n_items: int, n_neg: int, gen: np.random.Generator
) -> None:
    lists = {}
    for split, offset in (("valid", 2), ("test", 1)):
        rows = []
        for s in seqs:
            unseen = np.setdiff1d(np.arange(n_items), s)
            if unseen.size < n_neg:
                raise ValueError("too few unseen items for the evaluation lists")
            rows.append([s[-offset], *gen.choice(unseen, size=n_neg, replace=False).tolist()])
        lists[split] = np.array(rows, np.int32)
    np.savez(root / "eval_lists.npz", **lists)


def _write_items(root: Path, n_items: int, n_users: int) -> None:
    ids = np.arange(n_items)
    category = (ids % 2).astype(np.int32)
    np.savez(root / "items.npz", category=category)
    (root / "categories.txt").write_text("even\nodd\n", encoding="utf-8")
    with (root / "items.jsonl").open("w", encoding="utf-8") as fh:
        for i in ids:
            fh.write(
                json.dumps(
                    {
                        "asin": f"A{i:05d}",
                        "title": f"{COLOURS[i % 3]} thing {i}",
                        "category": ["even", "odd"][i % 2],
                        "brand": "acme",
                    }
                )
                + "\n"
            )
    colour = (ids % 3).astype(np.int64)
    shape = (ids % 2).astype(np.int64)
    colour[ids % 4 == 3] = -1  # some unlabelled items, as with a labelling budget
    np.savez(root / "labels.npz", colour=colour, shape=shape)
    np.savez(
        root / "factors.npz", colour=(ids % 3).astype(np.int64), shape=(ids % 2).astype(np.int64)
    )


def _write_text(
    root: Path, n_items: int, word_dim: int, max_len: int, gen: np.random.Generator
) -> None:
    (root / "vocab.txt").write_text("".join(w + "\n" for w in WORDS), encoding="utf-8")
    tokens = np.zeros((n_items, max_len), np.int32)
    lengths = np.zeros(n_items, np.int32)
    for i in range(n_items):
        n = 1 + i % max_len
        words = [2 + i % 3, 5 + i % 2, *gen.integers(7, len(WORDS), size=max_len).tolist()]
        tokens[i, :n] = words[:n]
        lengths[i] = n
    np.savez(root / "text.npz", tokens=tokens, lengths=lengths)
    w2v = gen.normal(size=(len(WORDS), word_dim)).astype(np.float32)
    w2v[0] = 0.0
    np.save(root / "word2vec.npy", w2v)


def _write_images(root: Path, n_items: int, size: int) -> None:
    palette = np.array([[220, 30, 30], [30, 200, 30], [30, 30, 220]], np.uint8)
    images = np.full((n_items, size, size, 3), 255, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 <= (size / 3) ** 2
    square = (np.abs(yy - c) <= size / 3) & (np.abs(xx - c) <= size / 3)
    for i in range(n_items):
        images[i][disc if i % 2 == 0 else square] = palette[i % 3]
    np.save(root / "images.npy", images)
    mask = np.ones(n_items, bool)
    if n_items > 5:
        mask[5] = False  # one item without a usable image
    np.save(root / "image_mask.npy", mask)
