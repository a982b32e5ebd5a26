"""``python -m benchmarks.speed``: the speed suite (:mod:`benchmarks.performance.speed`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.performance.speed")
