"""Magnitude pruning: ``standard`` (the paper's baseline, count-matched to Tropical) and
``standard_ps`` (``P_S`` itself: Standard at ``p``, the partner of ``tropical_pt``).

Both rank by the original magnitudes ``|A, B, up_bias|`` with ties by flat index
(:class:`~adapter_pruning.masks.Ranking` with ``scores=None``), so each is its own reference mask:
``jaccard_standard`` 1, ``pruned_outside_standard`` 0, slack 0.
"""

from __future__ import annotations

from . import MaskMethod

STANDARD = MaskMethod(
    name="standard",
    summary="the k_T smallest original magnitudes of each scope group (k_T = Tropical's count there)",
    count="tropical",
)
STANDARD_PS = MaskMethod(
    name="standard_ps",
    summary="P_S: the ⌊p·n/100⌋ smallest original magnitudes of each scope group (Standard at p, "
    "the partner of tropical_pt)",
    count="p",
)
METHODS = (STANDARD, STANDARD_PS)
