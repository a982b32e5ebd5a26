"""Known-answer tests for mdr.data.batches on a hand-made prepared folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mdr.data.batches import (
    BatchIterator,
    eval_samples,
    training_samples,
    user_seen,
)
from mdr.data.dataset import ProcessedDataset
from mdr.data.parse import DataError
from tests.fixtures_proc import KNOWN_SEQUENCES, random_sequences, write_tiny_proc


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> ProcessedDataset:
    return ProcessedDataset.open(write_tiny_proc(tmp_path_factory.mktemp("known")))


@pytest.fixture(scope="module")
def ds_random(tmp_path_factory: pytest.TempPathFactory) -> ProcessedDataset:
    seqs = random_sequences(30, 40, seed=3)
    return ProcessedDataset.open(write_tiny_proc(tmp_path_factory.mktemp("rand"), seqs))


def test_prefix_construction_known_answer(ds: ProcessedDataset) -> None:
    s = training_samples(ds, epoch=0, seed=0, n_neg=1, max_hist=3)
    pos = s["label"] == 1
    # positives: every training item at prefix position t >= 1, by user then time
    # user 0 train [0 1 2], user 1 [5 6 7 8 9], user 2 [2] (no sample), user 3 [9 8]
    assert s["user"][pos].tolist() == [0, 0, 1, 1, 1, 1, 3]
    assert s["cand"][pos].tolist() == [1, 2, 6, 7, 8, 9, 8]
    assert s["hist"][pos].tolist() == [
        [0, 0, 0],
        [0, 0, 1],  # right-aligned, left-padded
        [0, 0, 5],
        [0, 5, 6],
        [5, 6, 7],
        [6, 7, 8],  # truncated to the 3 most recent
        [0, 0, 9],
    ]
    assert s["hist_mask"][pos].tolist() == [
        [False, False, True],
        [False, True, True],
        [False, False, True],
        [False, True, True],
        [True, True, True],
        [True, True, True],
        [False, False, True],
    ]
    # padding is id 0 exactly where the mask is False
    assert (s["hist"][~s["hist_mask"]] == 0).all()


def test_layout_dtypes_and_interleaving(ds: ProcessedDataset) -> None:
    s = training_samples(ds, epoch=0, seed=0, n_neg=2, max_hist=4)
    n = 7 * 3
    assert {k: v.shape for k, v in s.items()} == {
        "user": (n,),
        "hist": (n, 4),
        "hist_mask": (n, 4),
        "cand": (n,),
        "label": (n,),
    }
    assert s["user"].dtype == np.int64 and s["hist"].dtype == np.int64
    assert s["cand"].dtype == np.int64 and s["label"].dtype == np.float32
    assert s["hist_mask"].dtype == np.bool_
    assert s["label"].reshape(-1, 3).tolist() == [[1, 0, 0]] * 7
    # each negative shares its positive's user and history
    assert (s["user"].reshape(-1, 3) == s["user"][::3, None]).all()
    assert (s["hist"].reshape(-1, 3, 4) == s["hist"][::3, None, :]).all()


def test_negatives_never_seen_in_any_split(ds_random: ProcessedDataset) -> None:
    seen = {u: set(seq.tolist()) for u, seq in enumerate(ds_random.user_sequences)}
    for epoch in range(5):
        s = training_samples(ds_random, epoch=epoch, seed=7, n_neg=3, max_hist=5)
        neg = s["label"] == 0
        for u, i in zip(s["user"][neg].tolist(), s["cand"][neg].tolist()):
            assert i not in seen[u]
            assert 0 <= i < ds_random.n_items


def test_negatives_are_seeded_per_epoch(ds_random: ProcessedDataset) -> None:
    a = training_samples(ds_random, epoch=1, seed=0)
    b = training_samples(ds_random, epoch=1, seed=0)
    c = training_samples(ds_random, epoch=2, seed=0)
    d = training_samples(ds_random, epoch=1, seed=1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["cand"], c["cand"])
    assert not np.array_equal(a["cand"], d["cand"])
    pos = a["label"] == 1
    np.testing.assert_array_equal(a["cand"][pos], c["cand"][pos])  # positives fixed


def test_negatives_roughly_uniform(ds_random: ProcessedDataset) -> None:
    # user 0's unseen items should all be drawn about equally often
    counts = np.zeros(ds_random.n_items)
    for epoch in range(40):
        s = training_samples(ds_random, epoch=epoch, seed=0, n_neg=5)
        neg = (s["label"] == 0) & (s["user"] == 0)
        counts += np.bincount(s["cand"][neg], minlength=ds_random.n_items)
    unseen = np.setdiff1d(np.arange(ds_random.n_items), ds_random.user_sequences[0])
    assert counts[np.setdiff1d(np.arange(ds_random.n_items), unseen)].sum() == 0
    c = counts[unseen]
    assert c.min() > 0.4 * c.mean() and c.max() < 1.6 * c.mean()


def test_user_who_saw_everything_is_an_error(tmp_path: Path) -> None:
    ds = ProcessedDataset.open(
        write_tiny_proc(tmp_path, [[0, 1, 2, 3], [0, 1, 2]], n_items=4, n_neg_eval=0)
    )
    with pytest.raises(DataError, match="every item"):
        training_samples(ds, epoch=0, seed=0)


def test_eval_samples_history_per_split(ds: ProcessedDataset) -> None:
    v = eval_samples(ds, "valid", max_hist=4)
    t = eval_samples(ds, "test", max_hist=4)
    assert v["user"].tolist() == [0, 1, 2, 3]
    # valid: training items only
    assert v["hist"].tolist() == [[0, 0, 1, 2], [6, 7, 8, 9], [0, 0, 0, 2], [0, 0, 9, 8]]
    assert v["hist_mask"].sum(1).tolist() == [3, 4, 1, 2]
    # test: training items + the validation item
    assert t["hist"].tolist() == [[0, 1, 2, 3], [7, 8, 9, 0], [0, 0, 2, 4], [0, 9, 8, 7]]
    assert t["hist_mask"].sum(1).tolist() == [4, 4, 2, 3]
    assert v["cands"][:, 0].tolist() == [s[-2] for s in KNOWN_SEQUENCES]
    assert t["cands"][:, 0].tolist() == [s[-1] for s in KNOWN_SEQUENCES]
    assert v["cands"].shape == (4, 4) and v["cands"].dtype == np.int64
    with pytest.raises(ValueError, match="split"):
        eval_samples(ds, "train", max_hist=4)  # type: ignore[arg-type]


def test_user_seen(ds: ProcessedDataset) -> None:
    v = user_seen(ds, "valid").toarray()
    t = user_seen(ds, "test").toarray()
    assert v.shape == (4, 10)
    assert [np.flatnonzero(r).tolist() for r in v] == [[0, 1, 2], [5, 6, 7, 8, 9], [2], [8, 9]]
    assert [np.flatnonzero(r).tolist() for r in t] == [
        [0, 1, 2, 3],
        [0, 5, 6, 7, 8, 9],
        [2, 4],
        [7, 8, 9],
    ]


def test_user_seen_keeps_a_repeated_positive_rankable(tmp_path: Path) -> None:
    # user 0 buys item 1 again at test time: it is in the history but must stay rankable
    ds = ProcessedDataset.open(write_tiny_proc(tmp_path, [[0, 1, 2, 1], [3, 4, 5]], n_items=8))
    t = user_seen(ds, "test").toarray()
    assert np.flatnonzero(t[0]).tolist() == [0, 2]


def test_batch_iterator_covers_all_rows_in_seeded_order(ds_random: ProcessedDataset) -> None:
    s = training_samples(ds_random, epoch=0, seed=0)
    n = len(s["label"])
    it = BatchIterator(s, 32, shuffle=True, seed=5, epoch=0)
    batches = list(it)
    assert len(batches) == len(it) == -(-n // 32)
    assert batches[0]["hist"].dtype == torch.int64 and batches[0]["hist_mask"].dtype == torch.bool
    assert batches[0]["label"].dtype == torch.float32
    # every row exactly once: rebuild the rows as tuples
    rows = sorted(zip(s["user"].tolist(), s["cand"].tolist(), map(tuple, s["hist"].tolist())))
    got = sorted(
        (u, c, tuple(h))
        for b in batches
        for u, c, h in zip(b["user"].tolist(), b["cand"].tolist(), b["hist"].tolist())
    )
    assert got == rows
    again = list(BatchIterator(s, 32, shuffle=True, seed=5, epoch=0))
    other = list(BatchIterator(s, 32, shuffle=True, seed=5, epoch=1))
    assert all(torch.equal(a["cand"], b["cand"]) for a, b in zip(batches, again))
    assert not all(torch.equal(a["cand"], b["cand"]) for a, b in zip(batches, other))


def test_batch_iterator_plain_order_and_caps(ds: ProcessedDataset) -> None:
    e = eval_samples(ds, "test", max_hist=4)
    batches = list(BatchIterator(e, 3))
    assert [b["user"].tolist() for b in batches] == [[0, 1, 2], [3]]
    assert torch.equal(batches[1]["cands"], torch.from_numpy(e["cands"][3:]))
    assert len(BatchIterator(e, 3, drop_last=True)) == 1
    assert len(list(BatchIterator(e, 1, max_batches=2))) == 2
    with pytest.raises(ValueError, match="length"):
        BatchIterator({"a": np.zeros(3), "b": np.zeros(4)}, 2)
