"""``python -m benchmarks.figure5``: Figure 5, text aspects (:mod:`benchmarks.paper.figure5`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.paper.figure5")
