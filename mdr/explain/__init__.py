"""Explanations of what MDR learned, measured rather than eyeballed.

- :mod:`mdr.explain.disentanglement`: DCI, MIG and a slot probe against ground-truth factors.
- :mod:`mdr.explain.traversal`: latent traversals (Figure 4) and how much each changes
  the decoded colour and shape.
- :mod:`mdr.explain.aspects`: each text aspect's nearest words (Figure 5).
- :mod:`mdr.explain.attribution`: why one item was recommended to one user (``mdr explain``).
"""
