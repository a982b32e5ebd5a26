"""Image side of MDR: a convolutional VAE (Eq. 1, 9-11).

The encoder maps an RGB image ``x`` (3, S, S) in [0, 1] to the mean ``f`` and
the LOG-variance ``lambda`` of a diagonal Gaussian over the image factors ``s``
(Eq. 1; the paper calls lambda a standard deviation, we parameterise it as a
log-variance, as the corrected Eq. 10 requires). The decoder maps the
visual-related part of the fused representation ``r`` back to an image (Eq. 9).

Loss conventions (explicit, because the paper's scale is ambiguous):

- :func:`reconstruction_loss` is the SQUARED L2 distance per image, summed over
  the 3*S*S pixels (Eq. 9, squared: a Gaussian log-likelihood up to constants);
- :func:`kl_divergence` AVERAGES over the N latent dimensions, exactly as the
  corrected Eq. 10 writes it: -1/N sum_k 0.5 (1 + lambda_k - f_k^2 - exp(lambda_k)).
  Relative to the textbook beta-VAE (KL summed over dims) our ``beta`` is
  therefore ``N`` times smaller: beta_textbook = beta / N;
- :func:`visual_loss` = rec + beta * KL (Eq. 11).

All three return one value per image ([n]); the caller averages over items.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) AVERAGED over the N dims (Eq. 10, corrected).

    ``mu``, ``logvar``: (n, N) -> (n,), computed in fp32.
    """
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.mean(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def reconstruction_loss(x: Tensor, x_rec: Tensor) -> Tensor:
    """Squared L2 distance per image, summed over channels and pixels (Eq. 9): (n,)."""
    return (x_rec.float() - x.float()).pow(2).flatten(1).sum(dim=1)


def visual_loss(x: Tensor, x_rec: Tensor, mu: Tensor, logvar: Tensor, beta: float) -> Tensor:
    """loss_visual = loss_rec + beta * loss_KL per image (Eq. 11): (n,)."""
    return reconstruction_loss(x, x_rec) + beta * kl_divergence(mu, logvar)


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
        self, image_size: int, latent_dim: int, channels: tuple[int, ...], hidden: int = 256,
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

    ``output``: ``"sigmoid"`` squashes the last layer into [0, 1]; ``"standardised"``
    predicts the standardised pixels (the encoder's input space, ``pixel_stats``) with a
    linear last layer and maps them back, ``x' = out * std + mean``. The second has no
    asymptote at the white background (1.0, most of a product photo's pixels): with a
    sigmoid, Adam keeps pushing the background towards 1 until every output saturates
    (measured on the embedded shop: 99.8 % of outputs saturated, no gradient left;
    ``benchmarks/image_branch.py``).
    """

    def __init__(
        self, image_size: int, in_dim: int, channels: tuple[int, ...], hidden: int = 256,
        output: str = "sigmoid", pixel_stats: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        super().__init__()
        if output not in ("sigmoid", "standardised"):
            raise ValueError(f"decoder output {output!r}: use 'sigmoid' or 'standardised'")
        self.output = output
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
            elif output == "sigmoid":
                layers.append(nn.Sigmoid())
        self.deconv = nn.Sequential(*layers)
        self.deconv.to(memory_format=torch.channels_last)

    def forward(self, r_visual: Tensor) -> Tensor:
        """``r_visual`` (n, Dv) -> reconstructed image (n, 3, S, S) in pixel units
        ([0, 1] with a sigmoid; unclamped with ``standardised``: clamp for display)."""
        h = self.fc(r_visual).view(-1, self.c_top, self.side, self.side)
        out = self.deconv(h.contiguous(memory_format=torch.channels_last))
        if self.output == "standardised":
            out = out * self.pixel_std + self.pixel_mean
        return out


def images_to_float(images: Tensor) -> Tensor:
    """uint8 (n, S, S, 3) -> float (n, 3, S, S) in [0, 1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


__all__ = [
    "ImageDecoder",
    "ImageEncoder",
    "images_to_float",
    "kl_divergence",
    "pixel_statistics",
    "reconstruction_loss",
    "reparameterize",
    "visual_loss",
]
