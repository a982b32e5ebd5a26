"""MDR companion: Multimodal Disentangled Representation for Recommendation (ICME 2021).

Layers, bottom to top: ``config``, ``metrics``, ``seeding``, ``io``, ``argtypes``,
``provenance`` -> ``data`` and ``models`` (independent of each other: models take
tensors, never files) -> ``training`` (registry, tasks, runs, the trainer) ->
``explain`` (reads finished runs) -> ``cli``. The baselines (``baselines/``) sit above
``training`` and register through entry points; ``benchmarks/`` sits on top.
"""

__version__ = "0.1.0"
