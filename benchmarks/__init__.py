"""The benchmarks: one script per table and figure of the paper, the speed suite, and the
diagnostics, run from the repository root as ``python -m benchmarks.<script>``.

- ``benchmarks.paper``: Tables 1-3 and Figures 3-5 (``tables`` is the machinery behind
  Tables 2 and 3);
- ``benchmarks.performance``: the speed suite, the data-preparation timings, the GPU check;
- ``benchmarks.diagnostics``: disentanglement scores, the image-branch diagnostics, the
  image side on real product photos;
- shared: ``common`` (paths, result files, the error rule), ``aggregate`` (reading runs,
  seed aggregation), ``plotting``; ``configs/`` holds the YAML run configs.

Every script also has its short entry point here (``python -m benchmarks.table2`` runs
:mod:`benchmarks.paper.table2`).
"""
