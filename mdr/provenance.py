"""What every result carries: git commit, package versions, device, date."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = (
    "mdr-companion",
    "torch",
    "torchvision",
    "numpy",
    "gensim",
    "scikit-learn",
    "deepctr-torch",
    "pandas",
)


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit of the git checkout the command runs from (``+dirty`` when its tracked
    files other than ``results/`` have changes), or None when ``cwd`` (default: the
    current directory) is not inside a git checkout or git is unavailable.

    ``results/`` holds what the code writes: a table regenerated from a clean checkout
    changes its own committed files before its manifest is written, and that must not
    make the code it came from look modified.

    The current directory, not the installed package's location: a package installed
    into a virtual environment that happens to live inside some repository must not
    report that repository's commit for work done elsewhere.
    """
    try:
        cwd = Path(cwd) if cwd else Path.cwd()
    except OSError:  # the current directory was removed
        return None
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--verify", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)results",
            ],
            cwd=top,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device_name(device: str = "cpu") -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu: {platform.processor() or platform.machine()} x{_cpu_count()}"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def manifest(**extra: Any) -> dict[str, Any]:
    """A run manifest: provenance plus whatever the caller adds (config, seed, wall time)."""
    return {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "versions": versions(),
        "platform": platform.platform(),
        **extra,
    }
