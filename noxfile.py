"""Sessions for the MDR companion: tests, lint, and one session per table and figure.

All sessions share ONE virtual environment (``.nox/mdr-env``): torch alone is
several GB, and nox would otherwise build it once per session. The
environment's dependencies are reinstalled only when ``pyproject.toml``
changes; the project itself is reinstalled (not editable) at the start of every
session, so tests always run against the installed package, never against the
working tree by accident.

Arguments after ``--`` go to the underlying command, e.g.
``nox -s reproduce-table1 -- --dataset data/proc/my-dataset``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
ENV = Path(os.environ.get("MDR_NOX_ENV", ROOT / ".nox" / "mdr-env"))
BIN = ENV / ("Scripts" if sys.platform == "win32" else "bin")

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "none"


def _env(session: nox.Session, groups: tuple[str, ...] = ("test", "lint")) -> dict[str, str]:
    """Create/refresh the shared environment and install the project into it."""
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    stamp_key = hashlib.sha256(pyproject + ",".join(groups).encode()).hexdigest()
    stamp = ENV / ".mdr-deps-stamp"
    if not (BIN / "python").exists():
        session.run(sys.executable, "-m", "venv", str(ENV), external=True)
        session.run(
            str(BIN / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip", external=True
        )
    have = stamp.read_text().split() if stamp.exists() else []
    if stamp_key not in have:
        group_args = [a for g in groups for a in ("--group", g)]
        # the project's dependencies, resolved once (torch: several GB, reused by every session)
        # the cluster extra too: the slow session runs the grid on a local Ray
        session.run(
            str(BIN / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            ".[cluster]",
            *group_args,
            external=True,
        )
        stamp.write_text("\n".join([*have, stamp_key]))
    # the project itself, fresh and not editable: tests see what a user installs
    session.run(
        str(BIN / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--force-reinstall",
        ".",
        external=True,
    )
    return {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(ENV),
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
    }


def _py(session: nox.Session, *args: str, env: dict[str, str]) -> None:
    session.run(str(BIN / "python"), *args, env=env, external=True)


@nox.session(name="tests")
def tests(session: nox.Session) -> None:
    """Run the default test suite (fast: tiny data, no network; slow tests excluded)."""
    env = _env(session)
    # `pytest` (not `python -m pytest`) so that the repository root is not put on sys.path
    session.run(str(BIN / "pytest"), "-m", "not slow", *session.posargs, env=env, external=True)


@nox.session(name="tests-slow")
def tests_slow(session: nox.Session) -> None:
    """Run only the slow tests (longer end-to-end runs)."""
    env = _env(session)
    session.run(str(BIN / "pytest"), "-m", "slow", *session.posargs, env=env, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff: the rules, then the formatting (both in pyproject.toml)."""
    env = _env(session)
    session.run(str(BIN / "ruff"), "check", ".", *session.posargs, env=env, external=True)
    session.run(str(BIN / "ruff"), "format", "--check", ".", env=env, external=True)


def _script_session(name: str, script: str, doc: str) -> None:
    """Register a session that runs ``python -m benchmarks.<script>`` in the shared
    environment (from the repository root, where ``benchmarks/`` is)."""

    def session_func(session: nox.Session) -> None:
        env = _env(session)
        _py(session, "-m", f"benchmarks.{script}", *session.posargs, env=env)

    session_func.__doc__ = doc
    session_func.__name__ = name.replace("-", "_")
    nox.session(name=name)(session_func)


@nox.session
def figures(session: nox.Session) -> None:
    """Regenerate Figures 3, 4 and 5 from the Table 2 runs (arguments go to each script)."""
    env = _env(session)
    for script in ("figure3", "figure4", "figure5"):
        _py(session, "-m", f"benchmarks.{script}", *session.posargs, env=env)


for _name, _script, _doc in [
    (
        "reproduce-table1",
        "table1",
        "Regenerate Table 1 (dataset statistics); default: the embedded `small` shop.",
    ),
    (
        "reproduce-table2",
        "table2",
        "Regenerate Table 2 (every model x 3 seeds); default: the embedded `small` shop.",
    ),
    (
        "reproduce-table3",
        "table3",
        "Regenerate Table 3 (MDR with and without the information constraint).",
    ),
    (
        "tune",
        "tune",
        "Tune every model of Table 2 on validation only (Optuna; same trials for every model).",
    ),
    (
        "claims",
        "claims",
        "Write results/claims.md: each claim of the paper, our evidence per dataset, a verdict.",
    ),
    (
        "disentanglement",
        "disentanglement",
        "Score disentanglement (DCI, MIG, slot probe) of every representation run of Table 2/3.",
    ),
    (
        "image-branch",
        "image_branch",
        "Diagnose a run's image decoder (error vs the mean image, dead units) vs a VAE alone.",
    ),
    (
        "image-sweep",
        "image_sweep",
        "On a shop of real photos: image size, encoder width, weak labels on validation (MDR).",
    ),
    (
        "fashion",
        "fashion",
        "Real product photos: prepare, train the image side with weak labels, Figure 4 + scores.",
    ),
    (
        "notebooks",
        "notebooks",
        "Execute the jupytext notebooks on results/ into HTML (results/notebooks/).",
    ),
    (
        "speed",
        "speed",
        "The speed suite on this machine: data, training, evaluation, FLOP efficiency.",
    ),
    (
        "speed-data",
        "speed_data",
        "Measure synth and prepare of the Cloth-sized shop (wall time, peak memory).",
    ),
]:
    _script_session(_name, _script, _doc)
