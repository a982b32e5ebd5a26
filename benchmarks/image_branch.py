"""``python -m benchmarks.image_branch``: the image-branch diagnostics (:mod:`benchmarks.diagnostics.image_branch`)."""

from benchmarks.common import run_module

run_module(__name__, "benchmarks.diagnostics.image_branch")
