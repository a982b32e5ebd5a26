"""``python -m benchmarks.figure3``: Figure 3, validation curves (:mod:`benchmarks.paper.figure3`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.paper.figure3")
