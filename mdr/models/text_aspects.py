"""Text side of MDR: ABAE-style attention encoder, attribute extractors, aspect decoder.

- Eq. 2: frozen word vectors w; a_j = w_j^T M mean(w); b = softmax(a) over the
  REAL tokens only (padding masked); t = sum_k b_k w_k.
- Eq. 3: v_j = AE_j(t), one small MLP per text slot, plus one for the text
  black-box part; z = [v_1, ..., v_q, z_blackbox].
- Eq. 14 as printed (``decoder="per_slot"``): one text attribute j per named text slot,
  with its own fc_j from that slot's columns of r alone to a scalar p_j, and its own row
  d_j of the aspect matrix D; t' = sum_j softmax(p)_j d_j (the softmax over j as in ABAE,
  so t' is a convex combination of the aspect rows). The remaining rows of D (the
  config's ``n_aspects`` minus the named text slots: Figure 5 shows 15 in all) are the
  text attributes that "could hardly be explained": their p_j come from r_blackbox,
  which Algorithm 1 fuses in a black-box manner. ``decoder="dense"`` (an ablation) maps
  every text-related column of r to every p_j through one fc, so nothing ties an aspect
  to a slot. D (n_aspects, d) is initialised from k-means centroids of the vectors of
  the words the items' texts use, rows L2-normalised (ABAE's initialisation).
- Eq. 15 (as corrected in docs/design.md, following ABAE):
  hinge = 1/g sum_{j=1..g} max(0, 1 - t'.t + t'.n_j) on L2-normalised vectors, with t
  the encoded input sentence (Eq. 2) and n_j the mean word vector of a random other
  item's text; plus the orthogonality term on the row-normalised D. Scales: the hinge is
  Eq. 15's sum over the g negatives divided by g, and the orthogonality term
  ||D_n D_n^T - I||_F divided by K (the root-mean-square entry), so that neither
  grows with g or with the number of aspects K.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import Tensor, nn

PAD = 0  # token id of padding (vocab.txt line 0)


def kmeans_aspects(
    word_vectors: Tensor,
    n_aspects: int,
    seed: int = 0,
    n_init: int = 3,
    words: Tensor | None = None,
) -> Tensor:
    """Aspect matrix D (n_aspects, d): k-means centroids of the word vectors (of the token
    ids ``words`` only, when given), rows L2-normalised (ABAE's initialisation). All-zero
    rows (padding) are left out."""
    wv = word_vectors.detach().cpu().double().numpy()
    if words is not None:
        wv = wv[np.unique(words.detach().cpu().numpy())]
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
    """Eq. 15, first term: 1/g sum_j max(0, 1 - t'.t + t'.n_j) on L2-normalised vectors.

    ``t_rec`` t' (n, d), ``t`` (n, d), ``negatives`` n_j (n, g, d) -> (n,), fp32.
    """
    t_rec = F.normalize(t_rec.float(), dim=-1)
    t = F.normalize(t.float(), dim=-1)
    negatives = F.normalize(negatives.float(), dim=-1)
    pos = (t_rec * t).sum(-1, keepdim=True)  # (n, 1)
    neg = torch.einsum("nd,ngd->ng", t_rec, negatives)  # (n, g)
    return F.relu(1.0 - pos + neg).mean(dim=-1)


def orthogonality_loss(D: Tensor) -> Tensor:
    """Eq. 15, second term: ||D_n D_n^T - I||_F / K with D_n the row-normalised D (K, d)."""
    Dn = F.normalize(D.float(), dim=1)
    eye = torch.eye(Dn.shape[0], device=Dn.device, dtype=Dn.dtype)
    return torch.linalg.matrix_norm(Dn @ Dn.T - eye) / Dn.shape[0]


class AttentionEncoder(nn.Module):
    """t = sum_k b_k w_k with b = softmax_k(w_k^T M mean(w)) over real tokens (Eq. 2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.M = nn.Parameter(torch.empty(dim, dim))
        nn.init.xavier_uniform_(self.M)

    def attention(self, w: Tensor, mask: Tensor) -> Tensor:
        """Weights b (n, L): zero on padding; all zeros for a text with no real token."""
        maskf = mask.to(w.dtype)  # (n, L)
        # the masked sum as one batched product (no (n, L, d) temporary)
        mean = torch.bmm(maskf.unsqueeze(1), w).squeeze(1) / maskf.sum(1, keepdim=True).clamp_min(
            1.0
        )  # (n, d)
        # a_j = w_j^T (M mean): M mean first, (n, d), then one dot per token (n, L); the
        # other order builds w M, (n, L, d) x d multiply-adds more
        m_mean = mean @ self.M.to(w.dtype).T  # (n, d)
        a = torch.bmm(w, m_mean.unsqueeze(-1)).squeeze(-1).float()  # (n, L)
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
    black-box part; zero widths are skipped). ``slot_columns`` maps each named text
    slot, then ``"blackbox"``, to its columns of r_text (the text-related part of r the
    aspect decoder reads); ``decoder`` is ``"per_slot"`` (Eq. 14 as printed) or
    ``"dense"`` (see the module docstring). ``words``: the token ids the items' texts
    use (D's k-means initialisation).
    """

    def __init__(
        self,
        word_vectors: Tensor,
        out_dims: list[int],
        hidden: int,
        n_aspects: int,
        slot_columns: dict[str, list[int]],
        decoder: str = "per_slot",
        seed: int = 0,
        words: Tensor | None = None,
    ) -> None:
        super().__init__()
        wv = word_vectors.detach().float()
        self.register_buffer("word_vectors", wv, persistent=False)  # (V, d), frozen
        d = wv.shape[1]
        self.encoder = AttentionEncoder(d)
        self.extractors = nn.ModuleList(
            [AttributeExtractor(d, hidden, k) for k in out_dims if k > 0]
        )
        self.decoder = decoder
        self.aspect_slots = _aspect_rows(slot_columns, n_aspects, decoder)
        self.D = nn.Parameter(kmeans_aspects(wv, n_aspects, seed, words=words))  # (K, d), Eq. 14
        if decoder == "dense":
            width = sum(len(c) for c in slot_columns.values())
            self.p_fc = nn.Linear(width, n_aspects)  # p = fc(r_text): the dense ablation
        else:  # fc_j(r_j): one scalar per named slot, the black box's rows from r_blackbox
            self.fc = nn.ModuleDict(
                {
                    name: nn.Linear(len(cols), self.aspect_slots.count(name))
                    for name, cols in slot_columns.items()
                    if name in self.aspect_slots
                }
            )
        self._columns = {
            name: torch.tensor(cols, dtype=torch.long) for name, cols in slot_columns.items()
        }
        for name, cols in self._columns.items():
            self.register_buffer(f"cols_{name}", cols, persistent=False)

    def encode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens`` (n, L) -> sentence vector t (n, d) and text factors z (n, q)."""
        mask = tokens != PAD  # (n, L)
        w = self.word_vectors[tokens]  # (n, L, d)
        t = self.encoder(w, mask)  # (n, d)
        z = torch.cat([ae(t) for ae in self.extractors], dim=-1)  # Eq. 3: (n, q)
        return t, z

    def aspect_logits(self, r_text: Tensor) -> Tensor:
        """p (n, K) before the softmax: p_j = fc_j(r_j) (Eq. 14), rows in ``aspect_slots``
        order."""
        if self.decoder == "dense":
            return self.p_fc(r_text).float()
        parts = [
            self.fc[name](r_text[:, getattr(self, f"cols_{name}")]) for name in self.fc
        ]  # in slot order, the black box last
        return torch.cat(parts, dim=-1).float()  # (n, K)

    def reconstruct(self, r_text: Tensor) -> Tensor:
        """t' = sum_j softmax(p)_j d_j (Eq. 14): (n, d)."""
        p = torch.softmax(self.aspect_logits(r_text), dim=-1)  # (n, K)
        return p @ F.normalize(self.D.float(), dim=1)

    def orthogonality(self) -> Tensor:
        return orthogonality_loss(self.D)


def _aspect_rows(slot_columns: dict[str, list[int]], n_aspects: int, decoder: str) -> list[str]:
    """The slot each row of D belongs to: one per named text slot (in order), the rest to
    the black box; for the dense decoder every row reads every slot ("any")."""
    if decoder not in ("per_slot", "dense"):
        raise ValueError(f"model.aspect_decoder {decoder!r}: use 'per_slot' or 'dense'")
    if decoder == "dense":
        return ["any"] * n_aspects
    named = [n for n, c in slot_columns.items() if n != "blackbox" and c]
    extra = n_aspects - len(named)
    has_bb = bool(slot_columns.get("blackbox"))
    if extra < 0 or (extra > 0 and not has_bb) or (extra == 0 and not named):
        raise ValueError(
            f"model.n_aspects = {n_aspects}: Eq. 14 needs one aspect per named text slot "
            f"({len(named)}: {named}) and the rest for the text black box "
            f"({'present' if has_bb else 'absent: text_blackbox_dim 0'})"
        )
    return named + ["blackbox"] * extra


__all__ = [
    "AttentionEncoder",
    "AttributeExtractor",
    "TextAspectModel",
    "aspect_hinge_loss",
    "kmeans_aspects",
    "mean_word_vectors",
    "orthogonality_loss",
]
