"""Deep Interest Network head over item representations (Eq. 18-21).

- Eq. 18: wh_k = MLP([h_k, h_i, h_k - h_i, h_k * h_i]) -> a scalar per history item;
  as in DIN, NO softmax; padded history positions get weight exactly zero.
- Eq. 19: u = sum_k wh_k h_k.
- Eq. 20: logit = MLP([u, h_i, u * h_i]) with PReLU activations.
- Eq. 21: binary cross-entropy on the logit (fp32).

The head scores C candidates per user at once (``h_cand`` (B, C, D)); the
history is broadcast, never copied C times. The attention's first layer is an
ordinary ``nn.Linear(4D, A)``, evaluated blockwise:
W [h_k; h_i; h_k - h_i; h_k * h_i] = (W1 + W3) h_k + (W2 - W3) h_i + W4 (h_k * h_i),
so the (B, C, H, 4D) concatenation is never built (and for few candidates per row, as in
training, the product term is taken candidate-first: measured 2.5x faster MDR training
steps on the CPU, `nox -s speed`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PReLU(nn.Module):
    """PReLU with one learned slope per feature of the LAST dimension (any leading dims)."""

    def __init__(self, width: int, init: float = 0.25) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((width,), init))

    def forward(self, x: Tensor) -> Tensor:
        # one fused kernel (torch.where built three (B, C, H, A) temporaries)
        return F.prelu(x.reshape(-1, x.shape[-1]), self.weight.to(x.dtype)).view(x.shape)


def _mlp(in_dim: int, hidden: tuple[int, ...], dropout: float = 0.0) -> tuple[nn.Sequential, int]:
    """Linear + PReLU blocks (+ dropout after each when ``dropout`` > 0, so that no
    dropout draws no random numbers); returns the stack and its output width."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), PReLU(h)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = h
    return nn.Sequential(*layers), in_dim


class DINAttention(nn.Module):
    """Activation unit of DIN (Eq. 18): (B,H,D) history x (B,C,D) candidates -> (B,C,H)."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (36,)) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("DIN attention needs at least one hidden layer (att_hidden)")
        self.dim = dim
        self.first = nn.Linear(4 * dim, hidden[0])
        self.act0 = PReLU(hidden[0])
        self.rest, width = _mlp(hidden[0], tuple(hidden[1:]))
        self.out = nn.Linear(width, 1)

    def first_layer(self, h_hist: Tensor, h_cand: Tensor) -> Tensor:
        """first([h_k, h_i, h_k - h_i, h_k * h_i]) for every (candidate, history) pair.

        ``h_hist`` (B, H, D), ``h_cand`` (B, C, D) -> (B, C, H, A).
        """
        B, H, D = h_hist.shape
        C = h_cand.shape[1]
        W = self.first.weight.to(h_hist.dtype)  # (A, 4D)
        W1, W2, W3, W4 = W.split(D, dim=1)  # each (A, D)
        A = W.shape[0]
        hist_term = h_hist @ (W1 + W3).T  # (B, H, A)
        cand_term = h_cand @ (W2 - W3).T  # (B, C, A)
        if C <= A:  # few candidates (training: one): multiply first, (B, C, H, D) is small
            prod_term = (h_cand.unsqueeze(2) * h_hist.unsqueeze(1)) @ W4.T  # (B, C, H, A)
        else:  # many candidates (ranking): never build (B, C, H, D); (B, H, A, D) instead
            G = h_hist.unsqueeze(2) * W4  # (B, H, A, D)
            prod_term = torch.bmm(G.reshape(B, H * A, D), h_cand.transpose(1, 2))  # (B,H*A,C)
            prod_term = prod_term.view(B, H, A, C).permute(0, 3, 1, 2)  # (B, C, H, A)
        return (
            prod_term
            + hist_term.unsqueeze(1)
            + cand_term.unsqueeze(2)
            + self.first.bias.to(h_hist.dtype)
        )

    def forward(self, h_hist: Tensor, hist_mask: Tensor, h_cand: Tensor) -> Tensor:
        """Weights wh (B, C, H); exactly zero where ``hist_mask`` (B, H) is False."""
        x = self.rest(self.act0(self.first_layer(h_hist, h_cand)))  # (B, C, H, A')
        w = self.out(x).squeeze(-1)  # (B, C, H)
        return w.masked_fill(~hist_mask.unsqueeze(1), 0.0)


class DINHead(nn.Module):
    """Attention pooling (Eq. 18-19) and the prediction MLP (Eq. 20) -> logits (B, C).

    ``user_dim`` > 0: the MLP also reads a user vector (B, user_dim) (the user-id embedding
    the CTR baselines read), broadcast over the candidates.
    """

    def __init__(
        self,
        dim: int,
        att_hidden: tuple[int, ...] = (36,),
        mlp_hidden: tuple[int, ...] = (80, 40),
        dropout: float = 0.0,
        user_dim: int = 0,
    ) -> None:
        super().__init__()
        self.attention = DINAttention(dim, att_hidden)
        self.user_dim = user_dim
        self.mlp, width = _mlp(3 * dim + user_dim, mlp_hidden, dropout)
        self.out = nn.Linear(width, 1)

    def interest(self, h_hist: Tensor, hist_mask: Tensor, h_cand: Tensor) -> Tensor:
        """u_A = sum_k wh_k h_k (Eq. 19), one per candidate: (B, C, D)."""
        w = self.attention(h_hist, hist_mask, h_cand)  # (B, C, H)
        return torch.bmm(w.to(h_hist.dtype), h_hist)  # (B, C, D)

    def forward(
        self, h_hist: Tensor, hist_mask: Tensor, h_cand: Tensor, e_user: Tensor | None = None
    ) -> Tensor:
        """``h_hist`` (B, H, D), ``hist_mask`` bool (B, H), ``h_cand`` (B, C, D), with
        ``user_dim``: ``e_user`` (B, user_dim) -> (B, C)."""
        u = self.interest(h_hist, hist_mask, h_cand)  # (B, C, D)
        parts = [u, h_cand, u * h_cand]  # Eq. 20: (B, C, 3D)
        if self.user_dim:
            if e_user is None:
                raise ValueError("this DIN head reads a user vector: pass e_user")
            parts.append(e_user.unsqueeze(1).expand(-1, h_cand.shape[1], -1))  # (B, C, U)
        return self.out(self.mlp(torch.cat(parts, dim=-1))).squeeze(-1)


def prediction_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. 21: mean binary cross-entropy with logits, in fp32."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


__all__ = ["DINAttention", "DINHead", "prediction_loss"]
