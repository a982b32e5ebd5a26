"""Wide&Deep, PNN and DeepFM (Table 2's CTR baselines): deepctr-torch networks, a thin wrapper.

The networks are deepctr-torch's own classes (``WDL``, ``PNN`` with the inner
product, ``DeepFM``), built from deepctr feature columns and fed deepctr's
input tensor; the wrapper (:class:`DeepCTRBaseline`, cornac-style ``fit_epoch``
/ ``score`` / ``seed``) only turns the project's samples into that tensor, runs
its own training loop, and scores the stored evaluation lists.

Features (all sparse, as the issue asks)
----------------------------------------
=================  =========================================================
``user``           SparseFeat, vocabulary ``n_users``
``item``           SparseFeat, vocabulary ``n_items`` (the candidate)
``category``       SparseFeat, vocabulary ``n_categories`` (candidate's leaf category)
``hist_item``      VarLenSparseFeat(maxlen ``H``, combiner ``"mean"``, length
                   ``hist_len``), ``embedding_name="item"``: shares the item
                   embedding (and the item's wide/linear weight)
``hist_category``  VarLenSparseFeat, same length, ``embedding_name="category"``
=================  =========================================================

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
task, computed stably) and scores are logits (monotone in the probability, so
ranking metrics are unchanged, and no float32 saturation ties at p = 1).

Scoring: deepctr's input handling pools each row's history again for every
candidate, which dominates the cost of scoring 101-item lists or all items
(about 40k rows/s on one core). :meth:`DeepCTRBaseline.score` computes the same
inputs factorised (:func:`factorised_inputs`: history pooled once per user,
broadcast over the candidates) and feeds them to the network's OWN ``forward``
(the model-specific part: wide, FM, inner products, DNN, prediction layer stays
deepctr's), 6-10x faster (measured on one core); every call checks its first rows against the
plain ``net(x)`` path and raises if they differ.

Training loop (ours, not deepctr's ``fit``, which re-splits data, logs and is
slow): per epoch the whole input tensor is built once, rows are shuffled with
``mdr.seeding.rng(seed, "deepctr-shuffle", epoch)``, Adam, loss = mean BCE +
``model.get_regularization_loss()`` (L2 ``l2`` on embeddings, wide weights and
DNN weights, deepctr's own penalty) + deepctr's ``aux_loss`` (zero for these
models). Dropout is 0 and batch norm off, so training consumes no torch RNG.

Defaults of :func:`run_deepctr`
-------------------------------
``embedding_dim=16``, ``dnn_hidden=(80, 40)``, ``lr=1e-3`` (Adam),
``l2=0``, ``batch_size=256``, ``epochs=20`` with early stopping on validation
GAUC (sampled valid lists) after ``patience=3`` epochs without improvement,
``n_neg=1`` training negative per positive (DIN's construction, resampled per
epoch), ``max_hist=20``, ``num_threads=1`` (the networks are tiny, batches of
256 x 80: torch's intra-op threading costs more than it gains, ~12x slower
per step on the 2-core machine when other processes compete, and oversubscribes
the cores when table runs go in parallel). Full-ranking NDCG@10/HR@10 on test are computed when
``n_users * n_items <= FULL_RANK_MAX_PAIRS`` (``full_ranking=None``), or as
forced by ``full_ranking=True/False``.

Outputs of :func:`run_deepctr` (in ``out``)
--------------------------------------------
``config.yaml`` (hyperparameters, seed, dataset, config hash, provenance
manifest), ``metrics.jsonl`` (one line per epoch: loss, valid metrics, epoch
and cumulative wall time), ``checkpoint.pt`` (last epoch: model, optimizer,
loop state), ``best.pt`` (the best-validation state), ``test.json`` (sampled
test GAUC/AUC/NDCG@10/HR@10 of the best state, full-ranking NDCG@10/HR@10,
``best_epoch``). All written atomically (``mdr.io``).

Resume: with ``resume=True`` a finished run (``test.json`` with the same config
hash) is returned as is; an interrupted one continues after its last
checkpointed epoch; ``metrics.jsonl`` lines after that epoch are dropped and
redone. Resuming is exact on CPU: negatives come from ``(seed, epoch)``, the
shuffle from ``(seed, epoch)``, and model and optimizer state are restored, so
a resumed run writes the same numbers as an uninterrupted one (tested). A
different config in the same folder is an error, never silently mixed.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor
from tqdm import tqdm

from baselines._deepctr_import import (
    DEEPCTR_VERSION,
    PNN,
    WDL,
    BaseModel,
    DeepFM,
    SparseFeat,
    VarLenSparseFeat,
)
from mdr import io as mdr_io
from mdr import provenance
from mdr.config import config_hash
from mdr.data.dataset import ProcessedDataset
from mdr.metrics import full_rank_metrics, full_ranks, sampled_list_metrics
from mdr.seeding import rng

Kind = Literal["wide_deep", "pnn", "deepfm"]
KINDS: tuple[str, ...] = ("wide_deep", "pnn", "deepfm")

DEFAULT_EPOCHS = 20
DEFAULT_PATIENCE = 3
DEFAULT_BATCH_SIZE = 256
DEFAULT_EMBEDDING_DIM = 16
DEFAULT_DNN_HIDDEN = (80, 40)
DEFAULT_LR = 1e-3
FULL_RANK_MAX_PAIRS = 5_000_000  # users x items scored for full ranking when "auto" (~15 s)
SCORE_BATCH_ROWS = 16_384  # (user, candidate) rows per forward pass when scoring

_POOL_EPS = 1e-8  # deepctr SequencePoolingLayer's eps
_FLOAT32_EXACT = 2**24  # deepctr feeds ids as float32: integers are exact below this
_TRAIN_KEYS = ("user", "hist", "hist_mask", "cand", "label")
_EVAL_KEYS = ("user", "hist", "hist_mask", "cands")


# --------------------------------------------------------------------------- features


def feature_columns(n_users: int, n_items: int, n_categories: int, max_hist: int,
                    embedding_dim: int) -> list[SparseFeat | VarLenSparseFeat]:
    """deepctr feature columns; history features share the item/category embeddings."""
    d = embedding_dim
    return [
        SparseFeat("user", n_users, d),
        SparseFeat("item", n_items, d),
        SparseFeat("category", n_categories, d),
        VarLenSparseFeat(SparseFeat("hist_item", n_items, d, embedding_name="item"),
                         maxlen=max_hist, combiner="mean", length_name="hist_len"),
        VarLenSparseFeat(SparseFeat("hist_category", n_categories, d, embedding_name="category"),
                         maxlen=max_hist, combiner="mean", length_name="hist_len"),
    ]


def build_network(kind: str, columns: Sequence[SparseFeat | VarLenSparseFeat],
                  dnn_hidden: Sequence[int], l2: float, seed: int, device: str) -> BaseModel:
    """The deepctr network of ``kind``; ``forward`` returns logits (``task="regression"``)."""
    cols = list(columns)
    common = {"dnn_hidden_units": tuple(dnn_hidden), "l2_reg_embedding": l2, "l2_reg_dnn": l2,
              "seed": seed, "task": "regression", "device": device}
    if kind == "wide_deep":
        return WDL(cols, cols, l2_reg_linear=l2, **common)
    if kind == "pnn":
        return PNN(cols, use_inner=True, use_outter=False, **common)
    if kind == "deepfm":
        return DeepFM(cols, cols, use_fm=True, l2_reg_linear=l2, **common)
    raise ValueError(f"unknown deepctr baseline {kind!r}; expected one of {KINDS}")


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


def assemble_input(feature_index: Mapping[str, tuple[int, int]], item_category: Tensor,
                   user: Tensor, cand: Tensor, hist_left: Tensor, length: Tensor) -> Tensor:
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


def factorised_inputs(net: BaseModel, item_category: Tensor, user: Tensor, hist_left: Tensor,
                      length: Tensor, cand: Tensor) -> tuple[list[Tensor], Tensor]:
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
    hist_cat = torch.where(torch.arange(hist_left.shape[1], device=cand.device)[None, :]
                           < length[:, None], item_category[hist_left], 0)  # (u, H)
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
    ordered = ([f for f in cols if isinstance(f, SparseFeat)]
               + [f for f in cols if isinstance(f, VarLenSparseFeat)])
    emb_list = [field(net.embedding_dict, f) for f in ordered]  # each (u * C, 1, D)
    linear = net.linear_model
    lin_cols = linear.sparse_feature_columns + linear.varlen_sparse_feature_columns
    linear_logit = torch.zeros((u * c, 1), device=cand.device)
    for f in lin_cols:
        linear_logit = linear_logit + field(linear.embedding_dict, f).reshape(u * c, 1)
    return emb_list, linear_logit


@contextlib.contextmanager
def _injected_inputs(net: BaseModel, emb_list: list[Tensor],
                     linear_logit: Tensor) -> Iterator[None]:
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


# --------------------------------------------------------------------------- wrapper


class DeepCTRBaseline:
    """One deepctr-torch CTR model behind ``fit_epoch`` / ``score`` (see the module docstring)."""

    def __init__(self, kind: Kind | str, n_users: int, n_items: int, n_categories: int,
                 item_category: np.ndarray, max_hist: int = 20,
                 embedding_dim: int = DEFAULT_EMBEDDING_DIM,
                 dnn_hidden: Sequence[int] = DEFAULT_DNN_HIDDEN, lr: float = DEFAULT_LR,
                 l2: float = 0.0, seed: int = 0, device: str = "cpu") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown deepctr baseline {kind!r}; expected one of {KINDS}")
        for name, n in (("n_users", n_users), ("n_items", n_items),
                        ("n_categories", n_categories), ("max_hist", max_hist),
                        ("embedding_dim", embedding_dim)):
            if int(n) < 1:
                raise ValueError(f"{name} must be >= 1, got {n}")
        if max(n_users, n_items, n_categories) >= _FLOAT32_EXACT:
            raise ValueError("ids must stay below 2**24 (deepctr feeds them as float32)")
        cat = np.asarray(item_category)
        if cat.shape != (n_items,):
            raise ValueError(f"item_category: expected shape ({n_items},), got {cat.shape}")
        if cat.size and (cat.min() < 0 or cat.max() >= n_categories):
            raise ValueError(f"item_category: ids must lie in [0, {n_categories})")
        self.kind, self.seed, self.device = str(kind), int(seed), device
        self.n_users, self.n_items, self.max_hist = int(n_users), int(n_items), int(max_hist)
        self.config: dict[str, Any] = {
            "kind": self.kind, "n_users": self.n_users, "n_items": self.n_items,
            "n_categories": int(n_categories), "max_hist": self.max_hist,
            "embedding_dim": int(embedding_dim), "dnn_hidden": [int(h) for h in dnn_hidden],
            "lr": float(lr), "l2": float(l2), "seed": self.seed,
        }
        self.item_category = torch.as_tensor(cat, dtype=torch.long, device=device)
        columns = feature_columns(n_users, n_items, n_categories, max_hist, embedding_dim)
        with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG left untouched
            torch.manual_seed(self.seed)
            self.net = build_network(self.kind, columns, dnn_hidden, l2, self.seed, device)
        self.feature_index: dict[str, tuple[int, int]] = dict(self.net.feature_index)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.epochs_done = 0

    # ------------------------------------------------------------------ inputs
    def _check(self, samples: Mapping[str, np.ndarray], keys: Sequence[str]) -> None:
        missing = [k for k in keys if k not in samples]
        if missing:
            raise ValueError(f"samples: missing keys {missing}")
        n = len(samples["user"])
        hist, mask = np.asarray(samples["hist"]), np.asarray(samples["hist_mask"])
        if hist.shape != (n, self.max_hist) or mask.shape != hist.shape:
            raise ValueError(f"samples: hist and hist_mask must be ({n}, {self.max_hist}), "
                             f"got {hist.shape} and {mask.shape}")
        if "label" in keys:
            label = np.asarray(samples["label"])
            if label.shape != (n,) or not np.all((label == 0) | (label == 1)):
                raise ValueError(f"samples['label']: expected {n} values in {{0, 1}}")
        for key, bound in (("user", self.n_users), ("hist", self.n_items),
                           ("cand", self.n_items), ("cands", self.n_items)):
            if key in keys:
                a = np.asarray(samples[key])
                if len(a) != n:
                    raise ValueError(f"samples[{key!r}]: {len(a)} rows, expected {n}")
                if a.size and (a.min() < 0 or a.max() >= bound):
                    raise ValueError(f"samples[{key!r}]: ids must lie in [0, {bound})")

    def _tensor(self, a: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=self.device)

    def input_tensor(self, user: np.ndarray, cand: np.ndarray, hist: np.ndarray,
                     hist_mask: np.ndarray) -> Tensor:
        """deepctr's input tensor (B, F) for (user, history, candidate) rows."""
        hist_left, length = compact_history(self._tensor(hist, torch.long),
                                            self._tensor(hist_mask, torch.bool))
        return assemble_input(self.feature_index, self.item_category,
                              self._tensor(user, torch.long), self._tensor(cand, torch.long),
                              hist_left, length)

    # ------------------------------------------------------------------ training
    def fit_epoch(self, samples: Mapping[str, np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE,
                  *, max_steps: int | None = None, progress: bool = False) -> float:
        """Train one epoch on ``samples`` (user/hist/hist_mask/cand/label); returns the mean loss.

        Rows are shuffled with ``rng(seed, "deepctr-shuffle", epochs_done)``;
        ``max_steps`` caps the number of batches.
        """
        self._check(samples, _TRAIN_KEYS)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x = self.input_tensor(samples["user"], samples["cand"], samples["hist"],
                              samples["hist_mask"])  # (N, F)
        y = self._tensor(samples["label"], torch.float32)  # (N,)
        n = x.shape[0]
        perm = torch.as_tensor(rng(self.seed, "deepctr-shuffle", self.epochs_done).permutation(n),
                               device=self.device)
        steps = math.ceil(n / batch_size) if max_steps is None else min(
            math.ceil(n / batch_size), max_steps)
        self.net.train()
        total, seen = 0.0, 0
        for b in tqdm(range(steps), desc=f"{self.kind} epoch {self.epochs_done + 1}",
                      disable=not progress, leave=False):
            rows = perm[b * batch_size:(b + 1) * batch_size]
            logit = self.net(x[rows]).squeeze(-1)  # (B,)
            loss = F.binary_cross_entropy_with_logits(logit, y[rows])
            loss = loss + (self.net.get_regularization_loss() + self.net.aux_loss).sum()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * rows.shape[0]
            seen += rows.shape[0]
        self.epochs_done += 1
        return total / seen if seen else float("nan")

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, samples: Mapping[str, np.ndarray],
              batch_rows: int = SCORE_BATCH_ROWS) -> np.ndarray:
        """Logits float32 (U, C) of every candidate ``cands`` (U, C) given each row's history.

        Uses the factorised inputs of :func:`factorised_inputs` (history pooled
        once per user, not once per candidate) through the network's own
        ``forward``; the first rows of every call are checked against the plain
        ``net(x)`` path and a mismatch raises RuntimeError.
        """
        self._check(samples, _EVAL_KEYS)
        cands = np.asarray(samples["cands"])
        if cands.ndim != 2:
            raise ValueError(f"samples['cands']: expected (U, C), got shape {cands.shape}")
        n_users, n_cands = cands.shape
        self.net.eval()
        out = np.empty((n_users, n_cands), np.float32)
        chunk = max(1, batch_rows // max(n_cands, 1))  # users per forward pass
        for lo in range(0, n_users, chunk):
            hi = min(lo + chunk, n_users)
            user = self._tensor(samples["user"][lo:hi], torch.long)  # (u,)
            hist_left, length = compact_history(
                self._tensor(samples["hist"][lo:hi], torch.long),
                self._tensor(samples["hist_mask"][lo:hi], torch.bool))  # (u, H), (u,)
            cand = self._tensor(cands[lo:hi], torch.long)  # (u, C)
            logit = self._forward_factorised(user, hist_left, length, cand)  # (u * C,)
            if lo == 0:
                self._check_against_plain_forward(user, hist_left, length, cand, logit)
            out[lo:hi] = logit.reshape(hi - lo, n_cands).cpu().numpy()
        return out

    def _forward_factorised(self, user: Tensor, hist_left: Tensor, length: Tensor,
                            cand: Tensor) -> Tensor:
        """The network's forward on (u * C) rows, fed with :func:`factorised_inputs`."""
        emb_list, linear_logit = factorised_inputs(self.net, self.item_category, user,
                                                   hist_left, length, cand)
        rows = cand.numel()
        with _injected_inputs(self.net, emb_list, linear_logit):
            return self.net(torch.empty((rows, 0), device=cand.device)).reshape(rows)

    def _check_against_plain_forward(self, user: Tensor, hist_left: Tensor, length: Tensor,
                                     cand: Tensor, logit: Tensor, n: int = 64) -> None:
        """Compare the first ``n`` factorised logits with deepctr's plain ``net(x)``."""
        n_cands = cand.shape[1]
        rows = min(n, cand.numel())
        x = assemble_input(self.feature_index, self.item_category,
                           user.repeat_interleave(n_cands)[:rows], cand.reshape(-1)[:rows],
                           hist_left.repeat_interleave(n_cands, dim=0)[:rows],
                           length.repeat_interleave(n_cands)[:rows])  # (rows, F)
        plain = self.net(x).reshape(rows)
        if not torch.allclose(plain, logit[:rows], rtol=1e-4, atol=1e-5):
            gap = float((plain - logit[:rows]).abs().max())
            raise RuntimeError(f"factorised scoring differs from deepctr's forward by {gap}; "
                               f"deepctr-torch {DEEPCTR_VERSION} changed its input handling?")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Network, optimizer and epoch counter (plus the config, checked on load)."""
        return {"kind": self.kind, "config": dict(self.config),
                "network": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epochs_done": self.epochs_done}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; raises ValueError if it was saved with another config."""
        if state.get("config") != self.config:
            raise ValueError(f"checkpoint config {state.get('config')} does not match this "
                             f"model's {self.config}")
        self.net.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epochs_done = int(state["epochs_done"])


# --------------------------------------------------------------------------- evaluation


def full_ranking(model: DeepCTRBaseline, samples: Mapping[str, np.ndarray], seen: Any,
                 k: int = 10, batch_rows: int = SCORE_BATCH_ROWS * 4) -> dict[str, float]:
    """Full-ranking NDCG@k / HR@k: each user's positive (``cands[:, 0]``) among all items.

    ``seen`` is the bool CSR (U, I) of excluded items (``mdr.data.batches.user_seen``).
    """
    n_users, n_items = len(samples["user"]), model.n_items
    chunk = max(1, batch_rows // n_items)
    ranks = []
    for lo in range(0, n_users, chunk):
        hi = min(lo + chunk, n_users)
        part = {k_: samples[k_][lo:hi] for k_ in ("user", "hist", "hist_mask")}
        part["cands"] = np.broadcast_to(np.arange(n_items, dtype=np.int64), (hi - lo, n_items))
        scores = model.score(part, batch_rows=batch_rows)  # (u, I)
        users = samples["user"][lo:hi]  # rows of `seen` by user id (samples may be a subset)
        ranks.append(full_ranks(scores, samples["cands"][lo:hi, 0], seen[users].toarray()))
    return full_rank_metrics(np.concatenate(ranks), k)


# --------------------------------------------------------------------------- runner


_FILES = ("metrics.jsonl", "checkpoint.pt", "best.pt", "test.json", "config.yaml")


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def run_deepctr(kind: Kind | str, data: str | Path, out: str | Path, seed: int = 0,
                epochs: int = DEFAULT_EPOCHS, patience: int = DEFAULT_PATIENCE,
                batch_size: int = DEFAULT_BATCH_SIZE, max_hist: int = 20,
                max_steps_per_epoch: int | None = None, resume: bool = False,
                progress: bool = True, *, n_neg: int = 1,
                embedding_dim: int = DEFAULT_EMBEDDING_DIM,
                dnn_hidden: Sequence[int] = DEFAULT_DNN_HIDDEN, lr: float = DEFAULT_LR,
                l2: float = 0.0, device: str = "cpu",
                full_ranking_metrics: bool | None = None,
                num_threads: int | None = 1, full_rank_users: int | None = None) -> dict[str, Any]:
    """Train ``kind`` on a prepared dataset with early stopping on valid GAUC; test the best state.

    Returns the content of ``test.json``. See the module docstring for outputs,
    defaults and resume behaviour. ``num_threads`` sets torch's intra-op threads
    for the duration of the run (restored after; None leaves them alone).
    """
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _run(kind, data, out, seed, epochs, patience, batch_size, max_hist,
                    max_steps_per_epoch, resume, progress, n_neg, embedding_dim, dnn_hidden,
                    lr, l2, device, full_ranking_metrics, full_rank_users)
    finally:
        torch.set_num_threads(previous)


def _run(kind: str, data: str | Path, out: str | Path, seed: int, epochs: int, patience: int,
         batch_size: int, max_hist: int, max_steps_per_epoch: int | None, resume: bool,
         progress: bool, n_neg: int, embedding_dim: int, dnn_hidden: Sequence[int], lr: float,
         l2: float, device: str, full_ranking_metrics: bool | None,
         full_rank_users: int | None = None) -> dict[str, Any]:
    """The body of :func:`run_deepctr` (same arguments)."""
    from mdr.data.batches import eval_samples, training_samples

    if epochs < 1 or patience < 1:
        raise ValueError(f"epochs and patience must be >= 1, got {epochs}, {patience}")
    ds = ProcessedDataset.open(data)
    out = Path(out)
    do_full = (ds.n_users * ds.n_items <= FULL_RANK_MAX_PAIRS if full_ranking_metrics is None
               else bool(full_ranking_metrics))
    config = {
        "model": str(kind), "dataset": ds.name,
        "dataset_fingerprint": config_hash(ds.manifest), "seed": int(seed),
        "epochs": int(epochs), "patience": int(patience), "batch_size": int(batch_size),
        "max_hist": int(max_hist), "max_steps_per_epoch": max_steps_per_epoch,
        "n_neg": int(n_neg), "embedding_dim": int(embedding_dim),
        "dnn_hidden": [int(h) for h in dnn_hidden], "lr": float(lr), "l2": float(l2),
        "device": device, "full_ranking": do_full, "deepctr_torch": DEEPCTR_VERSION,
    }
    chash = config_hash(config)

    if resume and (out / "config.yaml").is_file():
        found = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {}
        if found.get("config_hash") != chash:
            raise ValueError(f"{out / 'config.yaml'}: written with config "
                             f"{found.get('config_hash')}, this run is {chash}; use another "
                             "folder or resume=False")
    if resume and (out / "test.json").is_file():
        done = json.loads((out / "test.json").read_text(encoding="utf-8"))
        if done.get("config_hash") == chash:
            return done
    if not resume:
        for name in _FILES:
            (out / name).unlink(missing_ok=True)
    if not (out / "config.yaml").is_file():
        doc = {**config, "config_hash": chash, "data": str(Path(data)),
               "manifest": provenance.manifest(device=provenance.device_name(device))}
        mdr_io.write_text(out / "config.yaml", yaml.safe_dump(doc, sort_keys=False))

    model = DeepCTRBaseline(kind, ds.n_users, ds.n_items, ds.n_categories, ds.item_category,
                            max_hist=max_hist, embedding_dim=embedding_dim,
                            dnn_hidden=dnn_hidden, lr=lr, l2=l2, seed=seed, device=device)
    loop = {"epoch": 0, "best_gauc": -math.inf, "best_epoch": 0, "bad_epochs": 0, "wall_s": 0.0}
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        ckpt = _load(ckpt_path)
        if ckpt["config_hash"] != chash:
            raise ValueError(f"{ckpt_path}: written with config {ckpt['config_hash']}, this run "
                             f"is {chash}; use another folder or resume=False")
        model.load_state_dict(ckpt["model"])
        loop = dict(ckpt["loop"])
    mdr_io.truncate_jsonl_epochs(out / "metrics.jsonl", loop["epoch"])

    valid = eval_samples(ds, "valid", max_hist=max_hist)
    bar = tqdm(total=epochs, initial=loop["epoch"], desc=f"{kind} seed {seed}",
               disable=not progress)
    while loop["epoch"] < epochs and loop["bad_epochs"] < patience:
        t0 = time.perf_counter()
        samples = training_samples(ds, epoch=loop["epoch"], seed=seed, n_neg=n_neg,
                                   max_hist=max_hist)
        loss = model.fit_epoch(samples, batch_size, max_steps=max_steps_per_epoch,
                               progress=progress)
        metrics = sampled_list_metrics(model.score(valid))
        loop["epoch"] += 1
        epoch_s = time.perf_counter() - t0
        loop["wall_s"] += epoch_s
        if metrics["gauc"] > loop["best_gauc"]:
            loop.update(best_gauc=metrics["gauc"], best_epoch=loop["epoch"], bad_epochs=0)
            mdr_io.write_torch(out / "best.pt", {"epoch": loop["epoch"], "model": model.state_dict()})
        else:
            loop["bad_epochs"] += 1
        mdr_io.append_jsonl(out / "metrics.jsonl", {
            "epoch": loop["epoch"], "loss": loss, "valid": metrics,
            "epoch_s": round(epoch_s, 3), "wall_s": round(loop["wall_s"], 3)})
        mdr_io.write_torch(ckpt_path, {"config_hash": chash, "loop": loop, "model": model.state_dict()})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", valid_gauc=f"{metrics['gauc']:.4f}")
    bar.close()
    return _test(model, ds, out, loop, config, chash, do_full, max_hist, full_rank_users)


def _test(model: DeepCTRBaseline, ds: ProcessedDataset, out: Path, loop: Mapping[str, Any],
          config: Mapping[str, Any], chash: str, do_full: bool, max_hist: int,
          full_rank_users: int | None = None) -> dict[str, Any]:
    """Score the best-validation state on the sampled test lists (and full ranking); write test.json."""
    from mdr.data.batches import eval_samples, full_rank_user_subset, subset_rows, user_seen

    best = _load(out / "best.pt")
    if best["epoch"] != loop["best_epoch"]:
        raise RuntimeError(f"{out / 'best.pt'}: holds epoch {best['epoch']}, "
                           f"expected {loop['best_epoch']}")
    model.load_state_dict(best["model"])
    t0 = time.perf_counter()
    test = eval_samples(ds, "test", max_hist=max_hist)
    result: dict[str, Any] = {
        "model": config["model"], "dataset": config["dataset"], "seed": config["seed"],
        "config_hash": chash, **sampled_list_metrics(model.score(test)),
    }
    if do_full:
        ranked = subset_rows(test, full_rank_user_subset(ds.n_users, full_rank_users))
        full = full_ranking(model, ranked, user_seen(ds, "test"))
        result.update({f"full_{k}": v for k, v in full.items()})
        result["full_rank_users"] = len(ranked["user"])
    result.update(best_epoch=loop["best_epoch"], best_valid_gauc=loop["best_gauc"],
                  epochs_run=loop["epoch"], stopped_early=loop["bad_epochs"] >= config["patience"],
                  train_wall_s=round(loop["wall_s"], 3),
                  test_wall_s=round(time.perf_counter() - t0, 3))
    mdr_io.write_json(out / "test.json", result)
    return result


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_PATIENCE",
    "FULL_RANK_MAX_PAIRS",
    "KINDS",
    "DeepCTRBaseline",
    "assemble_input",
    "build_network",
    "compact_history",
    "feature_columns",
    "full_ranking",
    "run_deepctr",
]


# --------------------------------------------------------------------------- config as data


@dataclass(frozen=True)
class DeepCTRConfig:
    """Hyperparameters of one deepctr-torch run (YAML: ``benchmarks/configs/deepctr.yaml``)."""

    epochs: int = DEFAULT_EPOCHS
    patience: int = DEFAULT_PATIENCE
    batch_size: int = DEFAULT_BATCH_SIZE
    max_hist: int = 20
    n_neg: int = 1
    embedding_dim: int = DEFAULT_EMBEDDING_DIM
    dnn_hidden: tuple[int, ...] = DEFAULT_DNN_HIDDEN
    lr: float = DEFAULT_LR
    l2: float = 0.0
    max_steps_per_epoch: int | None = None
    num_threads: int | None = 1
    device: str = "cpu"
    full_ranking_metrics: bool | None = None  # None: when users x items is small enough
    full_rank_users: int | None = None


# the project's dotted override keys (``train.epochs``...) that mean something here
_OVERRIDE_KEYS = {"train.epochs": "epochs", "train.patience": "patience",
                  "train.batch_size": "batch_size", "train.max_hist": "max_hist",
                  "train.n_train_neg": "n_neg", "train.lr": "lr",
                  "train.max_steps_per_epoch": "max_steps_per_epoch",
                  "train.num_threads": "num_threads", "train.device": "device",
                  "train.full_ranking": "full_ranking_metrics",
                  "train.full_rank_users": "full_rank_users"}


def load_deepctr_config(path: str | Path | None, kind: str,
                        overrides: Mapping[str, Any] | None = None) -> DeepCTRConfig:
    """``common:`` merged with the ``<kind>:`` section of a YAML file, then overrides.

    Overrides use the trainer's dotted keys (``train.epochs``) or this config's own
    names; ``seed`` and ``model.name`` are handled by the caller and ignored here.
    """
    from mdr.config import ConfigError, from_dict, load_yaml

    if kind not in KINDS:
        raise ConfigError(f"unknown deepctr model {kind!r}; known: {list(KINDS)}")
    data = load_yaml(path) if path is not None else {}
    merged = {**(data.get("common") or {}), **(data.get(kind) or {})}
    for key, value in (overrides or {}).items():
        if key in ("seed", "model.name"):
            continue
        name = _OVERRIDE_KEYS.get(key, key)
        if name not in {f.name for f in fields(DeepCTRConfig)}:
            raise ConfigError(f"override {key!r} does not apply to the deepctr baselines")
        merged[name] = value
    return from_dict(DeepCTRConfig, merged, where=f"{path or 'deepctr config'}[{kind}]")
