"""What several test modules share: the repository's paths, a short training run on the tiny
shop, and a benchmark script run as a user runs it."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "benchmarks" / "configs"
CONFIG = CONFIGS / "mdr_synthetic.yaml"

# ``python -m benchmarks.<script>`` against the INSTALLED mdr: -P keeps the working tree's
# ./mdr off sys.path; the repository root is appended so that benchmarks/ is found.
_RUN_BENCHMARK = (
    "import runpy, sys; sys.path.append(sys.argv.pop(1)); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)


def benchmark_command(script: str, *args: str) -> list[str]:
    """The command line of ``python -m benchmarks.<script> ARGS`` for a subprocess."""
    return [sys.executable, "-P", "-c", _RUN_BENCHMARK, str(REPO), f"benchmarks.{script}", *args]


def benchmark_module(name: str) -> ModuleType:
    """A benchmark script by its short name (``table1``, ``tables``, ``speed``...), imported
    from the group that holds it."""
    for group in ("paper", "performance", "diagnostics"):
        full = f"benchmarks.{group}.{name}"
        if importlib.util.find_spec(full) is not None:
            return importlib.import_module(full)
    return importlib.import_module(f"benchmarks.{name}")


def run_benchmark(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script in a subprocess; its output is captured as text."""
    return subprocess.run(
        benchmark_command(script, *args), capture_output=True, text=True, env=env, timeout=timeout
    )


def train_tiny(
    proc: Path,
    out: Path,
    variant: str | None = None,
    epochs: int = 2,
    steps: int = 6,
    seed: int = 0,
) -> Path:
    """Train ``variant`` (a baseline/ablation name of the synthetic config, or MDR) on the
    tiny shop for a few steps; returns the finished run folder."""
    from mdr.config import apply_overrides, load_run_config, variant_overrides
    from mdr.training.train import train

    cfg = load_run_config(CONFIG)
    overrides = dict(variant_overrides(CONFIG, variant)) if variant else {}
    overrides.update(
        {
            "train.epochs": epochs,
            "train.max_steps_per_epoch": steps,
            "train.batch_size": 256,
            "train.full_ranking": False,
            "train.num_threads": 1,
            "seed": seed,
        }
    )
    train(apply_overrides(cfg, overrides), proc, out, progress=False)
    return out
