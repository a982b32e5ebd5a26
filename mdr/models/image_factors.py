"""The image side of MDR alone: a weakly supervised conv VAE with named slots (Eq. 1, 9-13).

For image corpora without users or reviews (e.g. the fashion product photos,
:mod:`mdr.data.fashion`) this trains exactly the image half of
:class:`mdr.models.mdr.MDRRecommender`:

- the encoder ``ImageEncoder(x) = [f, lambda]`` (Eq. 1) over the image factors
  ``s``, laid out by the same slot schema (:class:`mdr.config.SlotConfig`, slots of
  an image kind, then ``s_blackbox``; :class:`mdr.models.fusion.FactorLayout`);
- with one modality Algorithm 1 reduces to ``r = s``, so the decoder reads all of
  ``s`` (Eq. 9);
- one linear classifier per labelled slot on that slot's dims of the posterior
  MEAN ``f`` (Eq. 12), trained by cross-entropy on the labelled items (Eq. 13).

Loss (per batch; the averaging as in :mod:`mdr.models.mdr`):

  loss = visual * (rec + beta * kl) + mu * ws                   (Eq. 11 + Eq. 13)

with rec the squared L2 error SUMMED over the 3*S*S pixels and kl AVERAGED over
the N dims of ``s`` (:mod:`mdr.models.image_vae`: our ``beta`` is a textbook
beta-VAE's beta times N), both averaged over the batch's images; ws the CE
summed over labelled (slot, item) pairs divided by the batch size (unlabelled
items contribute zero). ``visual`` rescales Eq. 11 against Eq. 13; the config
(``benchmarks/configs/fashion.yaml``) documents the values chosen.

In training mode the decoder reads a sample ``s ~ N(f, exp(lambda))``; in eval
mode and in :meth:`ImageFactorModel.encode` the posterior mean ``f``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mdr.config import SlotConfig
from mdr.models.fusion import IMAGE_KINDS, FactorLayout
from mdr.models.image_vae import (
    ImageDecoder,
    ImageEncoder,
    images_to_float,
    kl_divergence,
    reconstruction_loss,
    reparameterize,
)

LOSS_TERMS = ("rec", "kl", "ws")


class ImageFactorModel(nn.Module):
    """Weakly supervised conv VAE whose factors ``s`` are split into named slots."""

    def __init__(
        self,
        slots: Sequence[SlotConfig],
        image_size: int,
        n_classes: Mapping[str, int],
        blackbox_dim: int = 8,
        channels: tuple[int, ...] = (32, 32, 64, 64),
        hidden: int = 256,
        pixel_stats: tuple[Tensor, Tensor] | None = None,
        beta: float = 1.0,
        mu: float = 1.0,
        visual: float = 1.0,
        seed: int = 0,
    ) -> None:
        """``n_classes``: weak-label name -> number of classes (for each labelled slot)."""
        super().__init__()
        slots = tuple(slots)
        _validate(slots, n_classes, blackbox_dim)
        self.slots, self.image_size = slots, image_size
        self.beta, self.mu, self.visual = beta, mu, visual
        self.layout = FactorLayout(slots, blackbox_dim, 0, use_image=True, use_text=False)
        self.slot_labels = {s.name: s.label for s in slots if s.label is not None}
        # parameters depend on `seed` alone, never on the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            n = self.layout.s_dim
            self.encoder = ImageEncoder(image_size, n, channels, hidden, pixel_stats)  # Eq. 1
            self.decoder = ImageDecoder(image_size, n, channels, hidden)  # Eq. 9, r = s
            self.classifiers = nn.ModuleDict({  # Eq. 12, one per labelled slot
                name: nn.Linear(self._slice(name).stop - self._slice(name).start,
                                n_classes[label])
                for name, label in self.slot_labels.items()
            })

    # ------------------------------------------------------------------ layout
    @property
    def latent_dim(self) -> int:
        """N, the width of s (every slot plus the black box)."""
        return self.layout.s_dim

    def _slice(self, name: str) -> slice:
        return self.layout.s_slices()[name]

    def slot_columns(self) -> dict[str, list[int]]:
        """Slot name -> its columns of s (``"blackbox"`` last, when it has any)."""
        return {name: list(range(sl.start, sl.stop))
                for name, sl in self.layout.s_slices().items() if sl.stop > sl.start}

    # ------------------------------------------------------------------ inference
    def _as_float(self, images: Tensor | np.ndarray) -> Tensor:
        """uint8 (n, S, S, 3) or float (n, 3, S, S) in [0, 1] -> float (n, 3, S, S)."""
        x = torch.from_numpy(np.array(images)) if isinstance(images, np.ndarray) else images
        x = x.to(self.encoder.pixel_mean.device)
        return images_to_float(x) if x.dtype == torch.uint8 else x.float()

    @torch.no_grad()
    def encode(self, images: Tensor | np.ndarray, chunk: int = 1024) -> Tensor:
        """Posterior means f (n, N) of images (uint8 NHWC or float NCHW), in eval mode."""
        was = self.training
        self.eval()
        try:
            out = [self.encoder(self._as_float(images[i : i + chunk]))[0]
                   for i in range(0, len(images), chunk)]
        finally:
            self.train(was)
        return torch.cat(out) if out else torch.zeros((0, self.latent_dim))

    @torch.no_grad()
    def decode(self, codes: Tensor | np.ndarray) -> Tensor:
        """Images (n, 3, S, S) in [0, 1] decoded from codes s (n, N)."""
        z = torch.as_tensor(codes, dtype=torch.float32, device=self.encoder.pixel_mean.device)
        return self.decoder(z)

    @torch.no_grad()
    def predict_labels(self, codes: Tensor) -> dict[str, Tensor]:
        """Label name -> predicted class ids (n,) of each labelled slot's classifier."""
        return {self.slot_labels[name]: clf(codes[:, self._slice(name)]).argmax(-1)
                for name, clf in self.classifiers.items()}

    # ------------------------------------------------------------------ training
    def loss_terms(self, images: Tensor, labels: Mapping[str, Tensor],
                   sample: bool | None = None) -> dict[str, Tensor]:
        """rec, kl (Eq. 9-10, means over the batch) and ws (Eq. 13) of a batch.

        ``images`` uint8 (B, S, S, 3) or float (B, 3, S, S); ``labels`` label name ->
        (B,) class ids, -1 unlabelled. ``sample`` (default: training mode) decodes a
        reparameterised sample instead of the mean.
        """
        sample = self.training if sample is None else sample
        x = self._as_float(images)  # (B, 3, S, S)
        f, logvar = self.encoder(x)  # (B, N) each, Eq. 1
        s = reparameterize(f, logvar) if sample else f
        x_rec = self.decoder(s)  # (B, 3, S, S), Eq. 9
        return {
            "rec": reconstruction_loss(x, x_rec).mean(),  # Eq. 9
            "kl": kl_divergence(f, logvar).mean(),  # Eq. 10
            "ws": self._weak_supervision(f, labels),  # Eq. 12-13
        }

    def _weak_supervision(self, f: Tensor, labels: Mapping[str, Tensor]) -> Tensor:
        """CE of each labelled slot's classifier on f's slot dims, summed over labelled
        (slot, item) pairs, divided by the batch size (Eq. 13)."""
        total = f.new_zeros((), dtype=torch.float32)
        for name, clf in self.classifiers.items():
            y = labels[self.slot_labels[name]].to(f.device).long()  # (B,), -1 unlabelled
            keep = y >= 0
            if not bool(keep.any()):
                continue
            logits = clf(f[keep][:, self._slice(name)]).float()  # (m, classes), Eq. 12
            total = total + F.cross_entropy(logits, y[keep], reduction="sum")
        return total / max(f.shape[0], 1)

    def combine(self, terms: Mapping[str, Tensor]) -> Tensor:
        """visual * (rec + beta * kl) + mu * ws: Eq. 11 plus Eq. 13."""
        return self.visual * (terms["rec"] + self.beta * terms["kl"]) + self.mu * terms["ws"]

    def calculate_loss(self, images: Tensor, labels: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": ...}`` plus each term detached (rec, kl, ws)."""
        terms = self.loss_terms(images, labels)
        out = {"loss": self.combine(terms)}
        out.update({k: terms[k].detach() for k in LOSS_TERMS})
        return out


def _validate(slots: tuple[SlotConfig, ...], n_classes: Mapping[str, int],
              blackbox_dim: int) -> None:
    names = [s.name for s in slots]
    if not slots or len(set(names)) != len(names) or "blackbox" in names:
        raise ValueError(f"slots: need at least one, names unique and not 'blackbox': {names}")
    if blackbox_dim < 0:
        raise ValueError(f"blackbox_dim must be >= 0, got {blackbox_dim}")
    for s in slots:
        if s.kind not in IMAGE_KINDS:
            raise ValueError(f"slot {s.name!r}: kind {s.kind!r} has no image dimensions; "
                             f"an image-only model takes {sorted(IMAGE_KINDS)}")
        if s.dim < 1:
            raise ValueError(f"slot {s.name!r}: dim must be positive, got {s.dim}")
        if s.label is not None and n_classes.get(s.label, 0) < 2:
            raise ValueError(f"slot {s.name!r}: weak label {s.label!r} not in the dataset's "
                             f"labels {sorted(n_classes)} (or fewer than 2 classes)")


__all__ = ["LOSS_TERMS", "ImageFactorModel"]
