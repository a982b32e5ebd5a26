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
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise _InvalidValues(f"need {'; '.join(bad)}")


class _InvalidValues(ConfigError):
    """Values of the right types that break a rule of their dataclass."""


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
    use_id_embedding: bool = False  # off reproduces the paper
    id_dim: int = 16
    image_channels: tuple[int, ...] = (32, 32, 64, 64)
    text_hidden: int = 32  # width of each attribute extractor AE_j (Eq. 3)
    n_aspects: int = 15  # text attributes = rows of D (Eq. 14); Figure 5 shows 15
    # Eq. 14 as printed: p_j = fc_j(r_j) per text slot ("per_slot"), or one fc from all
    # text-related columns of r to every p_j ("dense", an ablation)
    aspect_decoder: Literal["per_slot", "dense"] = "per_slot"
    max_text_len: int = 64
    att_hidden: tuple[int, ...] = (36,)  # DIN attention MLP (Eq. 18)
    mlp_hidden: tuple[int, ...] = (80, 40)  # DIN prediction MLP (Eq. 20)
    unique_item_encoding: bool = True  # encode each unique item of a batch once
    # in training, send at most this many of a batch's unique items through the image
    # encoder (with gradients); the others read the cache of their latest encoding
    # (mdr.models.mdr: MDRRecommender._encode_images). None: every item, every step
    image_grad_items: int | None = None
    # the DIN head reads the posterior mean f (as at evaluation); True feeds it the
    # training-time sample s ~ N(f, exp(lambda)) that the decoders reconstruct from
    recommend_from_sample: bool = False
    weak_supervision: bool = True  # Eq. 12-13 classifiers on labelled slots


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
        _check({
            **{f"{w} a finite number >= 0 (got {getattr(self, w)})":
               math.isfinite(getattr(self, w)) and getattr(self, w) >= 0 for w in weights},
            f"n_text_neg >= 1 (got {self.n_text_neg})": self.n_text_neg >= 1,
            f"max_recon_items null or >= 1 (got {self.max_recon_items})":
                self.max_recon_items is None or self.max_recon_items >= 1,
        })


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
        _check({
            f"epochs >= 1 (got {self.epochs})": self.epochs >= 1,
            f"batch_size >= 1 (got {self.batch_size})": self.batch_size >= 1,
            f"lr a positive number (got {self.lr})": math.isfinite(self.lr) and self.lr > 0,
            f"weight_decay >= 0 (got {self.weight_decay})": self.weight_decay >= 0,
            f"grad_clip null or > 0 (got {self.grad_clip})":
                self.grad_clip is None or self.grad_clip > 0,
            f"patience >= 0 (got {self.patience})": self.patience >= 0,
            f"max_hist >= 1 (got {self.max_hist})": self.max_hist >= 1,
            f"n_train_neg >= 1 (got {self.n_train_neg})": self.n_train_neg >= 1,
            f"eval_batch_size >= 1 (got {self.eval_batch_size})": self.eval_batch_size >= 1,
            f"device cpu, cuda, cuda:N or auto (got {self.device!r})":
                bool(_DEVICE.match(self.device)),
            f"max_steps_per_epoch null or >= 1 (got {self.max_steps_per_epoch})":
                self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
            f"full_rank_users null or >= 1 (got {self.full_rank_users})":
                self.full_rank_users is None or self.full_rank_users >= 1,
            f"num_threads null or >= 1 (got {self.num_threads})":
                self.num_threads is None or self.num_threads >= 1,
            f"0 < valid_fraction < 1 (got {self.valid_fraction})":
                0.0 < self.valid_fraction < 1.0,
            f"pretrain_epochs >= 0 (got {self.pretrain_epochs})": self.pretrain_epochs >= 0,
            f"pretrain_batch_size >= 1 (got {self.pretrain_batch_size})":
                self.pretrain_batch_size >= 1,
        })


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
        _check({
            f"{MIN_IMAGE_SIZE} <= image_size <= {MAX_IMAGE_SIZE}":
                MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE,
            "n_neg >= 1": self.n_neg >= 1,
            "seed >= 0": self.seed >= 0,
            "k_core >= 3 (each user needs train, valid and test behaviours)": self.k_core >= 3,
            "max_text_len >= 1": self.max_text_len >= 1,
            "w2v_dim >= 1": self.w2v_dim >= 1,
            "w2v_min_count >= 1": self.w2v_min_count >= 1,
            "w2v_epochs null or >= 1": self.w2v_epochs is None or self.w2v_epochs >= 1,
            "w2v_sg in (0, 1)": self.w2v_sg in (0, 1),
            "0 <= label_fraction <= 1": 0.0 <= self.label_fraction <= 1.0,
        })


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
        _check({
            f"{MIN_PHOTO_SIZE} <= image_size <= {MAX_IMAGE_SIZE} (got {self.image_size})":
                MIN_PHOTO_SIZE <= self.image_size <= MAX_IMAGE_SIZE,
            f"min_count >= 1 (got {self.min_count})": self.min_count >= 1,
            f"0 <= label_fraction <= 1 (got {self.label_fraction})":
                0.0 <= self.label_fraction <= 1.0,
            f"seed >= 0 (got {self.seed})": self.seed >= 0,
            f"limit null or >= 1 (got {self.limit})": self.limit is None or self.limit >= 1,
        })


# --------------------------------------------------------------------------- (de)serialisation


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
        raise ConfigError(f"{where}: {value!r} matches none of {args}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
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

    Overrides go through the same validation as YAML files.
    """
    data = to_dict(cfg)
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise ConfigError(f"override {key!r}: no section {p!r}")
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise ConfigError(f"override {key!r}: unknown key {parts[-1]!r}")
        node[parts[-1]] = value
    return from_dict(type(cfg), data)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is a number, not the string
    that YAML 1.1 (PyYAML's default) makes of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_value(text: str) -> Any:
    """A scalar or list as written on a command line (``--set key=VALUE``), read as YAML."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{text!r}: not a YAML value ({e})") from e


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


VARIANT_SECTIONS = ("baselines", "ablations")
# top-level sections of a config file that are not part of the run config itself
_NOT_RUN_CONFIG = (*VARIANT_SECTIONS, "description", "provenance", "prepare")


def load_run_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
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


def variant_names(path: str | Path) -> dict[str, list[str]]:
    """Section -> names of the named override sets a config file defines."""
    data = load_yaml(path)
    return {s: list(data.get(s) or {}) for s in VARIANT_SECTIONS}


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
