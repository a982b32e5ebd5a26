"""Item text: tokens, the vocabulary, each item's token matrix and the word2vec vectors.

Choices (each one documented here, because every text model depends on them):

- **Tokenizer** (:func:`tokenize`): lowercase, then words of ``[a-z0-9]`` with
  inner apostrophes (``don't``, ``men's``); everything else (punctuation,
  accents, HTML remnants) separates words. Tokens shorter than
  ``min_token_len`` are dropped (2 by default: ``a``, ``i``, ``s`` carry no
  aspect). No stemming, no stop-word list: the attention of the text encoder
  (Eq. 2) learns to ignore filler words, as ABAE's does.
- **Vocabulary** (:func:`build_vocab`): tokens of the *training* reviews with at
  least ``min_count`` occurrences, most frequent first (ties by the token), after
  ``<pad>`` (id 0) and ``<unk>`` (id 1). It equals word2vec's own vocabulary,
  since both use the same tokens and the same ``min_count``.
- **Item text** (:func:`item_token_matrix`): the item's training reviews in time
  order, out-of-vocabulary tokens dropped (so ``<unk>`` never appears in
  ``text.npz``), then interleaved *round-robin*: the first token of every
  review, then the second token of every review, and so on, cut at
  ``max_len``. An item with many reviews thus shows the opening words (the
  summary) of all of them instead of the whole of its first review. The text
  encoder (Eq. 2-3) is a bag of words with attention, so this order is not
  read as a sentence.
- **word2vec** (:func:`train_word2vec`): gensim CBOW (``sg=0``, gensim's and
  ABAE's default), negative sampling, seeded, one worker thread, so the
  vectors are reproducible. ABAE used dimension 200, window 5, min_count 10;
  the prepare defaults are smaller (64, 5, 5) for the laptop-sized embedded
  data, and real-data configs may set 200.
- **Vector table** (:func:`word_vector_table`): row i is the vector of vocab
  token i; ``<pad>`` and ``<unk>`` rows are zeros (``<unk>`` never occurs in the
  stored item text, and zeros keep it neutral for new text).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokenize(text: str, min_token_len: int = 2) -> list[str]:
    """Lowercase words of ``text`` (``[a-z0-9]`` with inner apostrophes), short ones dropped."""
    words = _WORD_RE.findall(text.lower())
    if min_token_len <= 1:
        return words
    return [w for w in words if len(w) >= min_token_len]


def build_vocab(sentences: Iterable[Sequence[str]], min_count: int) -> list[str]:
    """``<pad>``, ``<unk>``, then tokens with count >= ``min_count``, most frequent first."""
    counts: Counter[str] = Counter()
    for s in sentences:
        counts.update(s)
    kept = [(w, c) for w, c in counts.items() if c >= min_count]
    kept.sort(key=lambda wc: (-wc[1], wc[0]))
    return [PAD_TOKEN, UNK_TOKEN] + [w for w, _ in kept]


def to_ids(tokens: Sequence[str], index: dict[str, int], max_len: int) -> list[int]:
    """Vocabulary ids of the in-vocabulary tokens (OOV dropped), at most ``max_len``."""
    # ids of real tokens are >= 2, so filter(None, ...) drops exactly the OOV (None) lookups
    return list(itertools.islice(filter(None, map(index.get, tokens)), max_len))


def item_token_matrix(
    review_item: np.ndarray, review_ids: Sequence[Sequence[int]], n_items: int, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's text: its reviews' tokens interleaved round-robin, cut at ``max_len``.

    ``review_item`` int [R] gives the item of each review; reviews must be
    listed in time order within an item (ties already broken by the caller).
    Returns ``tokens`` int32 [I, max_len] (0 = pad) and ``lengths`` int32 [I].
    """
    tokens = np.zeros((n_items, max_len), np.int32)  # (I, L)
    lengths = np.zeros(n_items, np.int32)  # (I,)
    review_len = np.fromiter((len(r) for r in review_ids), np.int64, len(review_ids))  # (R,)
    if review_len.sum() == 0:
        return tokens, lengths
    flat = np.fromiter(itertools.chain.from_iterable(review_ids), np.int32, int(review_len.sum()))
    n_reviews = len(review_ids)
    review_of = np.repeat(np.arange(n_reviews, dtype=np.int64), review_len)  # (T,)
    starts = np.cumsum(review_len) - review_len
    pos = np.arange(flat.size, dtype=np.int64) - starts[review_of]  # (T,) position in its review
    item_of = np.asarray(review_item, np.int64)[review_of]  # (T,)
    # Round-robin: by item, then position inside the review, then review (time) order,
    # as one int64 key (unique per token, so any sort gives the same order).
    key = (item_of * (int(pos.max()) + 1) + pos) * n_reviews + review_of
    order = np.argsort(key)
    item_sorted = item_of[order]
    first = np.r_[0, np.flatnonzero(np.diff(item_sorted)) + 1]  # start of each item's run
    run = np.diff(np.r_[first, item_sorted.size])
    slot = np.arange(order.size) - np.repeat(first, run)  # rank inside the item's text
    keep = slot < max_len
    tokens[item_sorted[keep], slot[keep]] = flat[order[keep]]
    lengths[:] = np.bincount(item_sorted[keep], minlength=n_items)
    return tokens, lengths


def train_word2vec(
    sentences: Sequence[Sequence[str]],
    dim: int,
    window: int,
    min_count: int,
    epochs: int,
    seed: int,
    workers: int = 1,
    sg: int = 0,
) -> Any:
    """A seeded gensim Word2Vec (CBOW unless ``sg=1``) trained on ``sentences``.

    With ``workers=1`` the result is identical across runs (gensim seeds its
    initial vectors and its sampling from ``seed``; Python's hash seed is not used).
    """
    from gensim.models import Word2Vec

    model = Word2Vec(
        vector_size=dim, window=window, min_count=min_count, workers=workers, seed=seed, sg=sg,
        epochs=epochs,
    )
    model.build_vocab(sentences)
    model.train(sentences, total_examples=model.corpus_count, epochs=epochs)
    return model


def word_vector_table(model: Any, vocab: Sequence[str]) -> np.ndarray:
    """float32 [V, d] aligned with ``vocab``; the ``<pad>`` and ``<unk>`` rows are zeros."""
    wv = model.wv
    table = np.zeros((len(vocab), wv.vector_size), np.float32)  # (V, d)
    words = list(vocab[2:])
    missing = [w for w in words if w not in wv.key_to_index]
    if missing:
        raise ValueError(f"word2vec lacks {len(missing)} vocabulary tokens, e.g. {missing[:5]}")
    if words:
        table[2:] = wv.vectors[[wv.key_to_index[w] for w in words]]
    return table
