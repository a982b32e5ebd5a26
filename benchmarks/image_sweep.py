"""``python -m benchmarks.image_sweep``: image settings on real photos, on validation (:mod:`benchmarks.diagnostics.image_sweep`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.diagnostics.image_sweep")
