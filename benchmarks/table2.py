"""``python -m benchmarks.table2``: Table 2, every model and seed (:mod:`benchmarks.paper.table2`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.paper.table2")
