"""The one seeding helper: same seed, same numbers on the CPU."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); ask torch for deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - for third-party code using the global RNG
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


_FLUSHING = False


def flush_denormals(on: bool = True) -> None:
    """Flush subnormal floats to zero in this process (``torch.set_flush_denormal``).

    Weights that decay towards zero (an image encoder whose KL term switched it off) end
    up subnormal, and x86 CPU kernels on subnormals run several times slower. Flushing
    changes values below 1.2e-38 only, yet it can change the last bits of a run, so it is
    an explicit, recorded choice (:func:`denormals_flushed`, the run's provenance), never
    a silent default.
    """
    import torch

    from mdr.config import ConfigError

    global _FLUSHING
    if not torch.set_flush_denormal(on) and on:
        raise ConfigError(
            "--flush-denormals: this CPU cannot flush subnormal floats; train without it"
        )
    _FLUSHING = on


def denormals_flushed() -> bool:
    """Whether :func:`flush_denormals` is on in this process."""
    return _FLUSHING


def rng(seed: int, *stream: int | str) -> np.random.Generator:
    """An independent NumPy generator for a named stream of a seed.

    ``rng(seed, "negatives", epoch)`` gives the same numbers whatever else
    consumed randomness before, which is what makes resumed runs identical.
    """
    words = [seed] + [
        int.from_bytes(s.encode(), "little") % (2**32) if isinstance(s, str) else int(s)
        for s in stream
    ]
    return np.random.default_rng(np.random.SeedSequence(words))
