"""The one place that maps model names to builders (shared by the trainer, CLI and benchmarks).

A builder takes the resolved :class:`~mdr.config.RunConfig` and the
:class:`~mdr.models.base.ItemFeatures` and returns an ``nn.Module``. Every model
also names the TASK it trains on (:mod:`mdr.training.tasks`): ``"recommendation"`` (users'
histories and stored evaluation lists; the model implements
:class:`~mdr.models.base.RecModel`) or ``"images"`` (an image corpus without users:
the image side trained alone).

Where the names come from:

- registered here: ``mdr``, and the representation baselines ``beta_vae`` (image only),
  ``abae`` (text only), ``din_pp`` (their concatenation) and ``din`` (id embeddings),
  which are the same network with another config (``benchmarks/configs/``; their
  names let a config's ``model.name`` say which one it is); ``image_factors``, the
  image side alone;
- the ``mdr.models`` entry points of installed packages (``pyproject.toml``): the
  CTR baselines ``wide_deep``, ``pnn``, ``deepfm`` of :mod:`baselines.deepctr_models`,
  and any model a user's own package declares the same way. The registry never
  imports the package that declares them until one of its models is built.

Concrete model modules are imported lazily, inside the builder, so importing the
registry (and the trainer) never imports a model. More models are added with
:func:`register` or an entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Literal

from torch import nn

from mdr.config import ConfigError, RunConfig
from mdr.models.base import ItemFeatures

Builder = Callable[[RunConfig, ItemFeatures], nn.Module]
Task = Literal["recommendation", "images"]
ENTRY_POINTS = "mdr.models"


@dataclass(frozen=True)
class Entry:
    builder: Builder
    task: Task


_REGISTRY: dict[str, Entry] = {}


class UnknownModelError(ConfigError):
    """A model name that nothing is registered under (a config error: exit status 2)."""


def register(
    name: str, builder: Builder, *, task: Task = "recommendation", replace: bool = False
) -> None:
    """Register ``builder`` under ``name``; re-registering needs ``replace=True``."""
    from mdr.argtypes import name_problem

    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"model name {problem}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"model {name!r} is already registered (pass replace=True)")
    _REGISTRY[name] = Entry(builder, task)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS)}


def known_models() -> list[str]:
    """The registered model names (here and by entry points), sorted."""
    return sorted({*_REGISTRY, *_entry_points()})


def entry(name: str) -> Entry:
    """The builder and task of model ``name``; loads an entry point on first use."""
    if name not in _REGISTRY:
        ep = _entry_points().get(name)
        if ep is None:
            raise UnknownModelError(
                f"unknown model {name!r}; known models: {', '.join(known_models())}"
            )
        builder = ep.load()
        register(name, builder, task=getattr(builder, "task", "recommendation"))
    return _REGISTRY[name]


def get_builder(name: str) -> Builder:
    return entry(name).builder


def task_of(name: str) -> Task:
    """What model ``name`` trains on: ``"recommendation"`` or ``"images"``."""
    return entry(name).task


def build_model(name: str | None, cfg: RunConfig, features: ItemFeatures) -> nn.Module:
    """Build the model registered as ``name`` (default: ``cfg.model.name``)."""
    return get_builder(name or cfg.model.name)(cfg, features)


def _build_mdr(cfg: RunConfig, features: ItemFeatures) -> nn.Module:
    from mdr.models.mdr import MDRRecommender

    return MDRRecommender(cfg.model, cfg.loss, features, cfg.seed)


def _build_image_factors(cfg: RunConfig, features: ItemFeatures) -> nn.Module:
    from mdr.models.image_factors import ImageFactorModel

    return ImageFactorModel(cfg, features)


for _name in ("mdr", "beta_vae", "abae", "din_pp", "din"):
    register(_name, _build_mdr)
register("image_factors", _build_image_factors, task="images")

__all__ = [
    "ENTRY_POINTS",
    "Builder",
    "Entry",
    "Task",
    "UnknownModelError",
    "build_model",
    "entry",
    "get_builder",
    "known_models",
    "register",
    "task_of",
]
