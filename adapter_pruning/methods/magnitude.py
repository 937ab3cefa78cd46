"""Magnitude pruning: ``standard`` (the paper's baseline, count-matched to Tropical) and
``standard_ps`` (``P_S`` itself: Standard at ``p``, the partner of ``tropical_pt``).

Both rank by the original magnitudes ``|A, B, up_bias|`` with ties by flat index
(:class:`~adapter_pruning.masks.Ranking` with ``scores=None``), so each is its own reference mask:
``jaccard_standard`` 1, ``pruned_outside_standard`` 0, slack 0.

Under the unit scope ``standard`` ranks whole units by ``‖a_j‖ · ‖b_j‖``
(:func:`~adapter_pruning.masks.magnitude_unit_scores`), the unit analogue of magnitude that, unlike
per-weight magnitude, does not depend on how a unit's scale is split between ``a_j`` and ``b_j``;
``standard_ps`` would be the same masks there (every method removes ``⌊p · r / 100⌋`` units).
"""

from __future__ import annotations

from . import MaskMethod, PruneInputs


def unit_magnitudes(inputs: PruneInputs) -> list:
    """Per layer ``(r,)`` float64: ``‖a_j‖ · ‖b_j‖`` (:func:`adapter_pruning.masks.magnitude_unit_scores`)."""
    from ..masks import magnitude_unit_scores

    return magnitude_unit_scores(inputs.layers)


STANDARD = MaskMethod(
    name="standard",
    summary="the k_T smallest original magnitudes of each scope group (k_T = Tropical's count there)",
    count="tropical",
    unit_scores=unit_magnitudes,
)
STANDARD_PS = MaskMethod(
    name="standard_ps",
    summary="P_S: the ⌊p·n/100⌋ smallest original magnitudes of each scope group (Standard at p, "
    "the partner of tropical_pt)",
    count="p",
    no_units="under UN it would be standard (every method removes ⌊p·r/100⌋ units of each layer)",
)
METHODS = (STANDARD, STANDARD_PS)
