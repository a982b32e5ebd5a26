"""deepctr-torch's DIN (``deepctr_torch.models.DIN``) at the project DIN's sizes (speed suite).

The reference point: the project's DIN on id embeddings (registry
model ``din``, ``benchmarks/configs/mdr_synthetic.yaml`` variant ``din``)
should train at least as fast as deepctr-torch's DIN with the same sizes on
the same samples. This module builds that deepctr network and its input
tensor; the speed suite times both on identical batches.

Matched sizes: id embedding dim (``model.id_dim``), attention MLP
(``model.att_hidden``), prediction MLP (``model.mlp_hidden``), history length
(``train.max_hist``), batch size. Features: the ``user``, the candidate ``item`` and
its ``category``, and the history's items and categories (sharing the item and category
embeddings): the sparse features the project's ``din`` reads (``model.use_id_embedding``). Activations: PReLU in both MLPs,
as the project uses (deepctr's ``"prelu"`` is ``nn.PReLU()``, one slope per
layer; the project's has one slope per unit), no attention normalisation
(DIN's choice, the project's too), no batch norm, no dropout, no L2. The
network is built with ``task="regression"`` (logits out) and trained with
``binary_cross_entropy_with_logits``, as :mod:`baselines.deepctr_models`
does. One difference remains by construction: deepctr's prediction MLP reads
``[e_cand, u]`` (2D) where the project's Eq. 20 reads ``[u, e_cand, u * e_cand]`` (3D).

deepctr masks the history by length (the first ``hist_len`` positions), while
the project's histories are right-aligned, so inputs go through
:func:`baselines.deepctr_models.compact_history`, as for Wide&Deep/PNN/DeepFM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines._deepctr_import import SparseFeat, VarLenSparseFeat
from baselines.deepctr_models import compact_history

from deepctr_torch.models import DIN  # isort: skip  (after the quiet import above)


def build_deepctr_din(
    n_users: int,
    n_items: int,
    n_categories: int,
    embedding_dim: int,
    att_hidden: Sequence[int],
    mlp_hidden: Sequence[int],
    max_hist: int,
    device: str | torch.device,
    seed: int = 0,
) -> nn.Module:
    """deepctr-torch's DIN over the user, the candidate item and category and the history's
    items and categories (shared embeddings)."""
    d = embedding_dim
    columns = [
        SparseFeat("user", n_users, d),
        SparseFeat("item", n_items, d),
        SparseFeat("category", n_categories, d),
        VarLenSparseFeat(
            SparseFeat("hist_item", n_items, d, embedding_name="item"),
            maxlen=max_hist,
            combiner="mean",
            length_name="hist_len",
        ),
        VarLenSparseFeat(
            SparseFeat("hist_category", n_categories, d, embedding_name="category"),
            maxlen=max_hist,
            combiner="mean",
            length_name="hist_len",
        ),
    ]
    with torch.random.fork_rng(devices=[]):  # seeded init; the caller's RNG is untouched
        torch.manual_seed(seed)
        net = DIN(
            columns,
            ["item", "category"],
            dnn_hidden_units=tuple(mlp_hidden),
            att_hidden_size=tuple(att_hidden),
            att_activation="prelu",
            dnn_activation="prelu",
            att_weight_normalization=False,
            l2_reg_embedding=0.0,
            l2_reg_dnn=0.0,
            dnn_dropout=0.0,
            seed=seed,
            task="regression",
            device=str(device),
        )
    return net


def deepctr_din_input(net: nn.Module, batch: Mapping[str, Tensor], item_category: Tensor) -> Tensor:
    """deepctr's float32 input (B, F) for a project batch (``user``, ``hist``, ``hist_mask``,
    ``cand``), with each item's category ``item_category`` (I,)."""
    hist_left, length = compact_history(batch["hist"], batch["hist_mask"].bool())  # (B, H), (B,)
    cat = item_category.to(hist_left.device)
    values = {
        "user": batch["user"][:, None],
        "item": batch["cand"][:, None],
        "category": cat[batch["cand"]][:, None],
        "hist_item": hist_left,
        "hist_category": cat[hist_left],
        "hist_len": length[:, None],
    }
    index: Mapping[str, tuple[int, int]] = net.feature_index
    width = max(hi for _, hi in index.values())
    x = torch.empty((hist_left.shape[0], width), dtype=torch.float32, device=hist_left.device)
    for name, (lo, hi) in index.items():
        x[:, lo:hi] = values[name]
    return x


def deepctr_din_loss(net: nn.Module, x: Tensor, label: Tensor) -> Tensor:
    """Mean BCE on the logits of deepctr's DIN, plus its own regularisation (zero here)."""
    logit = net(x).squeeze(-1)  # (B,)
    loss = F.binary_cross_entropy_with_logits(logit.float(), label.float())
    return loss + net.get_regularization_loss()


__all__ = ["build_deepctr_din", "deepctr_din_input", "deepctr_din_loss"]
