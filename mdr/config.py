"""Config is data: frozen dataclasses, loaded from YAML, hashed into run ids.

Every run is described by one :class:`RunConfig`. It is built from a YAML file
(``benchmarks/configs/*.yaml``), optionally with dotted overrides
(``{"loss.eta": 0.0}``: this is how ablations are expressed), and resolved
into a plain dict that is written beside every result.

Unknown keys are an error (a typo in a config must never be silently ignored),
and :func:`config_hash` is stable across Python sessions and key order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")

SlotKind = Literal["visual_dominant", "text_dominant", "visual_only", "text_only"]


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


def _check(checks: Mapping[str, bool]) -> None:
    """Raise one :class:`ConfigError` naming every failed check (``"epochs >= 1"`` ...);
    :func:`from_dict` puts the section (and file) in front."""
    bad = [k if len(k) <= 200 else k[:200] + "...)" for k, ok in checks.items() if not ok]
    if bad:
        raise _InvalidValues(f"need {'; '.join(bad)}")


class _InvalidValues(ConfigError):
    """Values of the right types that break a rule of their dataclass."""


# Documented maxima of the size settings: far above any sensible value, low enough that a
# typo cannot allocate tens of GB before anything checks it.
MAX_WIDTH = 4096  # any layer, slot or embedding width
MAX_LAYERS = 16  # hidden layers of an MLP, conv layers of the image branch
MAX_BATCH = 1_000_000  # rows of a training or evaluation batch
MAX_HISTORY = 1000  # history items a sample reads
MAX_NEGATIVES = 1000  # sampled negatives per positive, negative sentences per item
MAX_EPOCHS = 100_000


def _in(value: int | None, low: int, high: int) -> bool:
    return value is None or low <= value <= high


def _widths(values: tuple[int, ...], low: int = 1) -> bool:
    return len(values) <= MAX_LAYERS and all(low <= v <= MAX_WIDTH for v in values)


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class SlotConfig:
    """One named, explainable attribute slot of the fused representation (Algorithm 1).

    ``kind`` decides the fusion rule; ``dim`` is the slot's width in the image
    factors ``s`` and/or the text factors ``z``; ``label`` names the weak label
    (a key of the prepared dataset's ``labels.npz``) that supervises the slot's
    image dimensions (Eq. 12-13), or ``None`` for an unsupervised slot.
    """

    name: str
    kind: SlotKind
    dim: int = 4
    label: str | None = None

    def __post_init__(self) -> None:
        _check(
            {
                f"slot dim from 1 to {MAX_WIDTH} (got {self.dim})": _in(self.dim, 1, MAX_WIDTH),
                "slot name a non-empty word": bool(self.name) and len(self.name) <= 64,
            }
        )


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. ``name`` is looked up in :mod:`mdr.training.registry`."""

    name: str = "mdr"
    slots: tuple[SlotConfig, ...] = (
        SlotConfig("colour", "visual_dominant", 4, "colour"),
        SlotConfig("size", "text_dominant", 4, None),
        SlotConfig("shape", "visual_only", 4, "shape"),
        SlotConfig("material", "text_only", 4, None),
    )
    image_blackbox_dim: int = 8  # s_blackbox width
    text_blackbox_dim: int = 8  # z_blackbox width
    blackbox_out_dim: int = 8  # r_blackbox width
    fusion: Literal["algorithm1", "concat"] = "algorithm1"
    alpha: float = 0.5  # Algorithm 1, lines 3-4
    use_image: bool = True
    use_text: bool = True
    # the sparse features the CTR baselines read: an item-id and a category embedding in
    # every item's representation and a user-id embedding in the prediction MLP (Eq. 20).
    # Off reproduces the paper's representation models; the tuner may switch it on
    use_id_embedding: bool = False
    id_dim: int = 16  # width of each id embedding (and the CTR baselines' embeddings)
    image_channels: tuple[int, ...] = (32, 32, 64, 64)
    text_hidden: int = 32  # width of each attribute extractor AE_j (Eq. 3)
    n_aspects: int = 15  # text attributes = rows of D (Eq. 14); Figure 5 shows 15
    # Eq. 14 as printed: p_j = fc_j(r_j) per text slot ("per_slot"), or one fc from all
    # text-related columns of r to every p_j ("dense", an ablation)
    aspect_decoder: Literal["per_slot", "dense"] = "per_slot"
    max_text_len: int = 64
    att_hidden: tuple[int, ...] = (36,)  # DIN attention MLP (Eq. 18)
    mlp_hidden: tuple[int, ...] = (80, 40)  # DIN prediction MLP (Eq. 20)
    dropout: float = 0.0  # after each hidden layer of the prediction MLP (and the CTR DNNs)
    unique_item_encoding: bool = True  # encode each unique item of a batch once
    # in training, send at most this many of a batch's unique items through the image
    # encoder (with gradients); the others read the cache of their latest encoding
    # (mdr.models.mdr: MDRRecommender._encode_images). None: every item, every step
    image_grad_items: int | None = None
    # the DIN head reads the posterior mean f (as at evaluation); True feeds it the
    # training-time sample s ~ N(f, exp(lambda)) that the decoders reconstruct from
    recommend_from_sample: bool = False
    weak_supervision: bool = True  # Eq. 12-13 classifiers on labelled slots

    def __post_init__(self) -> None:
        w = MAX_WIDTH
        _check(
            {
                f"image_blackbox_dim, text_blackbox_dim, blackbox_out_dim from 0 to {w}": all(
                    _in(getattr(self, k), 0, w)
                    for k in ("image_blackbox_dim", "text_blackbox_dim", "blackbox_out_dim")
                ),
                f"id_dim and text_hidden from 1 to {w} (got {self.id_dim}, {self.text_hidden})": _in(
                    self.id_dim, 1, w
                )
                and _in(self.text_hidden, 1, w),
                f"image_channels: 1 to {MAX_LAYERS} widths from 1 to {w} (got "
                f"{list(self.image_channels)})": bool(self.image_channels)
                and _widths(self.image_channels),
                f"att_hidden: 1 to {MAX_LAYERS} widths from 1 to {w}": bool(self.att_hidden)
                and _widths(self.att_hidden),
                f"mlp_hidden: at most {MAX_LAYERS} widths from 1 to {w}": _widths(self.mlp_hidden),
                f"n_aspects from 1 to {w} (got {self.n_aspects})": _in(self.n_aspects, 1, w),
                f"max_text_len from 1 to {w} (got {self.max_text_len})": _in(
                    self.max_text_len, 1, w
                ),
                f"0 <= alpha <= 1 (got {self.alpha})": 0.0 <= self.alpha <= 1.0,
                f"0 <= dropout < 1 (got {self.dropout})": 0.0 <= self.dropout < 1.0,
                f"image_grad_items null or from 1 to {MAX_BATCH} (got {self.image_grad_items})": _in(
                    self.image_grad_items, 1, MAX_BATCH
                ),
                "at most 64 slots": len(self.slots) <= 64,
            }
        )


@dataclass(frozen=True)
class LossConfig:
    """Weights of the joint objective, Eq. 22."""

    gamma: float = 1.0  # prediction loss (Eq. 21)
    beta: float = 1.0  # KL weight inside loss_visual (Eq. 11)
    eta: float = 1e-3  # information constraint (Eq. 4)
    mu: float = 1.0  # weak supervision (Eq. 13)
    visual: float = 1.0  # weight of loss_visual (1 in the paper)
    text: float = 1.0  # weight of loss_text (1 in the paper)
    n_text_neg: int = 5  # g in Eq. 15
    ortho: float = 1.0  # weight of ||D D^T - I|| inside loss_text (1 in the paper)
    # decode at most this many of a batch's unique items for loss_rec (None: all); a random
    # subset is an unbiased estimate of the same average and spares the decoder
    max_recon_items: int | None = None

    def __post_init__(self) -> None:
        weights = ("gamma", "beta", "eta", "mu", "visual", "text", "ortho")
        _check(
            {
                **{
                    f"{w} a finite number >= 0 (got {getattr(self, w)})": math.isfinite(
                        getattr(self, w)
                    )
                    and getattr(self, w) >= 0
                    for w in weights
                },
                f"n_text_neg from 1 to {MAX_NEGATIVES} (got {self.n_text_neg})": _in(
                    self.n_text_neg, 1, MAX_NEGATIVES
                ),
                f"max_recon_items null or from 1 to {MAX_BATCH} (got {self.max_recon_items})": _in(
                    self.max_recon_items, 1, MAX_BATCH
                ),
            }
        )


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global L2 norm of the gradients (None: no clipping)
    patience: int = 3  # early stopping on the validation metric (0: never stop early)
    max_hist: int = 20
    n_train_neg: int = 1  # negatives per positive, resampled each epoch
    eval_batch_size: int = 512
    device: str = "cpu"  # cpu, cuda, cuda:N, or auto (CUDA when present, else the CPU)
    amp: bool = False  # bf16 autocast on CUDA
    max_steps_per_epoch: int | None = None  # for smoke runs
    full_ranking: bool = True  # test.json: NDCG@10/HR@10 ranking all items, beside the lists
    # full ranking of a fixed random subset of this many users (None: all users); the same
    # subset for every model of a dataset (seeded), so full-ranking numbers stay comparable
    full_rank_users: int | None = None
    num_threads: int | None = None
    # image corpora without users (the image side trained alone): the seeded share of the
    # photos held out for validation; recommendation data is split by time instead
    valid_fraction: float = 0.1
    # item-level pretraining (epoch 0): passes over the catalogue in batches of items that
    # minimise Eq. 22's item losses alone (image, text, weak labels), before the joint
    # training; models without item losses (the CTR baselines, DIN on ids) skip it
    pretrain_epochs: int = 0
    pretrain_batch_size: int = 256

    def __post_init__(self) -> None:
        _check(
            {
                f"epochs from 1 to {MAX_EPOCHS} (got {self.epochs})": _in(
                    self.epochs, 1, MAX_EPOCHS
                ),
                f"batch_size from 1 to {MAX_BATCH} (got {self.batch_size})": _in(
                    self.batch_size, 1, MAX_BATCH
                ),
                f"lr a positive finite number (got {self.lr})": math.isfinite(self.lr)
                and self.lr > 0,
                f"weight_decay a finite number >= 0 (got {self.weight_decay})": math.isfinite(
                    self.weight_decay
                )
                and self.weight_decay >= 0,
                f"grad_clip null or a finite number > 0 (got {self.grad_clip})": self.grad_clip
                is None
                or (math.isfinite(self.grad_clip) and self.grad_clip > 0),
                f"patience from 0 to {MAX_EPOCHS} (got {self.patience})": _in(
                    self.patience, 0, MAX_EPOCHS
                ),
                f"max_hist from 1 to {MAX_HISTORY} (got {self.max_hist})": _in(
                    self.max_hist, 1, MAX_HISTORY
                ),
                f"n_train_neg from 1 to {MAX_NEGATIVES} (got {self.n_train_neg})": _in(
                    self.n_train_neg, 1, MAX_NEGATIVES
                ),
                f"eval_batch_size from 1 to {MAX_BATCH} (got {self.eval_batch_size})": _in(
                    self.eval_batch_size, 1, MAX_BATCH
                ),
                f"device cpu, cuda, cuda:N or auto (got {self.device!r})": bool(
                    _DEVICE.match(self.device)
                ),
                f"max_steps_per_epoch null or >= 1 (got {self.max_steps_per_epoch})": self.max_steps_per_epoch
                is None
                or self.max_steps_per_epoch >= 1,
                f"full_rank_users null or >= 1 (got {self.full_rank_users})": self.full_rank_users
                is None
                or self.full_rank_users >= 1,
                f"num_threads null or from 1 to 1024 (got {self.num_threads})": _in(
                    self.num_threads, 1, 1024
                ),
                f"0 < valid_fraction < 1 (got {self.valid_fraction})": 0.0
                < self.valid_fraction
                < 1.0,
                f"pretrain_epochs >= 0 (got {self.pretrain_epochs})": self.pretrain_epochs >= 0,
                f"pretrain_epochs at most {MAX_EPOCHS}": self.pretrain_epochs <= MAX_EPOCHS,
                f"pretrain_batch_size from 1 to {MAX_BATCH} (got {self.pretrain_batch_size})": _in(
                    self.pretrain_batch_size, 1, MAX_BATCH
                ),
            }
        )


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        _check({f"seed >= 0 (got {self.seed})": self.seed >= 0})


# --------------------------------------------------------------------------- data preparation

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 4, 512  # pixels per side of a prepared image
MIN_PHOTO_SIZE = 8  # the photo corpora's floor


@dataclass(frozen=True)
class PrepareConfig:
    """How an Amazon-format dataset is prepared (:func:`mdr.data.preprocess.prepare`):
    everything that decides the prepared files, stored in their manifest.

    word2vec: ABAE used ``w2v_dim=200`` and ``w2v_min_count=10``; the defaults
    here (64, 5) suit the embedded shop on a laptop; real data is prepared with 200 and
    10 (:func:`mdr.data.catalog.real_prepare_config`). ``w2v_workers=1`` keeps the
    vectors reproducible (more threads are faster but not deterministic). ``w2v_sg=0`` is
    CBOW (gensim's and ABAE's default). ``w2v_epochs=None`` passes over the training
    reviews until word2vec has read about 4 M tokens (5 to 50 passes,
    :func:`mdr.data.preprocess.w2v_epochs`): gensim's 5 suit corpora of millions of
    words, and a small catalogue's reviews need more (measured on the
    Magazine_Subscriptions files, 90k tokens: MDR's test GAUC 0.53 with 5 passes, 0.68
    with 50). ``image_workers`` only changes speed, never the output.
    """

    image_size: int = 64
    n_neg: int = 100
    seed: int = 0
    k_core: int = 5
    max_text_len: int = 64  # tokens per item
    min_token_len: int = 2
    w2v_dim: int = 64
    w2v_window: int = 5
    w2v_min_count: int = 5
    w2v_epochs: int | None = None
    w2v_workers: int = 1
    w2v_sg: int = 0
    label_fraction: float = 0.1
    shape_top_k: int = 15
    image_workers: int = 2

    def __post_init__(self) -> None:
        _check(
            {
                f"{MIN_IMAGE_SIZE} <= image_size <= {MAX_IMAGE_SIZE}": MIN_IMAGE_SIZE
                <= self.image_size
                <= MAX_IMAGE_SIZE,
                "n_neg >= 1": self.n_neg >= 1,
                "seed >= 0": self.seed >= 0,
                "k_core >= 3 (each user needs train, valid and test behaviours)": self.k_core >= 3,
                "max_text_len >= 1": self.max_text_len >= 1,
                "w2v_dim >= 1": self.w2v_dim >= 1,
                "w2v_min_count >= 1": self.w2v_min_count >= 1,
                "w2v_epochs null or >= 1": self.w2v_epochs is None or self.w2v_epochs >= 1,
                "w2v_sg in (0, 1)": self.w2v_sg in (0, 1),
                "0 <= label_fraction <= 1": 0.0 <= self.label_fraction <= 1.0,
            }
        )


@dataclass(frozen=True)
class PhotoCorpusConfig:
    """How a photo corpus without users is prepared (:func:`mdr.data.fashion.
    prepare_fashion`): image size, the class-frequency floor below which colours and
    article types become ``other`` (or are dropped: ``rare``), the weak-label budget, the
    seed of the labelled fraction, and ``limit`` (the first N photographed rows only)."""

    image_size: int = 64
    min_count: int = 50
    label_fraction: float = 0.1
    seed: int = 0
    limit: int | None = None
    rare: Literal["other", "drop"] = "other"

    def __post_init__(self) -> None:
        _check(
            {
                f"{MIN_PHOTO_SIZE} <= image_size <= {MAX_IMAGE_SIZE} (got {self.image_size})": MIN_PHOTO_SIZE
                <= self.image_size
                <= MAX_IMAGE_SIZE,
                f"min_count >= 1 (got {self.min_count})": self.min_count >= 1,
                f"0 <= label_fraction <= 1 (got {self.label_fraction})": 0.0
                <= self.label_fraction
                <= 1.0,
                f"seed >= 0 (got {self.seed})": self.seed >= 0,
                f"limit null or >= 1 (got {self.limit})": self.limit is None or self.limit >= 1,
            }
        )


# --------------------------------------------------------------------------- tuning


@dataclass(frozen=True)
class SearchParam:
    """One dimension of a model's search space (the ``search:`` section of a config file).

    Either a range, ``{low, high}`` (integers when both bounds are integers; ``log: true``
    samples on a log scale), or ``{choices: [...]}``.
    """

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        ranged = self.low is not None and self.high is not None
        _check(
            {
                "either low and high, or choices": ranged != (self.choices is not None),
                "low < high": not ranged or self.low < self.high,  # type: ignore[operator]
                "low > 0 with log": not self.log or (ranged and self.low > 0),  # type: ignore[operator]
                "at least one choice": self.choices is None or len(self.choices) >= 1,
            }
        )

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(
            isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)
        )


@dataclass(frozen=True)
class TuningConfig:
    """The tuned protocol of a config file (its ``tuning:`` section): how many trials
    every model gets, the one seed the trials train with, the seeds of the tuned tables
    (never the tuning seed), the settings fixed for every trial and tuned run, and whether
    the tuned tables' runs flush subnormal floats (``mdr train --flush-denormals``)."""

    trials: int = 16
    seed: int = 0
    table_seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    fixed: dict[str, Any] = field(default_factory=dict)
    flush_denormals: bool = False

    def __post_init__(self) -> None:
        _check(
            {
                f"trials >= 1 (got {self.trials})": self.trials >= 1,
                f"seed >= 0 (got {self.seed})": self.seed >= 0,
                "table_seeds: at least one, none negative, none the tuning seed": bool(
                    self.table_seeds
                )
                and all(0 <= x != self.seed for x in self.table_seeds),
                "table_seeds distinct": len(set(self.table_seeds)) == len(self.table_seeds),
            }
        )


def load_tuning(path: str | Path) -> TuningConfig:
    """The ``tuning:`` section of a config file (defaults when it has none)."""
    section = load_yaml(path).get("tuning") or {}
    return from_dict(TuningConfig, section, where=f"{path}: tuning")


def search_space(path: str | Path, model: str) -> dict[str, SearchParam]:
    """Model ``model``'s search space in the config file ``path``: the ``search:`` section's
    ``all`` entries, then the model's own (a model may drop a shared key by giving it
    ``null``). Every key must be a valid override of the model's config."""
    section = load_yaml(path).get("search") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: search: expected a mapping of model names")
    unknown = sorted(set(section) - {"all", *_variant_names(path)})
    if unknown:
        raise ConfigError(f"{path}: search: no model named {unknown}")
    merged: dict[str, Any] = {}
    for part in ("all", model):
        entries = section.get(part) or {}
        if not isinstance(entries, Mapping):
            raise ConfigError(f"{path}: search.{part}: expected a mapping of config keys")
        merged.update(entries)
    space = {
        key: from_dict(SearchParam, spec, where=f"{path}: search.{key}")
        for key, spec in merged.items()
        if spec is not None
    }
    base = load_run_config(path, model=model)
    for key, p in space.items():  # every key must be a key of the config
        apply_overrides(base, {key: p.low if p.choices is None else p.choices[0]})
    return space


# --------------------------------------------------------------------------- (de)serialisation


def _short(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error message never repeats an
    arbitrarily large value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` (recursively)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {_short(value)} matches none of {args}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {_short(value)} is not one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_short(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_short(value)}")
        return dict(value)
    if is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {_short(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {_short(value)}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_short(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {_short(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_short(value)}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys raise :class:`ConfigError`."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, _InvalidValues) as e:
        raise ConfigError(f"{where}: {e}") from e


def to_dict(obj: Any) -> Any:
    """A plain, YAML/JSON-able view of a (nested) dataclass; tuples become lists."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def config_hash(obj: Any, length: int = 12) -> str:
    """Stable short hash of a config (dataclass or plain data)."""
    blob = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def apply_overrides(cfg: T, overrides: Mapping[str, Any]) -> T:
    """Return ``cfg`` with dotted-key overrides applied, e.g. ``{"loss.eta": 0}``.

    ``*`` stands for every element of a list: ``{"model.slots.*.dim": 8}`` widens every
    slot. Overrides go through the same validation as YAML files.
    """
    data = to_dict(cfg)
    for key, value in overrides.items():
        _set_dotted(data, key, key.split("."), value)
    return from_dict(type(cfg), data)


def _set_dotted(node: Any, key: str, parts: list[str], value: Any) -> None:
    head, rest = parts[0], parts[1:]
    if head == "*":
        if not isinstance(node, list) or not node or not rest:
            raise ConfigError(
                f"override {key!r}: '*' must stand for the elements of a "
                "non-empty list, followed by a key"
            )
        for element in node:
            _set_dotted(element, key, rest, value)
        return
    if not isinstance(node, dict) or head not in node:
        what = "unknown key" if not rest else "no section"
        raise ConfigError(f"override {key!r}: {what} {head!r}")
    if rest:
        _set_dotted(node[head], key, rest, value)
    else:
        node[head] = value


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats (``1e-3`` is a number, not the string that
    YAML 1.1, PyYAML's default, makes of it) that refuses a key given twice in a mapping
    (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                line = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key (a list or a mapping)
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark
                ) from None
            if line != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {_short(key, 60)} given twice (first on line {line})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


MAX_CONFIG_BYTES = 1_000_000  # a config file is a few KB; anything this large is not one


def _yaml(text: str, where: str) -> Any:
    """``text`` read with :class:`_Loader`; every failure one ConfigError naming ``where``."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {_one_line(e)}") from None
    except (ValueError, RecursionError, OverflowError) as e:  # e.g. a 5,000-digit integer
        raise ConfigError(
            f"{where}: a value YAML cannot read ({type(e).__name__}: {_one_line(e)})"
        ) from None


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."


def parse_value(text: str) -> Any:
    """A scalar or list as written on a command line (``--set key=VALUE``), read as YAML."""
    return _yaml(text, _short(text, 60))


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {path.stat().st_size} bytes: not a config file (at "
                f"most {MAX_CONFIG_BYTES})"
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from e
    data = _yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


VARIANT_SECTIONS = ("baselines", "ablations")
# top-level sections of a config file that are not part of the run config itself
_NOT_RUN_CONFIG = (*VARIANT_SECTIONS, "description", "provenance", "prepare", "search", "tuning")


def load_run_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    model: str | None = None,
) -> RunConfig:
    """Load a :class:`RunConfig` from YAML (or defaults), select ``model`` and apply overrides.

    ``model`` names a baseline or an ablation of the file, or any registered model
    (:func:`model_overrides`); ``overrides`` (dotted keys) come last. A YAML file may
    hold ``baselines:`` and ``ablations:`` sections (named override sets), a
    ``description`` and a ``prepare:`` section (how its data is made); they are not part
    of the run config itself.
    """
    data = load_yaml(path) if path is not None else {}
    for key in _NOT_RUN_CONFIG:
        data.pop(key, None)
    cfg = from_dict(RunConfig, data, where=str(path) if path else "config")
    chosen = model_overrides(path, model) if model else {}
    return apply_overrides(cfg, {**chosen, **(overrides or {})})


def load_prepare_config(path: str | Path, cls: type[T], **overrides: Any) -> T:
    """The ``prepare:`` section of a config file as ``cls`` (:class:`PrepareConfig` or
    :class:`PhotoCorpusConfig`), validated like the run config; ``overrides`` (fields set
    on the command line) come last. A file without the section gives the defaults."""
    section = load_yaml(path).get("prepare") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: prepare: expected a mapping")
    return from_dict(cls, {**section, **overrides}, where=f"{path}: prepare")


def _variant_names(path: str | Path) -> list[str]:
    """Every model name a config file can train: ``mdr`` and its baselines and ablations."""
    return ["mdr", *(n for names in variant_names(path).values() for n in names)]


def variant_names(path: str | Path) -> dict[str, list[str]]:
    """Section -> names of the named override sets a config file defines (each a name that
    can be part of a run folder's name)."""
    from mdr.argtypes import name_problem

    data = load_yaml(path)
    out = {}
    for section in VARIANT_SECTIONS:
        table = data.get(section) or {}
        if not isinstance(table, Mapping):
            raise ConfigError(f"{path}: {section}: expected a mapping of names to overrides")
        for name in table:
            problem = name_problem(name)
            if problem is not None:
                raise ConfigError(f"{path}: {section}: {problem}")
        out[section] = list(table)
    return out


def variant_overrides(path: str | Path, name: str) -> dict[str, Any]:
    """The named override set ``name`` (a baseline or an ablation) of a config file.

    ``mdr`` itself is the empty override set. A new ablation is a few lines of
    YAML: ``ablations: {my_ablation: {loss.eta: 0.0}}``.
    """
    if name == "mdr":
        return {}
    data = load_yaml(path)
    for section in VARIANT_SECTIONS:
        table = data.get(section) or {}
        if name in table:
            return dict(table[name] or {})
    known = ["mdr"] + [n for s in VARIANT_SECTIONS for n in (data.get(s) or {})]
    raise ConfigError(f"{path}: no variant named {name!r}; known: {known}")


def model_overrides(path: str | Path | None, name: str) -> dict[str, Any]:
    """What makes a config train the model called ``name``: the one place names resolve.

    A baseline or ablation defined in the file ``path`` gives its named override set
    (a baseline brings its ``model.name``; an ablation keeps the file's, e.g. ``mdr``);
    any other name is taken as a registered model, ``{"model.name": name}``, which the
    registry checks when the model is built. The CLI (``mdr train --model``) and the
    table scripts both resolve names here.
    """
    if path is not None and name != "mdr":
        known = {n for names in variant_names(path).values() for n in names}
        if name in known:
            return variant_overrides(path, name)
    return {"model.name": name}


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(to_dict(data), sort_keys=False)


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` re-exported for callers that build configs in code."""
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
