"""What the explanations and diagnostics need of a model, declared in one place.

:class:`mdr.models.base.RecModel` is what the trainer needs of every model. The
explanation tools (:mod:`mdr.explain`), the figure scripts and the diagnostics need
more, and only some models offer it. Each such need is a protocol here, and a model
says which of them it offers in its ``capabilities`` property (a :class:`Capabilities`
value) and implements them with public methods. A value rather than a structural check
alone, because one class offers different things by config: MDR without an image side
(``model.use_image: false``) has no image decoder to traverse.

- ``codes`` (:class:`ItemCodes`): learned item representations r; the disentanglement
  scores read them;
- ``slots`` (:class:`SlotCodes`): r's columns are named slots; the disentanglement
  scores and the traversals;
- ``image_decoder`` (:class:`ImageDecoding`): images decoded from r; Figure 4 and the
  image-branch diagnostics;
- ``attention`` (:class:`HistoryAttention`): a DIN head's attention over the history;
  ``mdr explain``;
- ``text_aspects`` (:class:`TextAspects`): the aspect decoder of the text side; Figure 5;
- ``item_losses`` (:class:`~mdr.models.base.ItemLosses`): items alone carry losses; the
  trainer's item-level pretraining.

Who offers what: :class:`mdr.models.mdr.MDRRecommender` all of them by its config (the
``din`` baseline, on id embeddings alone, only ``codes`` and ``attention``);
:class:`mdr.models.image_factors.ImageFactorModel` everything of an image side (no
recommender, so no attention, no text); the CTR baselines of
:mod:`baselines.deepctr_models` none.

:func:`model_capabilities` reads a model's declaration and checks that it implements
what it declares; :class:`mdr.training.runs.LoadedRun` does so once when a finished run
is opened, and its ``require`` turns a missing capability into one clear error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from mdr.models.base import ItemLosses


@runtime_checkable
class ItemCodes(Protocol):
    """Learned item representations r (not the empty ones of the CTR baselines)."""

    n_items: int

    def encode_items(self, items: Tensor, chunk: int = ...) -> Tensor:
        """Deterministic codes r (n, D) of ``items`` (n,): posterior means, no sampling."""
        ...


@runtime_checkable
class SlotCodes(ItemCodes, Protocol):
    """Codes r whose columns are named content slots (the slots of :mod:`mdr.config`)."""

    def r_columns(self) -> dict[str, list[int]]:
        """Slot name -> its columns of r (``"blackbox"`` for the black box)."""
        ...


@runtime_checkable
class ImageDecoding(SlotCodes, Protocol):
    """An image decoder from r (Eq. 9), and the images it reconstructs."""

    @property
    def image_columns(self) -> Tensor:
        """The columns of r the decoder reads: long (Dv,)."""
        ...

    @property
    def decoder_network(self) -> nn.Module:
        """The decoder itself: r[:, image_columns] (n, Dv) -> images (n, 3, S, S)."""
        ...

    def decode_images(self, r: Tensor) -> Tensor:
        """Images (n, 3, S, S) in pixel units decoded from codes r (n, D)."""
        ...

    def image_items(self) -> Tensor:
        """The items that have an image: long (n,)."""
        ...

    def item_images(self, items: Tensor) -> Tensor:
        """The images of ``items`` (n,) as float (n, 3, S, S) in [0, 1]."""
        ...


@runtime_checkable
class HistoryAttention(Protocol):
    """A DIN head over item representations r: its attention over a user's history
    (Eq. 18) and the named parts of r whose contributions ``mdr explain`` measures."""

    def attention_weights(self, h_hist: Tensor, hist_mask: Tensor, h_cand: Tensor) -> Tensor:
        """Weights wh (B, C, H) of ``h_hist`` (B, H, D) for each candidate ``h_cand``
        (B, C, D); zero where ``hist_mask`` (B, H) is False (no softmax)."""
        ...

    def r_parts(self) -> dict[str, list[int]]:
        """Named parts of r -> their columns (slots, ``"blackbox"``, ``"id_embedding"``);
        empty when r has no named parts (id embeddings alone)."""
        ...


@runtime_checkable
class TextAspects(Protocol):
    """The aspect decoder of the text side (Eq. 14)."""

    @property
    def aspect_matrix(self) -> Tensor:
        """D (K, d): one row per aspect, in the word-vector space."""
        ...

    @property
    def word_vectors(self) -> Tensor:
        """The frozen word vectors (V, d) the text side reads, aligned with the vocabulary."""
        ...

    @property
    def aspect_decoder(self) -> str:
        """``"per_slot"`` (p_j = fc_j(r_j), Eq. 14 as printed) or ``"dense"`` (p = W r_text + b)."""
        ...

    @property
    def aspect_slots(self) -> list[str]:
        """The slot each aspect (row of D) belongs to under ``"per_slot"``."""
        ...

    def text_columns(self) -> dict[str, list[int]]:
        """Each text slot, then ``"blackbox"``, -> its columns of r_text."""
        ...

    def aspect_weights(self) -> Tensor:
        """W (K, T) of the dense decoder's p = W r_text + b."""
        ...

    def text_representations(self, chunk: int = ...) -> Tensor:
        """r_text (n, T) of every item with text, from posterior means."""
        ...


@dataclass(frozen=True)
class Capabilities:
    """What a model offers beyond :class:`~mdr.models.base.RecModel` (module docstring)."""

    codes: bool = False
    slots: bool = False
    image_decoder: bool = False
    attention: bool = False
    text_aspects: bool = False
    item_losses: bool = False

    def missing(self, *needs: str) -> list[str]:
        """What a person reads for each of ``needs`` the model lacks, in order."""
        unknown = [n for n in needs if n not in _WORDS]
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {list(_WORDS)}")
        offered = asdict(self)
        return [_WORDS[n] for n in needs if not offered[n]]


# capability -> the protocol that implements it; and what a missing one is called
_PROTOCOLS: dict[str, type] = {
    "codes": ItemCodes,
    "slots": SlotCodes,
    "image_decoder": ImageDecoding,
    "attention": HistoryAttention,
    "text_aspects": TextAspects,
    "item_losses": ItemLosses,
}
_WORDS = {
    "codes": "item representation",
    "slots": "named slots in its item representation",
    "image_decoder": "image decoder",
    "attention": "DIN attention over the history",
    "text_aspects": "text aspects",
    "item_losses": "item losses",
}


@runtime_checkable
class DeclaresCapabilities(Protocol):
    """A model that says what it offers."""

    @property
    def capabilities(self) -> Capabilities: ...


def model_capabilities(model: object) -> Capabilities:
    """What ``model`` offers: its declared ``capabilities``; a model that declares none
    offers at most the trainer's :class:`~mdr.models.base.ItemLosses`.

    A model that declares a capability without implementing its protocol is a bug in the
    model (TypeError), not a user error.
    """
    if not isinstance(model, DeclaresCapabilities):
        return Capabilities(item_losses=isinstance(model, ItemLosses) and bool(model.trains_items))
    caps = model.capabilities
    for name, offered in asdict(caps).items():
        if offered and not isinstance(model, _PROTOCOLS[name]):
            raise TypeError(
                f"{type(model).__name__} declares {name!r} but does not implement "
                f"{_PROTOCOLS[name].__name__}"
            )
    if caps.item_losses != bool(isinstance(model, ItemLosses) and model.trains_items):
        raise TypeError(
            f"{type(model).__name__}: capabilities.item_losses disagrees with its trains_items"
        )
    return caps


__all__ = [
    "Capabilities",
    "DeclaresCapabilities",
    "HistoryAttention",
    "ImageDecoding",
    "ItemCodes",
    "SlotCodes",
    "TextAspects",
    "model_capabilities",
]
