"""Image side of MDR: a convolutional VAE (Eq. 1, 9-11) and its weak supervision (Eq. 12-13).

:class:`ImageVAE` is the one image branch of every model with images (MDR, the
image-only baselines, the image side trained alone on photo corpora);
:class:`WeakSupervision` holds the Eq. 12 classifiers of the labelled slots.

The encoder maps an RGB image ``x`` (3, S, S) in [0, 1] to the mean ``f`` and
the LOG-variance ``lambda`` of a diagonal Gaussian over the image factors ``s``
(Eq. 1; the paper calls lambda a standard deviation, we parameterise it as a
log-variance, as the corrected Eq. 10 requires). The decoder maps the
visual-related part of the fused representation ``r`` back to an image (Eq. 9).

Loss scales (explicit, because the paper's are ambiguous; :meth:`ImageVAE.visual_terms`).
Both terms are per PIXEL VALUE (one of the 3*S*S numbers of an image), so that the
weights of Eq. 11 and Eq. 22 mean the same at 32x32 and at 64x64:

- rec (Eq. 9): the squared error of each value in the encoder's standardised pixel
  space (divided by the channel's std), halved and averaged over the values:
  the Gaussian negative log-likelihood of a unit-variance decoder per value, up to a
  constant. Eq. 9's sum is this times 3*S*S (times 2 sigma_c^2 in raw pixel units);
- kl (Eq. 10): the KL divergence SUMMED over the N latent dimensions (the textbook
  one), divided by the same 3*S*S. Eq. 10 as printed AVERAGES over the dimensions, so
  its KL is kl * 3*S*S / N.

With these, loss_visual = rec + beta * kl (Eq. 11) is the negative ELBO of a beta-VAE
per pixel value: beta = 1 is a plain VAE and beta > 1 a beta-VAE exactly as in Higgins
et al. It is the paper's derivation made concrete: Eq. 5 (maximise the reconstruction
likelihood of x from r) under the KL budget of Eq. 6 gives the Lagrangian Eq. 7, whose
KL term Eq. 8 splits into I(s; x) and KL(q(s) || p(s)); Eq. 9-11 are its terms. The
models form Eq. 11 themselves (``combine``) from :meth:`ImageVAE.rec` and
:meth:`ImageVAE.kl`, one value per image ([n]); :func:`reconstruction_loss` and
:func:`kl_divergence` are their pure cores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) SUMMED over the N dims (Eq. 10, corrected):
    -sum_k 0.5 (1 + lambda_k - f_k^2 - exp(lambda_k)).

    ``mu``, ``logvar``: (n, N) -> (n,), computed in fp32.
    """
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def reconstruction_loss(x: Tensor, x_rec: Tensor, std: Tensor | None = None) -> Tensor:
    """Eq. 9 per value: 1/2 of the squared error of each of the 3*S*S values, divided by
    the channel's ``std`` (3,) when given, averaged over the values: (n,)."""
    err = x_rec.float() - x.float()  # (n, 3, S, S)
    if std is not None:
        err = err / std.view(1, 3, 1, 1).float()
    return 0.5 * err.pow(2).flatten(1).mean(dim=1)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """A sample s ~ N(mu, exp(logvar)) with the reparameterisation trick: (n, N)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def _check_size(image_size: int, n_layers: int) -> int:
    """Spatial side after ``n_layers`` stride-2 convs; the image must divide evenly."""
    factor = 2**n_layers
    if image_size < factor or image_size % factor:
        raise ValueError(
            f"image size {image_size} must be a positive multiple of {factor} "
            f"for {n_layers} stride-2 conv layers (use 32 or 64)"
        )
    return image_size // factor


def pixel_statistics(images: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std (3,) of uint8 images (I, S, S, 3), scaled to [0, 1]."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for lo in range(0, images.shape[0], chunk):
        x = images[lo : lo + chunk].reshape(-1, 3).double() / 255.0
        total += x.sum(0)
        total_sq += x.pow(2).sum(0)
    n = max(images.shape[0] * images.shape[1] * images.shape[2], 1)
    mean = total / n
    std = (total_sq / n - mean.pow(2)).clamp_min(1e-6).sqrt()
    return mean.float(), std.float()


class ImageEncoder(nn.Module):
    """ImageEncoder(x) = [f, lambda] (Eq. 1): 4x4 stride-2 convs, then an fc to 2N.

    The input is standardised per channel with the dataset's pixel statistics
    (``pixel_stats``): product photos are mostly white background, and raw
    [0, 1] inputs make every item's code nearly identical at initialisation
    (measured: the std of f across items was 0.002), which stalls learning.
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int,
        channels: tuple[int, ...],
        hidden: int = 256,
        pixel_stats: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        super().__init__()
        mean, std = pixel_stats if pixel_stats is not None else (torch.zeros(3), torch.ones(3))
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1).float(), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1).float(), persistent=False)
        side = _check_size(image_size, len(channels))
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
            c_in = c_out
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.latent_dim = latent_dim
        # NHWC convolutions: ~1.4x faster on the CPU (and what bf16 kernels want on a GPU)
        self.conv.to(memory_format=torch.channels_last)

    def pixel_stats(self) -> tuple[Tensor, Tensor]:
        """The per-channel pixel mean and std (3,) the input is standardised with."""
        return self.pixel_mean.view(3), self.pixel_std.view(3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (n, 3, S, S) in [0, 1] -> mean f (n, N), log-variance lambda (n, N)."""
        x = ((x - self.pixel_mean) / self.pixel_std).contiguous(memory_format=torch.channels_last)
        h = self.fc(self.conv(x))  # (n, 2N)
        f, logvar = h.chunk(2, dim=-1)
        return f, logvar


class ImageDecoder(nn.Module):
    """x' = ImageDecoder(r_visual) (Eq. 9): fc layers, then 4x4 stride-2 transposed convs.

    The last layer is linear and predicts the STANDARDISED pixels (the encoder's input
    space, ``pixel_stats``), mapped back as ``x' = out * std + mean``. A sigmoid output has
    an asymptote at the white background (1.0, most of a product photo's pixels) that Adam
    keeps pushing towards until every output saturates and no gradient is left (measured
    on the embedded shop: 99.8 % of outputs saturated; ``benchmarks/diagnostics/image_branch.py``).
    """

    def __init__(
        self,
        image_size: int,
        in_dim: int,
        channels: tuple[int, ...],
        hidden: int = 256,
        pixel_stats: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        super().__init__()
        mean, std = pixel_stats if pixel_stats is not None else (torch.zeros(3), torch.ones(3))
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1).float(), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1).float(), persistent=False)
        self.side = _check_size(image_size, len(channels))
        self.c_top = channels[-1]
        self.fc = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, self.c_top * self.side * self.side),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        rev = list(reversed(channels))
        for c_in, c_out in zip(rev, [*rev[1:], 3]):
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
            if c_out != 3:
                layers.append(nn.ReLU())
        self.deconv = nn.Sequential(*layers)
        self.deconv.to(memory_format=torch.channels_last)

    def forward(self, r_visual: Tensor) -> Tensor:
        """``r_visual`` (n, Dv) -> reconstructed image (n, 3, S, S) in pixel units
        (unclamped: clamp to [0, 1] for display)."""
        h = self.fc(r_visual).view(-1, self.c_top, self.side, self.side)
        out = self.deconv(h.contiguous(memory_format=torch.channels_last))
        return out * self.pixel_std + self.pixel_mean


class ImageVAE(nn.Module):
    """The one image branch (Eq. 1, 9-11) of MDR, its image-only baselines and the image
    side trained alone: the encoder over the image factors ``s`` and the decoder from the
    visual-related part of ``r``, both standardised by the same pixel statistics.

    ``decoder_in`` is the width the decoder reads: ``latent_dim`` when ``r = s`` (one
    modality), the visual-related columns of ``r`` after Algorithm 1 otherwise.
    """

    def __init__(
        self,
        images: Tensor,
        latent_dim: int,
        decoder_in: int,
        channels: tuple[int, ...],
        hidden: int = 256,
    ) -> None:
        super().__init__()
        size = images.shape[1]
        stats = pixel_statistics(images)
        self.n_values = 3 * size * size  # the pixel values of one image
        self.encoder = ImageEncoder(size, latent_dim, channels, hidden, pixel_stats=stats)
        self.decoder = ImageDecoder(size, decoder_in, channels, hidden, pixel_stats=stats)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (n, 3, S, S) in [0, 1] -> f (n, N), log-variance lambda (n, N) (Eq. 1)."""
        return self.encoder(x)

    def decode(self, r_visual: Tensor) -> Tensor:
        """``r_visual`` (n, Dv) -> x' (n, 3, S, S) in pixel units (Eq. 9)."""
        return self.decoder(r_visual)

    def rec(self, x: Tensor, x_rec: Tensor) -> Tensor:
        """Eq. 9 per image (n,), per pixel value in standardised units (module docstring)."""
        return reconstruction_loss(x, x_rec, self.encoder.pixel_std.view(3))

    def kl(self, f: Tensor, logvar: Tensor) -> Tensor:
        """Eq. 10 per image (n,): the KL summed over the dims, per pixel value, so that
        rec + beta * kl (Eq. 11) is a textbook beta-VAE's loss per value."""
        return kl_divergence(f, logvar) / self.n_values


class WeakSupervision(nn.Module):
    """Eq. 12-13: one linear classifier per labelled slot on that slot's dims of the
    posterior MEAN f, and the cross-entropy on the labelled items.

    ``slots``: slot name -> (columns of f, number of classes). ``labels`` (item-indexed
    long tensors, -1 unlabelled) are kept as non-persistent buffers: they come from the
    prepared data, not from training.
    """

    def __init__(self, slots: dict[str, tuple[slice, int]], labels: dict[str, Tensor]) -> None:
        super().__init__()
        self.columns = {name: cols for name, (cols, _) in slots.items()}
        self.classifiers = nn.ModuleDict(
            {  # Eq. 12
                name: nn.Linear(cols.stop - cols.start, n_classes)
                for name, (cols, n_classes) in slots.items()
            }
        )
        for name in slots:
            self.register_buffer(f"label_{name}", labels[name].long(), persistent=False)

    def labels(self, name: str) -> Tensor:
        """Item-indexed class ids (I,) of slot ``name``'s label, -1 where unlabelled."""
        return getattr(self, f"label_{name}")

    def logits(self, name: str, f: Tensor) -> Tensor:
        """att_j = classifier_j(c_j) (Eq. 12): (n, n_classes) from f (n, N)."""
        return self.classifiers[name](f[:, self.columns[name]]).float()

    def forward(self, items: Tensor, f: Tensor, counted: Tensor) -> Tensor:
        """Eq. 13 summed over the labelled (slot, item) pairs among ``counted`` (n,) of
        ``items`` (n,) with means ``f`` (n, N), divided by the number of counted items
        (unlabelled items contribute zero)."""
        total = f.new_zeros((), dtype=torch.float32)
        for name in self.classifiers:
            y = self.labels(name)[items]  # (n,), -1 unlabelled
            keep = counted & (y >= 0)
            if bool(keep.any()):
                total = total + F.cross_entropy(
                    self.logits(name, f[keep]), y[keep], reduction="sum"
                )
        return total / counted.float().sum().clamp_min(1.0)

    @torch.no_grad()
    def predict(self, f: Tensor) -> dict[str, Tensor]:
        """Slot name -> predicted class ids (n,) of its classifier."""
        return {name: self.logits(name, f).argmax(-1) for name in self.classifiers}


def images_to_float(images: Tensor) -> Tensor:
    """uint8 (n, S, S, 3) -> float (n, 3, S, S) in [0, 1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


__all__ = [
    "ImageDecoder",
    "ImageEncoder",
    "ImageVAE",
    "WeakSupervision",
    "images_to_float",
    "kl_divergence",
    "pixel_statistics",
    "reconstruction_loss",
    "reparameterize",
]
