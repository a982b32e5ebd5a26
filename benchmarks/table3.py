"""``python -m benchmarks.table3``: Table 3 and the ablations (:mod:`benchmarks.paper.table3`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.paper.table3")
