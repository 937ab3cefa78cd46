"""``taylor``: first-order Taylor importance (Molchanov et al. 2019) / SNIP's connection sensitivity
(Lee et al. 2019), ``s = |w ⊙ ∇_w L|`` with ``L`` the mean task loss over the calibration examples,
count-matched to Tropical (``docs/METHOD.md``, "Beyond the paper"). Under the unit scope, unit ``j``
scores ``|Σ_{w ∈ unit j} w · ∂L/∂w|`` (:func:`taylor_unit_scores`; Molchanov et al. 2019's group
criterion).

The gradient is that of the trained model (frozen backbone, trained head, eval mode) with respect to
the adapter's parameters, accumulated over the calibration examples by rule ``calibrate``
(:func:`adapter_pruning.stages.calibrate.calibration_statistics`).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import MaskMethod, PruneInputs


def taylor_scores(layers, gradients: Sequence) -> list:
    """``|w · g|`` per parameter.

    Args:
        layers: the original adapter layers (``A`` ``(r, d+1)``, ``B`` ``(d, r)``, ``up_bias`` ``(d,)``).
        gradients: per layer ``(g_A (r, d+1), g_B (d, r), g_up_bias (d,))``: ``∂L/∂A`` (down weight and
            down bias), ``∂L/∂B`` and ``∂L/∂up_bias`` of the mean loss ``L`` over the calibration examples.

    Returns:
        Per layer ``(|A ⊙ g_A|, |B ⊙ g_B|, |up_bias ⊙ g_up_bias|)`` in float64: the first-order change
        of ``L`` when the parameter is set to zero, in absolute value.
    """
    import torch

    if len(gradients) != len(layers):
        raise ValueError(f"taylor_scores: {len(layers)} layers but {len(gradients)} gradient triples")
    out = []
    for layer, grads in zip(layers, gradients):
        params = (layer.A, layer.B, layer.up_bias)
        for name, w, g in zip(("A", "B", "up_bias"), params, grads):
            if tuple(g.shape) != tuple(w.shape):
                raise ValueError(
                    f"layer {layer.prefix!r}: gradient of {name} has shape {tuple(g.shape)}, expected {tuple(w.shape)}"
                )
        out.append(tuple((w.to(torch.float64) * g.to(w.device, torch.float64)).abs() for w, g in zip(params, grads)))
    return out


def taylor_unit_scores(layers, gradients: Sequence) -> list:
    """``|⟨a_j, ∂L/∂a_j⟩ + ⟨b_j, ∂L/∂b_j⟩|`` per unit (row ``j`` of ``A`` with its bias, column ``j``
    of ``B``): the first-order change of ``L`` when the whole unit is set to zero, in absolute value
    (Molchanov et al. 2019 square it; the ranking is the same). Per layer ``(r,)`` float64; gradients
    as :func:`taylor_scores`."""
    import torch

    if len(gradients) != len(layers):
        raise ValueError(f"taylor_unit_scores: {len(layers)} layers but {len(gradients)} gradient triples")
    out = []
    for layer, (g_A, g_B, _) in zip(layers, gradients):
        if tuple(g_A.shape) != tuple(layer.A.shape) or tuple(g_B.shape) != tuple(layer.B.shape):
            raise ValueError(
                f"layer {layer.prefix!r}: gradients of shapes {tuple(g_A.shape)}, {tuple(g_B.shape)} do not fit "
                f"A {tuple(layer.A.shape)}, B {tuple(layer.B.shape)}"
            )
        dev = layer.A.device
        a = (layer.A.to(torch.float64) * g_A.to(dev, torch.float64)).sum(1)
        b = (layer.B.to(torch.float64) * g_B.to(dev, torch.float64)).sum(0)
        out.append((a + b).abs())
    return out


def _scores(inputs: PruneInputs) -> list:
    return taylor_scores(inputs.layers, inputs.need("gradients", "taylor"))


def _unit_scores(inputs: PruneInputs) -> list:
    return taylor_unit_scores(inputs.layers, inputs.need("gradients", "taylor"))


TAYLOR = MaskMethod(
    name="taylor",
    summary="|w·∂L/∂w| with L the mean task loss over the calibration examples (first-order Taylor / SNIP); "
    "count-matched to Tropical",
    count="tropical",
    needs=("gradients",),
    scores=_scores,
    unit_scores=_unit_scores,
    unit_needs=("gradients",),
)
METHODS = (TAYLOR,)
