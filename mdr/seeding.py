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
