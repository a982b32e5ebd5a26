"""Item text: tokens, the vocabulary, each item's token matrix and the word2vec vectors.

Choices (each one documented here, because every text model depends on them):

- **Tokenizer** (:func:`tokenize`): Unicode NFKC normalisation (full-width and
  compatibility forms become ordinary letters and digits, composed accents),
  typographic apostrophes (``’``) read as ``'``, then lowercase (``str.lower``:
  ``Größe`` -> ``größe``, not case-folded to ``grösse``). A word is a run of
  letters and digits of ANY script, with the combining marks that belong to them
  (Devanagari vowel signs, Arabic harakat) and inner apostrophes (``don't``,
  ``men's``): ``Café naïve Größe`` -> ``café``, ``naïve``, ``größe``. Chinese
  characters (CJK ideographs, which are written without spaces) are one token
  each; kana and hangul runs are words. Everything else separates words:
  punctuation, symbols, emoji (not words), ``_``, HTML remnants. Tokens shorter
  than ``min_token_len`` are dropped (2 by default: ``a``, ``i``, ``s`` carry no
  aspect), except single CJK ideographs, which are words. No stemming, no
  stop-word list: the attention of the text encoder (Eq. 2) learns to ignore
  filler words, as ABAE's does. The classes come from the running Python's
  Unicode database (its version is recorded in ``dataset.json``); plain ASCII
  text gives the same tokens under any version.
- **Vocabulary** (:func:`build_vocab`): tokens of the *training* reviews with at
  least ``min_count`` occurrences, most frequent first (ties by the token), after
  ``<pad>`` (id 0) and ``<unk>`` (id 1). It equals word2vec's own vocabulary,
  since both use the same tokens and the same ``min_count``.
- **Item text** (:func:`item_token_matrix`): the ``max_len`` words that characterise
  the item best among the words of its training reviews (out-of-vocabulary tokens
  dropped, so ``<unk>`` never appears in ``text.npz``), each once, by sublinear
  TF-IDF over the items: ``(1 + ln tf) * ln(N / df)`` with tf the word's count in
  the item's reviews, df the number of items whose reviews use it and N the number
  of items with text; ties by vocabulary id, words in every item's text (idf 0)
  never. The text encoder (Eq. 2-3) is a bag of words with attention, so the order
  (best first) is not read as a sentence. Why not the reviews as written: an item
  has tens of reviews and 64 tokens hold a few words of each, which are the
  openings ("great", "love it") that every item shares; measured on the embedded
  shop, the words naming an item's colour, size, material, occasion or brand were
  then a few percent of its text. TF-IDF keeps the words that tell items apart.
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

import functools
import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
TOKENIZER = "nfkc-lower-unicode-words-v1"  # recorded in dataset.json; change it with the rules
# CJK Unified Ideographs (+ extensions A-H) and the compatibility ideographs
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f\U00030000-\U000323af"
_ASCII_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "\u2032": "'"})


@functools.cache
def _word_re() -> re.Pattern[str]:
    """One token: a CJK ideograph, or letters/digits (not ``_``, not ideographs) with their
    combining marks and inner apostrophes. Built once: the mark ranges come from
    :mod:`unicodedata` (``re`` has no ``\\p{M}``)."""
    marks, start, prev = [], None, None
    # combining marks live in planes 0, 1 and 14 only (2 and 3 hold ideographs, 4-13 nothing)
    for cp in itertools.chain(range(0x20000), range(0xE0000, 0xE1000)):
        if unicodedata.category(chr(cp)).startswith("M"):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            marks.append(f"{_esc(start)}-{_esc(prev)}" if prev != start else _esc(start))
            start = None
    mark = "".join(marks)
    letter = rf"[^\W_{_HAN}]"  # letters and digits of every script, minus _ and ideographs
    part = rf"{letter}(?:{letter}|[{mark}])*"
    return re.compile(rf"([{_HAN}])|({part}(?:'(?:{letter}|[{mark}])+)*)")


def _esc(cp: int | None) -> str:
    return f"\\U{cp:08x}"


def tokenize(text: str, min_token_len: int = 2) -> list[str]:
    """Words of ``text`` after NFKC and lowercasing (see the module docstring);
    tokens shorter than ``min_token_len`` are dropped, single CJK ideographs kept."""
    if text.isascii():  # the same rules on ASCII text (already NFKC), 4x faster
        words = _ASCII_WORD_RE.findall(text.lower())
        return words if min_token_len <= 1 else [w for w in words if len(w) >= min_token_len]
    text = unicodedata.normalize("NFKC", text.translate(_APOSTROPHES))
    out = []
    for han, word in _word_re().findall(text.lower()):
        if han:
            out.append(han)
        elif len(word) >= min_token_len:
            out.append(word)
    return out


def build_vocab(sentences: Iterable[Sequence[str]], min_count: int) -> list[str]:
    """``<pad>``, ``<unk>``, then tokens with count >= ``min_count``, most frequent first."""
    counts: Counter[str] = Counter()
    for s in sentences:
        counts.update(s)
    kept = [(w, c) for w, c in counts.items() if c >= min_count]
    kept.sort(key=lambda wc: (-wc[1], wc[0]))
    return [PAD_TOKEN, UNK_TOKEN] + [w for w, _ in kept]


def to_ids(tokens: Sequence[str], index: dict[str, int]) -> list[int]:
    """Vocabulary ids of the in-vocabulary tokens (OOV dropped)."""
    # ids of real tokens are >= 2, so filter(None, ...) drops exactly the OOV (None) lookups
    return list(filter(None, map(index.get, tokens)))


def item_token_matrix(
    review_item: np.ndarray, review_ids: Sequence[Sequence[int]], n_items: int, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's text: its ``max_len`` most characteristic words by sublinear TF-IDF
    (see the module docstring), best first, each word once.

    ``review_item`` int [R] gives the item of each review, ``review_ids`` its in-vocabulary
    token ids. Returns ``tokens`` int32 [I, max_len] (0 = pad) and ``lengths`` int32 [I].
    """
    tokens = np.zeros((n_items, max_len), np.int32)  # (I, L)
    lengths = np.zeros(n_items, np.int32)  # (I,)
    review_len = np.fromiter((len(r) for r in review_ids), np.int64, len(review_ids))  # (R,)
    if review_len.sum() == 0:
        return tokens, lengths
    flat = np.fromiter(itertools.chain.from_iterable(review_ids), np.int64, int(review_len.sum()))
    item_of = np.repeat(np.asarray(review_item, np.int64), review_len)  # (T,)
    n_words = int(flat.max()) + 1
    pair, tf = np.unique(item_of * n_words + flat, return_counts=True)  # (P,): (item, word)
    p_item, p_word = pair // n_words, pair % n_words
    df = np.bincount(p_word, minlength=n_words)  # items whose text uses each word
    n_docs = np.unique(p_item).size
    score = (1.0 + np.log(tf)) * np.log(n_docs / df[p_word])  # (P,)
    keep = score > 0
    p_item, p_word, score = p_item[keep], p_word[keep], score[keep]
    order = np.lexsort((p_word, -score, p_item))  # per item: best first, ties by word id
    p_item, p_word = p_item[order], p_word[order]
    first = np.r_[0, np.flatnonzero(np.diff(p_item)) + 1]  # start of each item's run
    run = np.diff(np.r_[first, p_item.size])
    rank = np.arange(p_item.size) - np.repeat(first, run)  # rank inside the item's text
    take = rank < max_len
    tokens[p_item[take], rank[take]] = p_word[take]
    lengths[:] = np.bincount(p_item[take], minlength=n_items)
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
        vector_size=dim,
        window=window,
        min_count=min_count,
        workers=workers,
        seed=seed,
        sg=sg,
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
