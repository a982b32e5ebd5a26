"""Explanations of what MDR learned, measured rather than eyeballed.

- :mod:`mdr.explain.disentanglement`: DCI, MIG and a slot probe against ground-truth factors.
- :mod:`mdr.explain.traversal`: latent traversals (Figure 4): one dimension swept, decoded.
- :mod:`mdr.explain.probe`: classifiers that read factors (colour, shape) off images.
- :mod:`mdr.explain.effect`: how much each traversal changes the factors a probe reads.
- :mod:`mdr.explain.drawing`: traversal grids as figures and PNGs.
- :mod:`mdr.explain.aspects`: each text aspect's nearest words (Figure 5).
- :mod:`mdr.explain.attribution`: why one item was recommended to one user (``mdr explain``).

What each of them needs of a model is declared in :mod:`mdr.models.capabilities`.
"""
