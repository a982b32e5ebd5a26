"""Baselines of the paper's Table 2, each a thin runner behind one interface.

- :mod:`baselines.deepctr_models`: Wide&Deep, PNN, DeepFM (deepctr-torch networks
  on sparse id features), ``DeepCTRBaseline`` and ``run_deepctr``.
- :mod:`baselines._deepctr_import`: the only place that imports deepctr-torch
  (with its network version check disabled).

Submodules are imported on demand, so ``import baselines`` stays cheap.
"""
