"""The one small interface between models and the trainer.

Models take tensors, not files: the trainer turns a prepared dataset into an
:class:`ItemFeatures` once, and a model keeps what it needs (as non-persistent
buffers, so checkpoints hold only learned weights).

A training/evaluation batch is a dict of tensors:

- ``user``      long [B]
- ``hist``      long [B, H]  item ids of the user's most recent history (0 where padded)
- ``hist_mask`` bool [B, H]  True for real history positions
- ``cand``      long [B]     candidate item id
- ``label``     float [B]    1 for the observed next item, 0 for a sampled negative

What the explanations and diagnostics need beyond :class:`RecModel` (codes with named
slots, an image decoder, DIN attention, text aspects) is declared in
:mod:`mdr.models.capabilities`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class ItemFeatures:
    """Everything a content model may know about the items (all CPU tensors)."""

    n_items: int
    n_users: int
    images: Tensor | None = None  # uint8 [I, S, S, 3]
    image_mask: Tensor | None = None  # bool [I]
    tokens: Tensor | None = None  # long [I, L], 0 = pad
    lengths: Tensor | None = None  # long [I]
    word_vectors: Tensor | None = None  # float [V, d], frozen word2vec
    labels: dict[str, Tensor] = field(default_factory=dict)  # name -> long [I], -1 unlabelled
    label_classes: dict[str, int] = field(default_factory=dict)  # name -> number of classes
    category: Tensor | None = None  # long [I]
    n_categories: int = 0


@runtime_checkable
class RecModel(Protocol):
    """What the trainer needs of a model (RecBole-style)."""

    def calculate_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": total}`` plus one detached scalar per term of the objective."""
        ...

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits [B] for the (history, candidate) pairs of a batch."""
        ...

    def encode_items(self, items: Tensor) -> Tensor:
        """Deterministic item representations [n, D] (posterior means), for caching."""
        ...

    def score(
        self,
        reps: Tensor,
        hist: Tensor,
        hist_mask: Tensor,
        cands: Tensor,
        user: Tensor | None = None,
    ) -> Tensor:
        """Logits [B, C] of candidates ``cands`` [B, C] given ``hist`` [B, H], using
        precomputed item representations ``reps`` [I, D] (from :meth:`encode_items`)."""
        ...


@runtime_checkable
class ItemLosses(Protocol):
    """A model whose items alone may carry losses: the trainer's item-level pretraining
    (``train.pretrain_epochs``) feeds it batches ``{"item": long [B]}``, without users."""

    @property
    def trains_items(self) -> bool:
        """Whether a batch of items alone has losses to train."""
        ...


def to_device(batch: dict[str, Tensor], device: torch.device | str) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
