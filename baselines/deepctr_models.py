"""Wide&Deep, PNN and DeepFM (Table 2's CTR baselines): deepctr-torch networks, thin wrappers.

The networks are deepctr-torch's own classes (``WDL``, ``PNN`` with the inner
product, ``DeepFM``), built from deepctr feature columns and fed deepctr's
input tensor. :class:`DeepCTRRecommender` is a thin ``nn.Module`` around one of
them with the interface of every other model (:class:`mdr.models.base.RecModel`:
``calculate_loss`` / ``predict`` / ``encode_items`` / ``score``), so the one
trainer (:mod:`mdr.training.train`) trains it on the same batches, negatives, seeds,
selection rule and run folder as MDR. The three are registered as models
``wide_deep``, ``pnn`` and ``deepfm`` through the ``mdr.models`` entry points of
``pyproject.toml`` (:mod:`mdr.training.registry` finds them there).

Features (all sparse)
---------------------
=================  =========================================================
``user``           SparseFeat, vocabulary ``n_users``
``item``           SparseFeat, vocabulary ``n_items`` (the candidate)
``category``       SparseFeat, vocabulary ``n_categories`` (candidate's leaf category)
``hist_item``      VarLenSparseFeat(maxlen ``H``, combiner ``"mean"``, length
                   ``hist_len``), ``embedding_name="item"``: shares the item
                   embedding (and the item's wide/linear weight)
``hist_category``  VarLenSparseFeat, same length, ``embedding_name="category"``
=================  =========================================================

Sizes come from the run config: embedding width ``model.id_dim`` (16), DNN widths
``model.mlp_hidden`` (80, 40), history length ``train.max_hist``; no L2 penalty on the
embeddings (deepctr's ``l2_reg_*`` = 0; ``train.weight_decay`` is the one knob), dropout
``model.dropout`` in the DNN (0 by default: a forward pass then consumes no random
numbers), no batch norm.

Input tensor (deepctr's ``build_input_features`` order, float32 as deepctr
feeds it; ids are exact in float32 below 2**24, checked): column 0 ``user``,
1 ``item``, 2 ``category``, ``3 .. 3+H`` ``hist_item``, ``3+H`` ``hist_len``,
``4+H .. 4+2H`` ``hist_category``. deepctr's length-based mean pooling
averages the FIRST ``hist_len`` positions, while the project's histories are
right-aligned (``mdr.data.batches``) and item id 0 is a real item, so
:func:`compact_history` moves each row's real entries to the front (order
kept; the mean does not depend on it) and zeroes the rest.

Models: Wide&Deep = linear (wide) part on the sparse features + DNN; PNN =
inner products of the 5 field embeddings + DNN (no linear part, as in
deepctr); DeepFM = linear + FM + DNN sharing the embeddings. The networks are
built with deepctr's ``task="regression"``, i.e. ``PredictionLayer`` without
the final sigmoid, so ``forward`` returns the logit: training uses
``binary_cross_entropy_with_logits`` (the same objective as deepctr's binary
task, computed stably; :func:`mdr.models.din.prediction_loss`) and scores are
logits (monotone in the probability, so ranking metrics are unchanged, and no
float32 saturation ties at p = 1). deepctr's ``aux_loss`` is zero for these three.

Scoring: deepctr's input handling pools each row's history again for every
candidate, which dominates the cost of scoring 101-item lists or all items.
:meth:`DeepCTRRecommender.score` computes the same inputs factorised
(:func:`factorised_inputs`: history pooled once per user, broadcast over the
candidates) and feeds them to the network's OWN ``forward`` (the model-specific
part: wide, FM, inner products, DNN, prediction layer stays deepctr's), 6-10x
faster (measured on one core); every call checks its first rows against the
plain ``net(x)`` path and raises if they differ. The models have no content
representation: :meth:`~DeepCTRRecommender.encode_items` returns an empty
``(n, 0)`` tensor and ``score`` looks its embeddings up itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from baselines._deepctr_import import (
    DEEPCTR_VERSION,
    PNN,
    WDL,
    BaseModel,
    DeepFM,
    SparseFeat,
    VarLenSparseFeat,
)
from mdr.config import RunConfig
from mdr.models.base import ItemFeatures
from mdr.models.capabilities import Capabilities
from mdr.models.din import prediction_loss

# model name -> how its deepctr network is built (see build_network)
NETWORKS = ("wide_deep", "pnn", "deepfm")

_POOL_EPS = 1e-8  # deepctr SequencePoolingLayer's eps
_FLOAT32_EXACT = 2**24  # deepctr feeds ids as float32: integers are exact below this


# --------------------------------------------------------------------------- features


def feature_columns(
    n_users: int, n_items: int, n_categories: int, max_hist: int, embedding_dim: int
) -> list[SparseFeat | VarLenSparseFeat]:
    """deepctr feature columns; history features share the item/category embeddings."""
    d = embedding_dim
    return [
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


def build_network(
    kind: str,
    columns: Sequence[SparseFeat | VarLenSparseFeat],
    dnn_hidden: Sequence[int],
    seed: int,
    dropout: float = 0.0,
) -> BaseModel:
    """The deepctr network of ``kind`` on the CPU; ``forward`` returns logits
    (``task="regression"``), no L2 penalty, ``dropout`` in its DNN (``model.dropout``)."""
    cols = list(columns)
    common = {
        "dnn_hidden_units": tuple(dnn_hidden),
        "l2_reg_embedding": 0.0,
        "l2_reg_dnn": 0.0,
        "seed": seed,
        "task": "regression",
        "device": "cpu",
    }
    if dropout > 0:  # passed only when set: no dropout, no random numbers drawn
        common["dnn_dropout"] = dropout
    if kind == "wide_deep":
        return WDL(cols, cols, l2_reg_linear=0.0, **common)
    if kind == "pnn":
        return PNN(cols, use_inner=True, use_outter=False, **common)
    if kind == "deepfm":
        return DeepFM(cols, cols, use_fm=True, l2_reg_linear=0.0, **common)
    raise ValueError(f"unknown deepctr network {kind!r}; expected one of {NETWORKS}")


def compact_history(hist: Tensor, hist_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move each row's real history entries to the front, keeping their order.

    ``hist`` long (B, H), ``hist_mask`` bool (B, H), any alignment. Returns the
    left-aligned ``hist`` (B, H) with padded positions set to 0, and the lengths (B,).
    """
    order = torch.argsort((~hist_mask).to(torch.int8), dim=1, stable=True)  # real first
    left = torch.gather(hist, 1, order)  # (B, H)
    length = hist_mask.sum(dim=1)  # (B,)
    real = torch.arange(hist.shape[1], device=hist.device)[None, :] < length[:, None]
    return torch.where(real, left, torch.zeros_like(left)), length


def assemble_input(
    feature_index: Mapping[str, tuple[int, int]],
    item_category: Tensor,
    user: Tensor,
    cand: Tensor,
    hist_left: Tensor,
    length: Tensor,
) -> Tensor:
    """deepctr's input tensor float32 (B, F) from left-aligned histories (:func:`compact_history`).

    Columns follow ``feature_index`` (``model.feature_index``), so the layout is
    exactly the one deepctr's own ``fit``/``predict`` would build from a dict.
    """
    real = torch.arange(hist_left.shape[1], device=hist_left.device)[None, :] < length[:, None]
    values = {
        "user": user[:, None],  # (B, 1)
        "item": cand[:, None],  # (B, 1)
        "category": item_category[cand][:, None],  # (B, 1)
        "hist_item": hist_left,  # (B, H)
        "hist_len": length[:, None],  # (B, 1)
        "hist_category": torch.where(real, item_category[hist_left], 0),  # (B, H)
    }
    width = max(hi for _, hi in feature_index.values())
    x = torch.empty((user.shape[0], width), dtype=torch.float32, device=user.device)
    for name, (lo, hi) in feature_index.items():
        x[:, lo:hi] = values[name]
    return x


def _mean_pool(emb: torch.nn.Embedding, ids: Tensor, length: Tensor) -> Tensor:
    """deepctr's length-masked mean (``SequencePoolingLayer``): ids (u, H) -> (u, d)."""
    e = emb(ids)  # (u, H, d)
    real = torch.arange(ids.shape[1], device=ids.device)[None, :] < length[:, None]  # (u, H)
    total = (e * real.unsqueeze(-1).float()).sum(dim=1)  # (u, d)
    return total / (length.float()[:, None] + _POOL_EPS)


def factorised_inputs(
    net: BaseModel,
    item_category: Tensor,
    user: Tensor,
    hist_left: Tensor,
    length: Tensor,
    cand: Tensor,
) -> tuple[list[Tensor], Tensor]:
    """What deepctr's input handling yields for every (user, candidate) pair, computed cheaply.

    ``user`` (u,), left-aligned ``hist_left`` (u, H) and ``length`` (u,), ``cand``
    (u, C). deepctr's ``input_from_feature_columns`` and ``Linear`` would look up and
    pool each row's history again for every candidate (the cost of scoring);
    here the user-side fields are pooled once per user and broadcast. Returns
    the field embeddings (u * C, 1, D) in deepctr's order (sparse features, then
    variable-length ones, each in column order) and the wide logit (u * C, 1)
    (zeros when the model has no linear part, e.g. PNN).
    """
    u, c = cand.shape
    hist_cat = torch.where(
        torch.arange(hist_left.shape[1], device=cand.device)[None, :] < length[:, None],
        item_category[hist_left],
        0,
    )  # (u, H)
    per_user = {"user": user, "hist_item": hist_left, "hist_category": hist_cat}
    per_cand = {"item": cand, "category": item_category[cand]}  # (u, C) each

    def field(emb_dict: torch.nn.ModuleDict, feat: SparseFeat | VarLenSparseFeat) -> Tensor:
        emb = emb_dict[feat.embedding_name]
        if isinstance(feat, VarLenSparseFeat):
            value = _mean_pool(emb, per_user[feat.name], length)  # (u, d)
        elif feat.name in per_user:
            value = emb(per_user[feat.name])  # (u, d)
        else:
            return emb(per_cand[feat.name]).reshape(u * c, 1, -1)  # (u * C, 1, d)
        return value[:, None, :].expand(u, c, value.shape[-1]).reshape(u * c, 1, -1)

    cols = net.dnn_feature_columns
    ordered = [f for f in cols if isinstance(f, SparseFeat)] + [
        f for f in cols if isinstance(f, VarLenSparseFeat)
    ]
    emb_list = [field(net.embedding_dict, f) for f in ordered]  # each (u * C, 1, D)
    linear = net.linear_model
    lin_cols = linear.sparse_feature_columns + linear.varlen_sparse_feature_columns
    linear_logit = torch.zeros((u * c, 1), device=cand.device)
    for f in lin_cols:
        linear_logit = linear_logit + field(linear.embedding_dict, f).reshape(u * c, 1)
    return emb_list, linear_logit


@contextlib.contextmanager
def _injected_inputs(
    net: BaseModel, emb_list: list[Tensor], linear_logit: Tensor
) -> Iterator[None]:
    """Make the network's own ``forward`` consume precomputed inputs, for one call.

    deepctr models read their input only through ``self.input_from_feature_columns``
    and ``self.linear_model``; shadowing those two on the instance for the
    duration of the call keeps the model-specific forward (wide + deep, FM,
    inner products, prediction layer) entirely deepctr's.
    """
    net.input_from_feature_columns = lambda *args, **kwargs: (emb_list, [])
    net.linear_model.forward = lambda *args, **kwargs: linear_logit
    try:
        yield
    finally:
        del net.input_from_feature_columns
        del net.linear_model.forward


# --------------------------------------------------------------------------- the model


class DeepCTRRecommender(nn.Module):
    """One deepctr-torch CTR network behind the :class:`~mdr.models.base.RecModel` interface."""

    def __init__(self, kind: str, cfg: RunConfig, features: ItemFeatures) -> None:
        super().__init__()
        if kind not in NETWORKS:
            raise ValueError(f"unknown deepctr network {kind!r}; expected one of {NETWORKS}")
        if features.category is None or features.n_categories < 1:
            raise ValueError(f"{kind}: needs the items' leaf categories")
        sizes = {
            "n_users": features.n_users,
            "n_items": features.n_items,
            "n_categories": features.n_categories,
        }
        for name, n in sizes.items():
            if n < 1:
                raise ValueError(f"{kind}: {name} must be >= 1, got {n}")
        if max(sizes.values()) >= _FLOAT32_EXACT:
            raise ValueError(f"{kind}: ids must stay below 2**24 (deepctr feeds them as float32)")
        cat = features.category.long()
        if cat.shape != (features.n_items,) or (
            cat.numel() and (int(cat.min()) < 0 or int(cat.max()) >= features.n_categories)
        ):
            raise ValueError(
                f"{kind}: item categories must be ({features.n_items},) ids in "
                f"[0, {features.n_categories})"
            )
        self.kind, self.n_items = kind, features.n_items
        columns = feature_columns(
            features.n_users,
            features.n_items,
            features.n_categories,
            cfg.train.max_hist,
            cfg.model.id_dim,
        )
        with torch.random.fork_rng(devices=[]):  # seeded init, the caller's RNG untouched
            torch.manual_seed(cfg.seed)
            self.net = build_network(
                kind, columns, cfg.model.mlp_hidden, cfg.seed, cfg.model.dropout
            )
        self.feature_index: dict[str, tuple[int, int]] = dict(self.net.feature_index)
        self.register_buffer("item_category", cat, persistent=False)  # (I,)

    def _follow_device(self, device: torch.device) -> None:
        """deepctr networks keep their device as a string that ``forward`` reads (for the
        pooling layers it builds on the fly); keep it where the weights are."""
        name = str(device)
        if self.net.device != name:
            self.net.device = name
            self.net.linear_model.device = name

    # ------------------------------------------------------------------ training
    def input_tensor(self, user: Tensor, cand: Tensor, hist: Tensor, hist_mask: Tensor) -> Tensor:
        """deepctr's input tensor float32 (B, F) for (user, history, candidate) rows."""
        hist_left, length = compact_history(hist, hist_mask.bool())
        return assemble_input(self.feature_index, self.item_category, user, cand, hist_left, length)

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits (B,) of the batch's (user, history, candidate) rows (deepctr's forward)."""
        self._follow_device(batch["cand"].device)
        x = self.input_tensor(batch["user"], batch["cand"], batch["hist"], batch["hist_mask"])
        return self.net(x).squeeze(-1)  # (B,)

    def calculate_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": BCE}`` (Eq. 21, the objective every model of Table 2 shares)."""
        pred = prediction_loss(self.predict(batch), batch["label"])
        return {"loss": pred, "pred": pred.detach()}

    @property
    def capabilities(self) -> Capabilities:
        """Nothing for the explanations (:mod:`mdr.models.capabilities`): ids only, no item
        representation, no image or text side, no DIN attention."""
        return Capabilities()

    # ------------------------------------------------------------------ scoring
    def encode_items(self, items: Tensor) -> Tensor:
        """No content representation: an empty (n, 0) tensor (``score`` ignores it)."""
        return torch.zeros((items.shape[0], 0), device=items.device)

    @torch.no_grad()
    def score(
        self,
        reps: Tensor,
        hist: Tensor,
        hist_mask: Tensor,
        cands: Tensor,
        user: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, C) of ``cands`` (B, C) for the users ``user`` (B,) with ``hist`` (B, H).

        Uses the factorised inputs of :func:`factorised_inputs` (history pooled once
        per user, not once per candidate) through the network's own ``forward``; the
        first rows are checked against the plain ``net(x)`` path and a mismatch raises
        RuntimeError. ``reps`` is unused.
        """
        if user is None:
            raise ValueError(f"{self.kind} scores need the user ids")
        self._follow_device(cands.device)
        hist_left, length = compact_history(hist, hist_mask.bool())  # (B, H), (B,)
        emb_list, linear_logit = factorised_inputs(
            self.net, self.item_category, user, hist_left, length, cands
        )
        rows = cands.numel()
        with _injected_inputs(self.net, emb_list, linear_logit):
            logit = self.net(torch.empty((rows, 0), device=cands.device)).reshape(rows)
        self._check_against_plain_forward(user, hist_left, length, cands, logit)
        return logit.reshape(cands.shape)

    def _check_against_plain_forward(
        self,
        user: Tensor,
        hist_left: Tensor,
        length: Tensor,
        cand: Tensor,
        logit: Tensor,
        n: int = 64,
    ) -> None:
        """Compare the first ``n`` factorised logits with deepctr's plain ``net(x)``."""
        n_cands = cand.shape[1]
        rows = min(n, cand.numel())
        x = assemble_input(
            self.feature_index,
            self.item_category,
            user.repeat_interleave(n_cands)[:rows],
            cand.reshape(-1)[:rows],
            hist_left.repeat_interleave(n_cands, dim=0)[:rows],
            length.repeat_interleave(n_cands)[:rows],
        )  # (rows, F)
        plain = self.net(x).reshape(rows)
        if not torch.allclose(plain, logit[:rows], rtol=1e-4, atol=1e-5):
            gap = float((plain - logit[:rows]).abs().max())
            raise RuntimeError(
                f"factorised scoring differs from deepctr's forward by {gap}; "
                f"deepctr-torch {DEEPCTR_VERSION} changed its input handling?"
            )


# --------------------------------------------------------------------------- registration


def _builder(kind: str) -> Callable[[RunConfig, ItemFeatures], nn.Module]:
    def build(cfg: RunConfig, features: ItemFeatures) -> nn.Module:
        return DeepCTRRecommender(kind, cfg, features)

    build.__name__ = build.__qualname__ = f"build_{kind}"
    build.__doc__ = f"The registry builder of ``{kind}`` (a :class:`DeepCTRRecommender`)."
    return build


# the targets of pyproject.toml's ``mdr.models`` entry points
build_wide_deep = _builder("wide_deep")
build_pnn = _builder("pnn")
build_deepfm = _builder("deepfm")


__all__ = [
    "NETWORKS",
    "DeepCTRRecommender",
    "assemble_input",
    "build_deepfm",
    "build_network",
    "build_pnn",
    "build_wide_deep",
    "compact_history",
    "factorised_inputs",
    "feature_columns",
]
