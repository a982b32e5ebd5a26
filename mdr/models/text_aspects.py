"""Text side of MDR: ABAE-style attention encoder, attribute extractors, aspect decoder.

- Eq. 2: frozen word vectors w; a_j = w_j^T M mean(w); b = softmax(a) over the
  REAL tokens only (padding masked); t = sum_k b_k w_k.
- Eq. 3: v_j = AE_j(t), one small MLP per text slot, plus one for the text
  black-box part; z = [v_1, ..., v_q, z_blackbox].
- Eq. 14: t' = sum_j softmax(p)_j d_j with p = fc(r_text). Eq. 14 writes
  p_j = fc_j(r_j) per slot; summing per-slot linear maps is one linear map on
  the concatenation, sum_j W_j r_j = W [r_1; ...; r_q], so a single fc over the
  text-related part of r is the same family of functions. D (n_aspects, d) is
  initialised from k-means centroids of the word vectors, rows L2-normalised.
- Eq. 15 (as corrected in DESIGN.md, following ABAE):
  hinge = sum_{j=1..g} max(0, 1 - t'.t + t'.n_j) on L2-normalised vectors, with t
  the encoded input sentence (Eq. 2) and n_j the mean word vector of a random
  other item's text; plus the orthogonality term ||D_n D_n^T - I||_F on the
  row-normalised D.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import Tensor, nn

PAD = 0  # token id of padding (vocab.txt line 0)


def kmeans_aspects(word_vectors: Tensor, n_aspects: int, seed: int = 0, n_init: int = 3) -> Tensor:
    """Aspect matrix D (n_aspects, d): k-means centroids of the word vectors, rows
    L2-normalised (ABAE's initialisation). All-zero rows (padding) are left out."""
    wv = word_vectors.detach().cpu().double().numpy()
    wv = wv[np.linalg.norm(wv, axis=1) > 0]
    n_distinct = len(np.unique(wv, axis=0))
    if n_distinct < n_aspects:
        raise ValueError(
            f"k-means initialisation of D needs at least n_aspects={n_aspects} distinct "
            f"non-zero word vectors, got {n_distinct}; lower model.n_aspects"
        )
    km = KMeans(n_clusters=n_aspects, n_init=n_init, random_state=seed).fit(wv)
    centroids = torch.as_tensor(km.cluster_centers_, dtype=torch.float32)
    return F.normalize(centroids, dim=1)


def mean_word_vectors(tokens: Tensor, word_vectors: Tensor, chunk: int = 4096) -> Tensor:
    """Mean word vector of each row of ``tokens`` (n, L) over its real tokens: (n, d).

    Rows with no real token get the zero vector.
    """
    out = []
    for start in range(0, tokens.shape[0], chunk):
        tok = tokens[start : start + chunk]
        mask = (tok != PAD).unsqueeze(-1).float()  # (n, L, 1)
        total = (word_vectors[tok] * mask).sum(dim=1)  # (n, d)
        out.append(total / mask.sum(dim=1).clamp_min(1.0))
    if not out:
        return word_vectors.new_zeros((0, word_vectors.shape[1]))
    return torch.cat(out)


def aspect_hinge_loss(t_rec: Tensor, t: Tensor, negatives: Tensor) -> Tensor:
    """Eq. 15, first term: sum_j max(0, 1 - t'.t + t'.n_j) on L2-normalised vectors.

    ``t_rec`` t' (n, d), ``t`` (n, d), ``negatives`` n_j (n, g, d) -> (n,), fp32.
    """
    t_rec = F.normalize(t_rec.float(), dim=-1)
    t = F.normalize(t.float(), dim=-1)
    negatives = F.normalize(negatives.float(), dim=-1)
    pos = (t_rec * t).sum(-1, keepdim=True)  # (n, 1)
    neg = torch.einsum("nd,ngd->ng", t_rec, negatives)  # (n, g)
    return F.relu(1.0 - pos + neg).sum(dim=-1)


def orthogonality_loss(D: Tensor) -> Tensor:
    """Eq. 15, second term: ||D_n D_n^T - I||_F with D_n the row-normalised D."""
    Dn = F.normalize(D.float(), dim=1)
    eye = torch.eye(Dn.shape[0], device=Dn.device, dtype=Dn.dtype)
    return torch.linalg.matrix_norm(Dn @ Dn.T - eye)


class AttentionEncoder(nn.Module):
    """t = sum_k b_k w_k with b = softmax_k(w_k^T M mean(w)) over real tokens (Eq. 2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.M = nn.Parameter(torch.empty(dim, dim))
        nn.init.xavier_uniform_(self.M)

    def attention(self, w: Tensor, mask: Tensor) -> Tensor:
        """Weights b (n, L): zero on padding; all zeros for a text with no real token."""
        maskf = mask.unsqueeze(-1).to(w.dtype)  # (n, L, 1)
        mean = (w * maskf).sum(1) / maskf.sum(1).clamp_min(1.0)  # (n, d)
        a = torch.einsum("nld,de,ne->nl", w, self.M.to(w.dtype), mean).float()  # (n, L)
        a = a.masked_fill(~mask, float("-inf"))
        b = torch.softmax(a, dim=-1)
        return torch.where(mask.any(dim=-1, keepdim=True), b, torch.zeros_like(b))

    def forward(self, w: Tensor, mask: Tensor) -> Tensor:
        """``w`` (n, L, d) word vectors, ``mask`` bool (n, L) real tokens -> t (n, d)."""
        b = self.attention(w, mask)  # (n, L)
        return torch.einsum("nl,nld->nd", b.to(w.dtype), w)


class AttributeExtractor(nn.Module):
    """v_j = AE_j(t) (Eq. 3): a small MLP from the sentence vector to one slot."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.net(t)


class TextAspectModel(nn.Module):
    """Frozen word vectors -> t (Eq. 2) -> z (Eq. 3); r_text -> t' (Eq. 14); losses (Eq. 15).

    ``out_dims`` are the widths of z's parts in order (text slots, then the text
    black-box part; zero widths are skipped). ``rec_in_dim`` is the width of the
    text-related part of r that the aspect decoder reads.
    """

    def __init__(
        self,
        word_vectors: Tensor,
        out_dims: list[int],
        hidden: int,
        n_aspects: int,
        rec_in_dim: int,
        seed: int = 0,
    ) -> None:
        super().__init__()
        wv = word_vectors.detach().float()
        self.register_buffer("word_vectors", wv, persistent=False)  # (V, d), frozen
        d = wv.shape[1]
        self.encoder = AttentionEncoder(d)
        self.extractors = nn.ModuleList(
            [AttributeExtractor(d, hidden, k) for k in out_dims if k > 0]
        )
        self.D = nn.Parameter(kmeans_aspects(wv, n_aspects, seed))  # (K, d), Eq. 14
        self.p_fc = nn.Linear(rec_in_dim, n_aspects)  # p = fc(r_text), Eq. 14

    def encode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens`` (n, L) -> sentence vector t (n, d) and text factors z (n, q)."""
        mask = tokens != PAD  # (n, L)
        w = self.word_vectors[tokens]  # (n, L, d)
        t = self.encoder(w, mask)  # (n, d)
        z = torch.cat([ae(t) for ae in self.extractors], dim=-1)  # (n, q)
        return t, z

    def reconstruct(self, r_text: Tensor) -> Tensor:
        """t' = sum_j softmax(p)_j d_j, p = fc(r_text) (Eq. 14): (n, d)."""
        p = torch.softmax(self.p_fc(r_text).float(), dim=-1)  # (n, K)
        return p @ F.normalize(self.D.float(), dim=1)

    def orthogonality(self) -> Tensor:
        return orthogonality_loss(self.D)


__all__ = [
    "AttentionEncoder",
    "AttributeExtractor",
    "TextAspectModel",
    "aspect_hinge_loss",
    "kmeans_aspects",
    "mean_word_vectors",
    "orthogonality_loss",
]
