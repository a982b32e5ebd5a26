"""``python -m benchmarks.disentanglement``: disentanglement scores (:mod:`benchmarks.diagnostics.disentanglement`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.diagnostics.disentanglement")
