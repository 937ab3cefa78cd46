"""The tropical family: ``tropical`` (the paper: ``P_T ∩ P_S``, original values), ``tropical_pt``
(``P_T`` alone: the ``⌊p · n / 100⌋`` smallest optimized magnitudes, original values, compared with
``standard_ps``) and ``tropical_opt`` (Tropical's mask, survivors take their ``Â, B̂`` values).

``P_T`` ranks ``|Â, B̂|`` (the conserved gauge of ``tropical.solve``; the up bias, not in Eq. 2, with
its original magnitude), ties by the original magnitude, then flat index (``docs/METHOD.md``, Masks).
"""

from __future__ import annotations

from . import MaskMethod, PruneInputs


def optimized_magnitudes(inputs: PruneInputs, method: str = "tropical_pt") -> list:
    """Per layer ``(|Â|, |B̂|, |up_bias|)`` (the up bias with its original magnitude)."""
    return [
        (A_hat.abs(), B_hat.abs(), layer.up_bias.abs())
        for layer, (A_hat, B_hat) in zip(inputs.layers, inputs.need("optimized", method))
    ]


def original_magnitudes(inputs: PruneInputs) -> list:
    """Per layer ``(|A|, |B|, |up_bias|)``: ``P_T``'s tie key."""
    return [(layer.A.abs(), layer.B.abs(), layer.up_bias.abs()) for layer in inputs.layers]


TROPICAL = MaskMethod(
    name="tropical",
    summary="P_T ∩ P_S: among the p% smallest both in |Â, B̂| and in |A, B| (the paper); original values",
    count="intersection",
)
TROPICAL_PT = MaskMethod(
    name="tropical_pt",
    summary="P_T alone: the ⌊p·n/100⌋ smallest |Â, B̂| of each scope group (ties by |A, B|); original values; "
    "compare with standard_ps",
    count="p",
    needs=("optimized",),
    scores=optimized_magnitudes,
    tie=original_magnitudes,
)
TROPICAL_OPT = MaskMethod(
    name="tropical_opt",
    summary="Tropical's mask; the surviving weights take their Â, B̂ values (the up bias keeps its own)",
    count="intersection",
    survivors="optimized",
)
METHODS = (TROPICAL, TROPICAL_PT, TROPICAL_OPT)
