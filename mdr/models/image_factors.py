"""The image side of MDR alone: a weakly supervised conv VAE with named slots (Eq. 1, 9-13).

For image corpora without users or reviews (e.g. the fashion product photos,
:mod:`mdr.data.fashion`), and as the reference "VAE trained alone" of
``benchmarks/diagnostics/image_branch.py``, this is exactly the image half of
:class:`mdr.models.mdr.MDRRecommender`, built from the same modules:

- the image branch :class:`~mdr.models.image_vae.ImageVAE`: ``ImageEncoder(x) = [f,
  lambda]`` (Eq. 1) over the image factors ``s``, laid out by the same slot schema
  (:class:`mdr.config.SlotConfig`, slots of an image kind, then ``s_blackbox``;
  :class:`mdr.models.fusion.FactorLayout`);
- with one modality Algorithm 1 reduces to ``r = s``, so the decoder reads all of
  ``s`` (Eq. 9);
- :class:`~mdr.models.image_vae.WeakSupervision`: one linear classifier per labelled
  slot on that slot's dims of the posterior MEAN ``f`` (Eq. 12), cross-entropy on the
  labelled items (Eq. 13).

A batch is ``{"item": long (B,)}``: the images and weak labels are the model's
(non-persistent) buffers, as in MDR. Loss (the averaging as in :mod:`mdr.models.mdr`):

  loss = visual * (rec + beta * kl) + mu * ws                   (Eq. 11 + Eq. 13)

with rec and kl averaged over the batch's items with an image, ws the CE summed over
labelled (slot, item) pairs divided by the same count (unlabelled items contribute
zero). In training mode the decoder reads a sample ``s ~ N(f, exp(lambda))``; in eval
mode and in :meth:`ImageFactorModel.encode_items` the posterior mean ``f``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mdr.config import RunConfig, SlotConfig
from mdr.models.base import ItemFeatures
from mdr.models.capabilities import Capabilities
from mdr.models.fusion import IMAGE_KINDS, FactorLayout
from mdr.models.image_vae import (
    ImageVAE,
    WeakSupervision,
    images_to_float,
    reparameterize,
)

LOSS_TERMS = ("rec", "kl", "ws")


class ImageFactorModel(nn.Module):
    """Weakly supervised conv VAE whose factors ``s`` are split into named slots."""

    def __init__(self, cfg: RunConfig, features: ItemFeatures) -> None:
        super().__init__()
        m, self.loss_cfg = cfg.model, cfg.loss
        if (
            features.images is None
            or features.image_mask is None
            or not bool(features.image_mask.any())
        ):
            raise ValueError("the image side needs images; no item of this data has one")
        slots = tuple(s for s in m.slots if s.kind in IMAGE_KINDS)
        _validate(slots, features, m.image_blackbox_dim, m.weak_supervision)
        self.slots = slots
        self.n_items = features.n_items
        self.layout = FactorLayout(slots, m.image_blackbox_dim, 0, use_image=True, use_text=False)
        self.slot_labels = {s.name: s.label for s in slots if s.label is not None}
        self.register_buffer("images", features.images, persistent=False)  # uint8 (I,S,S,3)
        self.register_buffer("image_mask", features.image_mask.bool(), persistent=False)
        self.register_buffer("_columns", torch.arange(self.layout.s_dim), persistent=False)
        # parameters depend on the seed alone, never on the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            n = self.layout.s_dim
            self.image = ImageVAE(features.images, n, n, m.image_channels)  # Eq. 1, 9 (r = s)
            self.weak: WeakSupervision | None = None
            if m.weak_supervision and self.slot_labels:
                s_sl = self.layout.s_slices()
                self.weak = WeakSupervision(  # Eq. 12-13
                    {
                        name: (s_sl[name], features.label_classes[label])
                        for name, label in self.slot_labels.items()
                    },
                    {name: features.labels[label] for name, label in self.slot_labels.items()},
                )

    # ------------------------------------------------------------------ layout
    @property
    def latent_dim(self) -> int:
        """N, the width of s (every slot plus the black box)."""
        return self.layout.s_dim

    def r_columns(self) -> dict[str, list[int]]:
        """Slot name -> its columns of s (``"blackbox"`` last, when it has any)."""
        return {
            name: list(range(sl.start, sl.stop))
            for name, sl in self.layout.s_slices().items()
            if sl.stop > sl.start
        }

    @property
    def image_columns(self) -> Tensor:
        """The columns of the code the decoder reads: all of s."""
        return self._columns

    # ------------------------------------------------------------------ inference
    def encode_items(self, items: Tensor, chunk: int = 1024) -> Tensor:
        """Posterior means f (n, N) of the items' images (no sampling)."""
        out = [
            self.image(images_to_float(self.images[items[i : i + chunk]]))[0]
            for i in range(0, items.shape[0], chunk)
        ]
        return (
            torch.cat(out)
            if out
            else self.images.new_zeros((0, self.latent_dim), dtype=torch.float32)
        )

    def decode_images(self, codes: Tensor) -> Tensor:
        """Images (n, 3, S, S) in pixel units decoded from codes s (n, N) (Eq. 9)."""
        return self.image.decode(codes)

    # ------------------------------------------------------------------ explanations
    @property
    def capabilities(self) -> Capabilities:
        """An image side without a recommender (:mod:`mdr.models.capabilities`): slot codes,
        the image decoder and item losses; no attention, no text."""
        return Capabilities(
            codes=True, slots=True, image_decoder=True, item_losses=self.trains_items
        )

    @property
    def decoder_network(self) -> nn.Module:
        """The image decoder of Eq. 9: s (n, N) -> (n, 3, S, S)."""
        return self.image.decoder

    def image_items(self) -> Tensor:
        """The items that have an image: long (n,)."""
        return torch.nonzero(self.image_mask, as_tuple=True)[0]

    def item_images(self, items: Tensor) -> Tensor:
        """The images of ``items`` (n,): float (n, 3, S, S) in [0, 1]."""
        return images_to_float(self.images[items])

    @torch.no_grad()
    def predict_labels(self, codes: Tensor) -> dict[str, Tensor]:
        """Label name -> predicted class ids (n,) of each labelled slot's classifier."""
        if self.weak is None:
            return {}
        return {self.slot_labels[name]: pred for name, pred in self.weak.predict(codes).items()}

    # ------------------------------------------------------------------ training
    trains_items = True  # a batch is a batch of items

    def loss_terms(self, items: Tensor, sample: bool | None = None) -> dict[str, Tensor]:
        """rec, kl (Eq. 9-10) and ws (Eq. 13) of the images of ``items`` (B,), averaged
        over those with an image. ``sample`` (default: training mode) decodes a
        reparameterised sample instead of the mean."""
        sample = self.training if sample is None else sample
        img = self.image_mask[items]  # (B,)
        x = images_to_float(self.images[items])  # (B, 3, S, S)
        f, logvar = self.image(x)  # (B, N) each, Eq. 1
        s = reparameterize(f, logvar) if sample else f
        x_rec = self.image.decode(s)  # (B, 3, S, S), Eq. 9
        count = img.float().sum().clamp_min(1.0)
        zero = f.new_zeros((), dtype=torch.float32)
        return {
            "rec": (self.image.rec(x, x_rec) * img).sum() / count,  # Eq. 9
            "kl": (self.image.kl(f, logvar) * img).sum() / count,  # Eq. 10
            "ws": self.weak(items, f, img) if self.weak is not None else zero,  # Eq. 12-13
        }

    def combine(self, terms: dict[str, Tensor]) -> Tensor:
        """visual * (rec + beta * kl) + mu * ws: Eq. 11 plus Eq. 13."""
        lc = self.loss_cfg
        # Eq. 11, the beta-weighted Lagrangian (Eq. 7) of Eqs. 5-6, plus Eq. 13
        return lc.visual * (terms["rec"] + lc.beta * terms["kl"]) + lc.mu * terms["ws"]

    def calculate_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": ...}`` plus each term detached (rec, kl, ws) for ``batch["item"]``."""
        terms = self.loss_terms(batch["item"])
        out = {"loss": self.combine(terms)}
        out.update({k: terms[k].detach() for k in LOSS_TERMS})
        return out


def _validate(
    slots: tuple[SlotConfig, ...], feats: ItemFeatures, blackbox_dim: int, weak_supervision: bool
) -> None:
    names = [s.name for s in slots]
    if not slots or len(set(names)) != len(names) or "blackbox" in names:
        raise ValueError(
            "model.slots: the image side needs at least one slot of an image kind "
            f"({sorted(IMAGE_KINDS)}), names unique and not 'blackbox': {names}"
        )
    if blackbox_dim < 0:
        raise ValueError(f"model.image_blackbox_dim must be >= 0, got {blackbox_dim}")
    for s in slots:
        if s.dim < 1:
            raise ValueError(f"model.slots[{s.name}]: dim must be positive, got {s.dim}")
        if weak_supervision and s.label is not None and feats.label_classes.get(s.label, 0) < 2:
            raise ValueError(
                f"model.slots[{s.name}]: weak label {s.label!r} not in the data's "
                f"labels {sorted(feats.label_classes)} (or fewer than 2 classes)"
            )


__all__ = ["LOSS_TERMS", "ImageFactorModel"]
