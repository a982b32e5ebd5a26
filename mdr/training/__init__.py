"""The training layer: one trainer for every model, and the run folders it writes.

Bottom to top: ``registry`` (model names -> builders and tasks), ``evaluate`` (scoring
on the stored lists and by full ranking), ``tasks`` (what a model trains on), ``runs``
(the run folder's whole life), ``step`` (one optimiser step, the one optimiser),
``distributed`` (torchrun helpers), ``train`` (the loop).
"""
