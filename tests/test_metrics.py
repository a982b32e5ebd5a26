"""Known-answer tests for mdr.metrics (hand-computed arrays, RecBole-style)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mdr import metrics as M

# --------------------------------------------------------------------------- AUC


def test_auc_hand_computed():
    # pairs (pos, neg): (.9,.1)=1 (.9,.5)=1 (.4,.1)=1 (.4,.5)=0 -> 3/4
    assert M.auc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.5]) == pytest.approx(0.75)


def test_auc_ties_count_half():
    assert M.auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    # pos .3 vs neg .5 -> 0; pos .5 vs neg .5 -> 1/2; total 0.5 / 2 pairs
    assert M.auc([1, 1, 0], [0.3, 0.5, 0.5]) == pytest.approx(0.25)
    assert M.auc([1, 0, 0, 1], [1.0, 1.0, 1.0, 1.0]) == pytest.approx(0.5)


def test_auc_perfect_and_inverted():
    assert M.auc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert M.auc([1, 1, 0, 0], [1, 2, 3, 4]) == 0.0


def test_auc_single_class_is_nan():
    assert math.isnan(M.auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(M.auc([], []))


def test_auc_matches_sklearn_with_ties():
    r = np.random.default_rng(0)
    y = r.integers(0, 2, 500)
    s = r.integers(0, 20, 500).astype(float)  # many ties
    assert M.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_rejects_bad_input():
    with pytest.raises(ValueError, match="0 or 1"):
        M.auc([2, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        M.auc([1, 0], [np.nan, 0.2])
    with pytest.raises(ValueError, match="shape"):
        M.auc([1, 0, 1], [0.1, 0.2])


# --------------------------------------------------------------------------- GAUC


def test_gauc_hand_computed_skips_single_class_users():
    users = ["a", "b", "a", "c", "c", "b", "a", "d"]
    labels = [1, 1, 0, 1, 1, 0, 0, 0]
    scores = [0.8, 0.2, 0.9, 0.5, 0.1, 0.1, 0.1, 0.3]
    # a: pos .8 vs negs .9, .1 -> AUC 1/2, 3 impressions
    # b: pos .2 vs neg .1     -> AUC 1,   2 impressions
    # c: only positives, d: only a negative -> skipped
    assert M.gauc(users, labels, scores) == pytest.approx((3 * 0.5 + 2 * 1.0) / 5)


def test_gauc_ties_within_user_and_not_across_users():
    # user 0: pos .5 tied with neg .5 -> 1/2; user 1: pos .5 vs neg .4 -> 1.
    # the equal score .5 in user 1 must not tie with user 0's scores.
    users = [0, 0, 1, 1]
    labels = [1, 0, 1, 0]
    scores = [0.5, 0.5, 0.5, 0.4]
    assert M.gauc(users, labels, scores) == pytest.approx(0.75)


def test_gauc_matches_loop_over_users():
    r = np.random.default_rng(1)
    n = 2000
    users = r.integers(0, 60, n)
    labels = r.integers(0, 2, n)
    scores = r.integers(0, 10, n).astype(float)
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if labels[m].min() == labels[m].max():
            continue
        num += m.sum() * roc_auc_score(labels[m], scores[m])
        den += m.sum()
    assert M.gauc(users, labels, scores) == pytest.approx(num / den, abs=1e-12)


def test_gauc_no_valid_user_is_nan():
    assert math.isnan(M.gauc([0, 1], [1, 0], [0.3, 0.2]))


# --------------------------------------------------------------------------- lists

LISTS = np.array(
    [
        [0.5, 0.1, 0.2],  # positive first -> rank 0
        [0.3, 0.4, 0.1],  # one negative above -> rank 1
        [0.1, 0.5, 0.6],  # rank 2
        [0.2, 0.2, 0.1],  # tie with a negative ranks below it -> rank 1
    ]
)


def test_rank_of_positive_pessimistic_ties():
    np.testing.assert_array_equal(M.rank_of_positive(LISTS), [0, 1, 2, 1])


def test_ndcg_and_hit_hand_computed():
    inv = 1.0 / math.log2(3)
    assert M.ndcg_at_k(LISTS, 2) == pytest.approx((1 + inv + 0 + inv) / 4)
    assert M.ndcg_at_k(LISTS, 3) == pytest.approx((1 + inv + 0.5 + inv) / 4)
    assert M.ndcg_at_k(LISTS, 1) == pytest.approx(0.25)
    assert M.hit_at_k(LISTS, 1) == pytest.approx(0.25)
    assert M.hit_at_k(LISTS, 2) == pytest.approx(0.75)
    assert M.hit_at_k(LISTS, 3) == pytest.approx(1.0)


def test_constant_scorer_gets_no_credit():
    s = np.zeros((7, 101))
    out = M.sampled_list_metrics(s, k=10)
    assert out["ndcg@10"] == 0.0
    assert out["hr@10"] == 0.0
    assert out["gauc"] == pytest.approx(0.5)
    assert out["auc"] == pytest.approx(0.5)


def test_sampled_list_metrics_hand_computed():
    out = M.sampled_list_metrics(LISTS, k=2)
    assert set(out) == {"gauc", "auc", "ndcg@2", "hr@2"}
    # per-row AUC with half ties: 1, 1/2, 0, 3/4; equal weights (3 impressions each)
    assert out["gauc"] == pytest.approx((1 + 0.5 + 0 + 0.75) / 4)
    y = np.zeros_like(LISTS)
    y[:, 0] = 1
    assert out["auc"] == pytest.approx(roc_auc_score(y.ravel(), LISTS.ravel()))
    assert out["hr@2"] == pytest.approx(0.75)


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be"):
        M.ndcg_at_k(LISTS, 0)


# --------------------------------------------------------------------------- full ranking


def test_full_ranks_exclusion_and_ties():
    scores = np.array(
        [
            [0.0, 0.9, 0.5, 0.7, 0.5],  # positive 2 (.5): .9 and .7 above, .5 tie above
            [0.0, 0.9, 0.5, 0.7, 0.1],  # positive 4; item 1 excluded (history)
        ]
    )
    exclude = np.zeros_like(scores, dtype=bool)
    exclude[:, 0] = True  # padding item
    exclude[1, 1] = True
    np.testing.assert_array_equal(M.full_ranks(scores, [2, 4], exclude), [3, 2])
    # without exclusion item 0 (score 0.0) still ranks below both positives
    np.testing.assert_array_equal(M.full_ranks(scores, [2, 4]), [3, 3])


def test_full_rank_metrics_hand_computed():
    out = M.full_rank_metrics(np.array([0, 3, 9, 10]), k=10)
    ndcg = (1 + 1 / math.log2(5) + 1 / math.log2(11) + 0) / 4
    assert out["ndcg@10"] == pytest.approx(ndcg)
    assert out["hr@10"] == pytest.approx(0.75)
    with pytest.raises(ValueError):
        M.full_rank_metrics(np.array([-1, 0]))


def test_full_ranks_agree_with_lists():
    r = np.random.default_rng(2)
    s = r.integers(0, 5, (20, 8)).astype(float)
    np.testing.assert_array_equal(M.full_ranks(s, np.zeros(20, dtype=int)), M.rank_of_positive(s))


def test_list_gauc_equals_general_gauc():
    r = np.random.default_rng(3)
    s = r.integers(0, 6, (30, 11)).astype(float)
    y = np.zeros_like(s)
    y[:, 0] = 1
    users = np.repeat(np.arange(30), 11)
    expected = M.gauc(users, y.ravel(), s.ravel())
    assert M.sampled_list_metrics(s)["gauc"] == pytest.approx(expected, abs=1e-12)
