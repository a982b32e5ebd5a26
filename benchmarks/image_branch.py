"""Is the image branch learning? Diagnostics of a run's image decoder beside a VAE trained alone.

    python benchmarks/image_branch.py [--dataset NAME] [--run DIR ...] [--vae-steps 300]
                                      [--batch 512] [--threads N] [--results DIR]

For each run (default: the seed-0 ``mdr`` and ``beta_vae`` runs of
``results/<dataset>/table2.manifest.json``) it decodes every item's posterior-mean
code and reports: the squared error per pixel of the reconstructions, the same for the
mean image (what a decoder that ignores its input can at best reach), how much the
decoded images vary across items, and the fraction of the decoder's hidden ReLU units
that are zero for every item (dead units pass no gradient), and the fraction of output
pixels whose sigmoid is saturated (input beyond +-10). Then, as the reference,
the same encoder/decoder architecture is trained ALONE on the same images (Eq. 9-11
only, Adam at the run's learning rate) for ``--vae-steps`` steps, and its
reconstruction error is reported along the way.

Output: ``results/<dataset>/image_branch.csv``, ``.md`` and ``.manifest.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, FigureError, default_run, to_csv, to_markdown, write_result
from torch import Tensor, nn

from mdr.data.catalog import DEFAULT_DATASET
from mdr.evaluate import LoadedRun, RunError, load_run
from mdr.models.image_vae import (
    ImageDecoder,
    ImageEncoder,
    images_to_float,
    kl_divergence,
    pixel_statistics,
    reconstruction_loss,
    reparameterize,
)
from mdr.seeding import seed_everything

COLUMNS = ("source", "model", "step", "mse_per_pixel", "mean_image_mse_per_pixel",
           "across_item_std", "dead_relu_fraction", "saturated_fraction")


def _relu_outputs(decoder: ImageDecoder, r_visual: Tensor) -> list[Tensor]:
    """Outputs of every ReLU of the decoder for the codes ``r_visual`` (n, Dv)."""
    outs: list[Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: outs.append(o.detach()))
             for m in decoder.modules() if isinstance(m, nn.ReLU)]
    try:
        decoder(r_visual)
    finally:
        for h in hooks:
            h.remove()
    return outs


def dead_fraction(decoder: ImageDecoder, r_visual: Tensor) -> float:
    """Share of the decoder's ReLU units (channels for conv layers) that are 0 for all items."""
    dead = total = 0
    for o in _relu_outputs(decoder, r_visual):
        per_unit = o.transpose(0, 1).reshape(o.shape[1], -1)  # (units, n * spatial)
        dead += int((per_unit.amax(dim=1) <= 0).sum())
        total += per_unit.shape[0]
    return dead / max(total, 1)


def saturated_fraction(decoder: ImageDecoder, r_visual: Tensor, limit: float = 10.0) -> float:
    """Share of output pixel values whose sigmoid input exceeds ``limit`` in size (the
    sigmoid's gradient there is below 5e-5: reconstruction sends almost nothing back)."""
    seen: list[Tensor] = []
    sigmoids = [m for m in decoder.modules() if isinstance(m, nn.Sigmoid)]
    if not sigmoids:  # a linear ("standardised") output layer cannot saturate
        return 0.0
    hook = sigmoids[-1].register_forward_hook(lambda _m, i, _o: seen.append(i[0].detach()))
    try:
        decoder(r_visual)
    finally:
        hook.remove()
    return float((seen[0].abs() > limit).float().mean())


def reconstruction_stats(x: Tensor, x_rec: Tensor) -> dict[str, float]:
    """Squared error per pixel of ``x_rec`` and of the mean image, and the std across items."""
    n_pix = x[0].numel()
    mean_img = x.mean(dim=0, keepdim=True)
    return {
        "mse_per_pixel": float(reconstruction_loss(x, x_rec).mean()) / n_pix,
        "mean_image_mse_per_pixel": float(reconstruction_loss(x, mean_img.expand_as(x)).mean())
        / n_pix,
        "across_item_std": float(x_rec.std(dim=0).mean()),
    }


@torch.no_grad()
def decoder_diagnostics(run: LoadedRun) -> dict[str, Any]:
    """Reconstructions of every item with an image by the run's decoder (posterior means)."""
    model: Any = run.model
    if getattr(model, "image_dec", None) is None:
        raise FigureError(f"{run.folder.root}: the model has no image decoder")
    items = torch.nonzero(model.image_mask, as_tuple=True)[0]
    r = model.encode_items(items)  # (n, rep_dim), posterior means
    if model.id_emb is not None:
        r = r[:, : model.fusion.r_dim]
    r_visual = r[:, model.fusion.visual_index]  # (n, Dv)
    x = images_to_float(model.images[items])  # (n, 3, S, S)
    stats = reconstruction_stats(x, model.image_dec(r_visual))
    stats["dead_relu_fraction"] = dead_fraction(model.image_dec, r_visual)
    stats["saturated_fraction"] = saturated_fraction(model.image_dec, r_visual)
    return stats


def train_vae_alone(run: LoadedRun, steps: int, batch: int, seed: int = 0,
                    every: int = 50) -> list[dict[str, Any]]:
    """The run's image encoder/decoder architecture trained alone (Eq. 9-11) on its images."""
    model: Any = run.model
    cfg = run.cfg
    images = model.images[torch.nonzero(model.image_mask, as_tuple=True)[0]]  # uint8
    seed_everything(seed)
    dim = model.layout.s_dim
    enc = ImageEncoder(images.shape[1], dim, cfg.model.image_channels,
                       pixel_stats=pixel_statistics(images))
    dec = ImageDecoder(images.shape[1], dim, cfg.model.image_channels,
                       output=cfg.model.decoder_output, pixel_stats=pixel_statistics(images))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=cfg.train.lr)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for step in range(1, steps + 1):
        x = images_to_float(images[torch.randint(0, len(images), (batch,), generator=gen)])
        f, logvar = enc(x)
        loss = (reconstruction_loss(x, dec(reparameterize(f, logvar)))
                + cfg.loss.beta * kl_divergence(f, logvar)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            with torch.no_grad():
                x_all = images_to_float(images[:2048])
                f_all, _ = enc(x_all)
                stats = reconstruction_stats(x_all, dec(f_all))
                stats["dead_relu_fraction"] = dead_fraction(dec, f_all)
                stats["saturated_fraction"] = saturated_fraction(dec, f_all)
            rows.append({"step": step, **stats})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=DEFAULT_DATASET)
    p.add_argument("--run", type=Path, action="append", default=None,
                   help="run folder(s) (default: the seed-0 mdr and beta_vae runs of Table 2)")
    p.add_argument("--vae-steps", type=int, default=300,
                   help="steps of the VAE trained alone (0: skip)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--results", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    try:
        runs = a.run or [default_run(a.results, a.dataset, model=m) for m in ("mdr", "beta_vae")]
        loaded = [load_run(r) for r in runs]
        rows: list[dict[str, Any]] = []
        for run in loaded:
            rows.append({"source": "run", "model": run.folder.root.name,
                         "step": run.best["epoch"], **decoder_diagnostics(run)})
        if a.vae_steps > 0:
            for r in train_vae_alone(loaded[0], a.vae_steps, a.batch):
                rows.append({"source": "vae alone", "model": "same architecture", **r})
    except (FigureError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    short = loaded[0].ds.name
    md = (f"# Image branch diagnostics ({short})\n\n"
          "`run` rows: each run's decoder on every item's posterior-mean code (step = best "
          "epoch). `vae alone` rows: the same encoder/decoder trained alone on the same "
          "images (Eq. 9-11, the run's learning rate and beta), by step. mse_per_pixel: "
          "squared error per pixel value; mean_image_mse_per_pixel: the same for the mean "
          "image, the best a decoder that ignores its input can do; across_item_std: how "
          "much the decoded images differ between items; dead_relu_fraction: the decoder's "
          "ReLU units that are zero for every item (they pass no gradient); saturated_fraction: "
          "output pixel values whose sigmoid input is beyond +-10 (no gradient either).\n\n"
          + to_markdown(rows, COLUMNS))
    write_result(short, "image_branch", to_csv(rows, COLUMNS), md, results_dir=a.results,
                 runs=[str(r) for r in runs], vae_steps=a.vae_steps, batch=a.batch,
                 wall_time_s=round(time.perf_counter() - t0, 1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
