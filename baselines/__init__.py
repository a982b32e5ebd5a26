"""Baselines of the paper's Table 2 that wrap other libraries' networks.

- :mod:`baselines.deepctr_models`: Wide&Deep, PNN, DeepFM (deepctr-torch networks on
  sparse id features) as registered models (``wide_deep``, ``pnn``, ``deepfm``), trained
  by the one trainer like every other model;
- :mod:`baselines._deepctr_import`: the only place that imports deepctr-torch (with its
  network version check disabled).

The representation baselines (beta-VAE, ABAE, DIN++, DIN) are the MDR network with
another config (``baselines:`` in ``benchmarks/configs/*.yaml``). Submodules are imported
on demand, so ``import baselines`` stays cheap.
"""
