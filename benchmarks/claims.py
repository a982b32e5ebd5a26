"""``python -m benchmarks.claims``: the claims page (:mod:`benchmarks.paper.claims`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.paper.claims")
