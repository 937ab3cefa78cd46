"""The tropical family: ``tropical`` (the paper: ``P_T ∩ P_S``, original values), ``tropical_pt``
(``P_T`` alone: the ``⌊p · n / 100⌋`` smallest optimized magnitudes, original values, compared with
``standard_ps``) and ``tropical_opt`` (Tropical's mask, survivors take their ``Â, B̂`` values).

``P_T`` ranks ``|Â, B̂|`` (the conserved gauge of ``tropical.solve``; the up bias, not in Eq. 2, with
its original magnitude), ties by the original magnitude, then flat index (``docs/METHOD.md``, Masks).

Under the unit scope, ``tropical`` (and ``tropical_opt``, with the ``Â, B̂`` values) ranks unit ``j``
by ``‖â_j‖ · ‖b̂_j‖`` (:func:`optimized_unit_norms`): the Frobenius norm of the unit's generators
``B̂±[i, j] â_j`` over all ``2d`` zonotopes of the layer after the solve (``docs/METHOD.md``,
"Structured units"), ties by ``‖a_j‖ · ‖b_j‖``. ``tropical_pt`` has no unit form of its own: the
unit score already is ``P_T``'s ranking, and units have no intersection rule.
"""

from __future__ import annotations

from . import MaskMethod, PruneInputs
from .magnitude import unit_magnitudes


def optimized_magnitudes(inputs: PruneInputs, method: str = "tropical_pt") -> list:
    """Per layer ``(|Â|, |B̂|, |up_bias|)`` (the up bias with its original magnitude)."""
    return [
        (A_hat.abs(), B_hat.abs(), layer.up_bias.abs())
        for layer, (A_hat, B_hat) in zip(inputs.layers, inputs.need("optimized", method))
    ]


def original_magnitudes(inputs: PruneInputs) -> list:
    """Per layer ``(|A|, |B|, |up_bias|)``: ``P_T``'s tie key."""
    return [(layer.A.abs(), layer.B.abs(), layer.up_bias.abs()) for layer in inputs.layers]


def optimized_unit_norms(inputs: PruneInputs, method: str = "tropical") -> list:
    """Per layer ``(r,)`` float64: ``‖â_j‖ · ‖b̂_j‖`` (row ``j`` of ``Â`` with its bias, column ``j`` of
    ``B̂``), which equals ``sqrt(Σ_i ‖B̂+[i,j] â_j‖² + ‖B̂−[i,j] â_j‖²)``: the Frobenius norm of unit ``j``'s
    generators of every output node's zonotopes ``Ĝ1^i``, ``Ĝ2^i``. Invariant to the gauge (a unit's
    scale split); a unit the solve zeroed (conserved gauge: both factors 0) scores 0."""
    import torch

    return [
        torch.linalg.vector_norm(A_hat.to(torch.float64), dim=1)
        * torch.linalg.vector_norm(B_hat.to(torch.float64), dim=0)
        for A_hat, B_hat in inputs.need("optimized", method)
    ]


TROPICAL = MaskMethod(
    name="tropical",
    summary="P_T ∩ P_S: among the p% smallest both in |Â, B̂| and in |A, B| (the paper); original values",
    count="intersection",
    unit_scores=optimized_unit_norms,
    unit_tie=unit_magnitudes,
    unit_needs=("optimized",),
)
TROPICAL_PT = MaskMethod(
    name="tropical_pt",
    summary="P_T alone: the ⌊p·n/100⌋ smallest |Â, B̂| of each scope group (ties by |A, B|); original values; "
    "compare with standard_ps",
    count="p",
    needs=("optimized",),
    scores=optimized_magnitudes,
    tie=original_magnitudes,
    no_units="under UN it would be tropical (the unit score ‖â_j‖·‖b̂_j‖ is P_T's ranking; units have no "
    "intersection rule)",
)
TROPICAL_OPT = MaskMethod(
    name="tropical_opt",
    summary="Tropical's mask; the surviving weights take their Â, B̂ values (the up bias keeps its own)",
    count="intersection",
    survivors="optimized",
    unit_scores=optimized_unit_norms,
    unit_tie=unit_magnitudes,
    unit_needs=("optimized",),
)
METHODS = (TROPICAL, TROPICAL_PT, TROPICAL_OPT)
