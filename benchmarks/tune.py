"""``python -m benchmarks.tune``: equal tuning on validation only (:mod:`benchmarks.paper.tune`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.paper.tune")
