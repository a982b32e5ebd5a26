"""Command-line argument types shared by ``mdr`` and the benchmark scripts.

A bad argument is one line ``<prog>: error: argument --x: ...`` and exit status 2,
never a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _ranged(
    convert: Callable[[str], Any],
    noun: str,
    lo: Any,
    hi: Any,
    fmt: Callable[[Any], str],
    echo_text: bool,
) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert(text)`` in [lo, hi], or one line saying why not."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not lo <= value <= hi:  # False for NaN as well
            got = text if echo_text else value
            raise argparse.ArgumentTypeError(f"must be from {fmt(lo)} to {fmt(hi)}, got {got}")
        return value

    parse.__name__ = f"{noun.split(' ', 1)[1]} in [{fmt(lo)}, {fmt(hi)}]"
    return parse


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [lo, hi]."""
    return _ranged(int, "an integer", lo, hi, str, echo_text=False)


def float_range(lo: float, hi: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in [lo, hi] (NaN refused); the error repeats
    what was typed (1e30, not 1e+30)."""
    return _ranged(float, "a number", lo, hi, lambda x: f"{x:g}", echo_text=True)


# Every argument that becomes part of a file or folder name (a table's --tag, a dataset's
# --name, a category, a model or ablation name) follows this one rule: a letter or digit,
# then letters, digits, '_', '.', '-'; at most 100 characters. No '/', no leading '.', no
# '..': such a name can never leave the folder it is put in.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be part of a file name (None when it can)."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:60] + "..."
        return (
            f"{shown} cannot be part of a file name: use letters, digits, '_', '.' and "
            "'-' (starting with a letter or digit, at most 100 characters, no '..')"
        )
    return None


def safe_name(text: str) -> str:
    """An argparse ``type`` for arguments that become part of a file name."""
    problem = name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text
