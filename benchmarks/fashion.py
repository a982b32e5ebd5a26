"""``python -m benchmarks.fashion``: the image side on real product photos (:mod:`benchmarks.diagnostics.fashion`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.diagnostics.fashion")
