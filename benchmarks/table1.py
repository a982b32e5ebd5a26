"""``python -m benchmarks.table1``: Table 1, dataset statistics (:mod:`benchmarks.paper.table1`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.paper.table1")
