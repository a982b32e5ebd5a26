"""The training layer's error types, apart from everything that imports torch: the CLI's
error handler can then recognise them without importing anything new."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run folder or checkpoint that cannot be used as asked (exit status 2 in the CLI)."""


class DivergedError(RunError):
    """The loss or the validation scores became NaN or infinite: the run diverged (a user
    error: a setting such as ``train.lr`` is too large for this model)."""


__all__ = ["DivergedError", "RunError"]
