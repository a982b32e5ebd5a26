"""One optimiser step and the one optimiser: what the trainer and the speed suite share.

Every model of every table trains with Adam (``train.lr``, ``train.weight_decay``) and
one step is: the forward pass under the device's autocast (bf16 on CUDA with
``train.amp``), a check that the loss is finite, backward, the gradient clipping of
``train.grad_clip``, and the optimiser's step. A non-finite loss stops the step before
any weight moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from mdr.config import TrainConfig
from mdr.training.errors import DivergedError
from mdr.training.evaluate import autocast


def make_optimizer(parameters: Iterable[nn.Parameter], t: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the run's learning rate and weight decay: the optimiser of every model."""
    return torch.optim.Adam(parameters, lr=t.lr, weight_decay=t.weight_decay)


def train_step(
    forward: Callable[[], dict[str, Tensor]],
    parameters: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    t: TrainConfig,
    where: str = "",
) -> dict[str, Tensor]:
    """One step on the loss ``forward()["loss"]``; returns ``forward()``'s dict.

    ``parameters`` are the ones clipped (the whole model's); ``where`` names the step in
    the error a non-finite loss raises (e.g. ``"epoch 3, step 120"``).
    """
    with autocast(device, t.amp):
        out = forward()
    loss = out["loss"]
    if not bool(torch.isfinite(loss.detach())):
        value = float(loss.detach())
        raise DivergedError(
            f"non-finite loss ({value}){' at ' + where if where else ''}; "
            f"lower train.lr (now {t.lr:g}) or loss weights, or set "
            f"train.grad_clip (now {t.grad_clip})"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # under DDP: gradients averaged over ranks here
    if t.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parameters, t.grad_clip)
    optimizer.step()
    return out


__all__ = ["DivergedError", "make_optimizer", "train_step"]
