"""``python -m benchmarks.speed_data``: synth and prepare of the Cloth-sized shop (:mod:`benchmarks.performance.speed_data`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.performance.speed_data")
