"""The one place that maps model names to builders (shared by the trainer, CLI and baselines).

A builder takes the resolved :class:`~mdr.config.RunConfig` and the
:class:`~mdr.models.base.ItemFeatures` and returns an ``nn.Module`` that
implements :class:`~mdr.models.base.RecModel`. Concrete model modules are
imported lazily, inside the builder, so importing the registry (and the
trainer) never imports a model.

The representation baselines ``beta_vae`` (image only), ``abae`` (text only),
``din_pp`` (their concatenation) and ``din`` (id embeddings) are the same
network as ``mdr`` with a different config (see ``benchmarks/configs/``);
their names are registered here so that a config's ``model.name`` says which
one it is. More models are added with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mdr.config import ConfigError, RunConfig
from mdr.models.base import ItemFeatures

Builder = Callable[[RunConfig, ItemFeatures], nn.Module]

_REGISTRY: dict[str, Builder] = {}


class UnknownModelError(ConfigError):
    """A model name that nothing is registered under (a config error: exit status 2)."""


def register(name: str, builder: Builder, *, replace: bool = False) -> None:
    """Register ``builder`` under ``name``; re-registering needs ``replace=True``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"model {name!r} is already registered (pass replace=True)")
    _REGISTRY[name] = builder


def known_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def get_builder(name: str) -> Builder:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(known_models())}") from None


def build_model(name: str | None, cfg: RunConfig, features: ItemFeatures) -> nn.Module:
    """Build the model registered as ``name`` (default: ``cfg.model.name``)."""
    return get_builder(name or cfg.model.name)(cfg, features)


def _build_mdr(cfg: RunConfig, features: ItemFeatures) -> nn.Module:
    from mdr.models.mdr import MDRRecommender

    return MDRRecommender(cfg.model, cfg.loss, features, cfg.seed)


for _name in ("mdr", "beta_vae", "abae", "din_pp", "din"):
    register(_name, _build_mdr)

__all__ = ["Builder", "UnknownModelError", "build_model", "get_builder", "known_models",
           "register"]
