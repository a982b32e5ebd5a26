"""Figure 5: what each text aspect means (its nearest words) and which slot it is fused into.

Aspect words
------------
The text decoder reconstructs t' = sum_j softmax(p)_j d_j (Eq. 14) from the rows
d_j of the aspect matrix D (K, d), which live in the word-vector space. As in
ABAE (and the paper's Fig. 5), an aspect is read through the words whose vectors
are closest to d_j in cosine: :func:`aspect_words`. The padding and unknown
tokens (vocab ids 0 and 1, zero vectors) are never returned.

The slot of an aspect
---------------------
Eq. 14 as printed (the default, ``model.aspect_decoder: per_slot``): p_j = fc_j(r_j), so
aspect j belongs to its slot by construction (the named text slots own one row each,
the text black box the rest): :func:`model_aspect_slots` reads it off the model, with
shares 1 for that slot. The dense ablation maps ONE linear layer over all text-related
columns of r to every p_j, p = W r_text + b, W (K, T), so every aspect can draw on every
slot and "the slot an aspect is fused into" must be measured
(:func:`aspect_slot_shares`):

- softmax is unchanged when the same number is added to every p_j, so we read
  the CENTRED logits p~_j = p_j - mean_k p_k, whose weights are
  W~_j = W_j - mean_k W_k;
- the contribution of slot S to aspect j on item i is
  c_jS(i) = W~_j[cols_S] . r_i[cols_S] (exact, since p is linear in r);
- the share of slot S in aspect j is Var_i c_jS / sum_S' Var_i c_jS', the
  variance over the items (those with text) of that slot's contribution;
- the slot of aspect j is the slot with the largest share: the slot whose
  columns of r move aspect j's weight the most across the catalogue.

The black-box part r_blackbox counts as a slot named ``"blackbox"``.

Purity
------
Where each word's ground-truth group is known (the synthetic shop), an
aspect's group is the most frequent group among its top words and its purity
the fraction of its top words in that group (:func:`group_purity`); a word of
no group counts against the purity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
from torch import Tensor

from mdr.models.capabilities import TextAspects, model_capabilities

SPECIAL_TOKENS = frozenset({"<pad>", "<unk>"})

ArrayLike = Tensor | np.ndarray


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit L2 norm, and the mask of rows with a non-zero norm."""
    norm = np.linalg.norm(x, axis=1)  # (n,)
    ok = norm > 0
    out = np.zeros_like(x)
    out[ok] = x[ok] / norm[ok, None]
    return out, ok


def aspect_similarities(D: ArrayLike, word_vectors: ArrayLike) -> np.ndarray:
    """Cosine between every aspect d_j (rows of D, (K, d)) and every word vector ((V, d)):
    (K, V). Zero-norm word vectors (padding, unknown) get -inf."""
    Dn, d_ok = _unit_rows(_as_numpy(D))  # (K, d)
    Wn, w_ok = _unit_rows(_as_numpy(word_vectors))  # (V, d)
    if Dn.shape[1] != Wn.shape[1]:
        raise ValueError(f"D has width {Dn.shape[1]} but the word vectors have {Wn.shape[1]}")
    if not d_ok.all():
        raise ValueError(f"aspect rows {np.flatnonzero(~d_ok).tolist()} of D are all zeros")
    sims = Dn @ Wn.T  # (K, V)
    sims[:, ~w_ok] = -np.inf
    return sims


def aspect_words(
    D: ArrayLike, word_vectors: ArrayLike, vocab: Sequence[str], k: int = 10
) -> list[list[tuple[str, float]]]:
    """The ``k`` nearest words of each aspect by cosine: one list of (word, cosine) per row
    of ``D`` (K, d), most similar first (ties broken by vocabulary order).

    ``word_vectors`` (V, d) is aligned with ``vocab`` (V,); the special tokens
    ``<pad>``/``<unk>`` and all-zero vectors are skipped.
    """
    if len(vocab) != _as_numpy(word_vectors).shape[0]:
        raise ValueError(
            f"vocab has {len(vocab)} tokens but there are "
            f"{_as_numpy(word_vectors).shape[0]} word vectors"
        )
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    sims = aspect_similarities(D, word_vectors)  # (K, V)
    special = np.array([w in SPECIAL_TOKENS for w in vocab], dtype=bool)
    sims[:, special] = -np.inf
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")  # (V,), ties keep vocabulary order
        top = [int(i) for i in order[:k] if np.isfinite(row[i])]
        out.append([(vocab[i], float(row[i])) for i in top])
    return out


def _slot_contributions(
    W: np.ndarray, r: np.ndarray, columns: dict[str, Sequence[int]]
) -> dict[str, np.ndarray]:
    """c_jS(i) = W~_j[cols_S] . r_i[cols_S] for every slot S: name -> (n, K)."""
    Wc = W - W.mean(axis=0, keepdims=True)  # (K, T), centred over aspects
    return {name: r[:, list(cols)] @ Wc[:, list(cols)].T for name, cols in columns.items()}


def aspect_slot_shares(
    W: ArrayLike, r_text: ArrayLike, columns: dict[str, Sequence[int]]
) -> tuple[list[str], np.ndarray]:
    """Share of each slot in the variance of each aspect's centred logit (module docstring).

    ``W`` (K, T): the weights of p = W r_text + b; ``r_text`` (n, T): the text-related
    part of r for n items; ``columns``: slot name -> its columns of r_text (empty
    slots are dropped). Returns the slot names and shares (K, S); each row sums to 1
    (a row of zeros when no slot moves that aspect at all).
    """
    Wn, rn = _as_numpy(W), _as_numpy(r_text)
    if Wn.ndim != 2 or rn.ndim != 2 or Wn.shape[1] != rn.shape[1]:
        raise ValueError(f"W {Wn.shape} and r_text {rn.shape} must be (K, T) and (n, T)")
    cols = {n: c for n, c in columns.items() if len(c) > 0}
    for name, c in cols.items():
        if min(c) < 0 or max(c) >= Wn.shape[1]:
            raise ValueError(f"slot {name!r}: columns {list(c)} outside 0..{Wn.shape[1] - 1}")
    contrib = _slot_contributions(Wn, rn, cols)
    var = np.stack([contrib[n].var(axis=0) for n in cols], axis=1)  # (K, S)
    total = var.sum(axis=1, keepdims=True)
    shares = np.divide(var, total, out=np.zeros_like(var), where=total > 0)
    return list(cols), shares


def model_aspect_slots(model: object) -> tuple[list[str], np.ndarray]:
    """Slot names and shares (K, S) for a trained model with text aspects
    (:class:`mdr.models.capabilities.TextAspects`: MDR and its ablations with a text side)."""
    if not model_capabilities(model).text_aspects:
        raise ValueError("the model has no text side (model.use_text is false): no aspects")
    text = cast(TextAspects, model)  # model_capabilities checked the declaration
    columns = text.text_columns()
    names = [n for n, c in columns.items() if c]
    if text.aspect_decoder == "per_slot":  # Eq. 14: aspect j is its slot's by construction
        owners = text.aspect_slots
        shares = np.zeros((len(owners), len(names)))
        for j, slot in enumerate(owners):
            shares[j, names.index(slot)] = 1.0
        return names, shares
    r_text = text.text_representations()
    return aspect_slot_shares(text.aspect_weights(), r_text, {n: columns[n] for n in names})


def group_purity(
    words: Sequence[str], group_of: Mapping[str, str], order: Sequence[str] = ()
) -> tuple[str | None, float, dict[str, int]]:
    """The most frequent group among ``words``, its purity (count / len(words)) and the count
    of every group. Words missing from ``group_of`` belong to no group; ties go to the group
    that comes first in ``order`` (then alphabetically). ``(None, 0.0, {})`` when no word has
    a group."""
    counts = Counter(group_of[w] for w in words if w in group_of)
    if not counts:
        return None, 0.0, {}
    rank = {g: i for i, g in enumerate(order)}
    best = min(counts, key=lambda g: (-counts[g], rank.get(g, len(rank)), g))
    return best, counts[best] / len(words), dict(counts.most_common())


__all__ = [
    "SPECIAL_TOKENS",
    "aspect_similarities",
    "aspect_slot_shares",
    "aspect_words",
    "group_purity",
    "model_aspect_slots",
]
