"""MDR companion: Multimodal Disentangled Representation for Recommendation (ICME 2021).

Layers, bottom to top: ``config``/``metrics``/``seeding``/``io`` -> ``data`` and
``models`` (independent of each other) -> ``train`` -> ``baselines`` ->
``benchmarks`` and ``cli``.
"""

__version__ = "0.1.0"
