"""``python -m benchmarks.figure4``: Figure 4, image traversals (:mod:`benchmarks.paper.figure4`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.paper.figure4")
