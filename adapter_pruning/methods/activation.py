"""``activation`` (Wanda, Sun et al. 2023): ``|W_ij| · rms(X_j)`` on calibration inputs, count-matched
to Tropical (``docs/METHOD.md``, "Baselines and statistics"); under the unit scope, unit ``j`` scores
``E[ReLU(a_j · x̃)] · ‖b_j‖`` (:func:`activation_unit_scores`)."""

from __future__ import annotations

from collections.abc import Sequence

from . import MaskMethod, PruneInputs


def activation_scores(layers, input_rms: Sequence) -> list:
    """``|W_ij| · rms(X_j)`` per weight.

    Args:
        layers: the original adapter layers (``A`` ``(r, d+1)``, ``B`` ``(d, r)``, ``up_bias`` ``(d,)``).
        input_rms: per layer ``(down_in (d,), up_in (r,))``: the root mean square over calibration
            tokens of each input feature of ``adapter_down`` (the hidden states) and of
            ``adapter_up`` (the ReLU bottleneck activations); see ``stages.calibrate``.

    Returns:
        Per layer ``(score_A (r, d+1), score_B (d, r), score_up_bias (d,))`` (float64): the down
        weights scored ``|A_ij| · down_in_j``, the up weights ``|B_ij| · up_in_j``, and both biases by
        magnitude (a bias's input is the constant 1, whose RMS is 1). Wanda's ``‖X_j‖₂`` is
        ``sqrt(n_tokens) · rms(X_j)``: the common factor changes no ranking among weights, and the
        RMS puts weights and biases on one scale.
    """
    import torch

    if len(input_rms) != len(layers):
        raise ValueError(f"activation_scores: {len(layers)} layers but {len(input_rms)} input norms")
    out = []
    for layer, (down_in, up_in) in zip(layers, input_rms):
        r, d1 = layer.A.shape
        if tuple(down_in.shape) != (d1 - 1,) or tuple(up_in.shape) != (r,):
            raise ValueError(
                f"layer {layer.prefix!r}: input norms of shapes {tuple(down_in.shape)}, {tuple(up_in.shape)} do not "
                f"fit A {tuple(layer.A.shape)} (expected ({d1 - 1},), ({r},))"
            )
        dev = layer.A.device
        x_down = torch.cat([down_in.to(dev, torch.float64), torch.ones(1, dtype=torch.float64, device=dev)])
        out.append(
            (
                layer.A.to(torch.float64).abs() * x_down[None, :],
                layer.B.to(torch.float64).abs() * up_in.to(dev, torch.float64)[None, :],
                layer.up_bias.to(torch.float64).abs(),
            )
        )
    return out


def activation_unit_scores(layers, activation_mean: Sequence) -> list:
    """``E[f_j] · ‖b_j‖`` per unit.

    Args:
        layers: the original adapter layers.
        activation_mean: per layer ``(r,)``: the mean over calibration tokens of each unit's ReLU
            activation ``f_j = ReLU(a_j · x̃)`` (the input of ``adapter_up``; ``stages.calibrate``).

    Returns:
        Per layer ``(r,)`` float64. As ``f_j ≥ 0``, ``E[f_j] · ‖b_j‖ = E‖f_j b_j‖``: the mean norm over
        calibration tokens of what unit ``j`` adds to the hidden state, i.e. exactly what removing it
        takes away on average.
    """
    import torch

    from ..masks import check_unit_scores

    means = check_unit_scores(layers, activation_mean, "activation means")
    return [m * torch.linalg.vector_norm(layer.B.to(torch.float64), dim=0) for layer, m in zip(layers, means)]


def _scores(inputs: PruneInputs) -> list:
    return activation_scores(inputs.layers, inputs.need("input_rms", "activation"))


def _unit_scores(inputs: PruneInputs) -> list:
    return activation_unit_scores(inputs.layers, inputs.need("activation_mean", "activation"))


ACTIVATION = MaskMethod(
    name="activation",
    summary="|W_ij|·rms(X_j) on calibration inputs (Wanda), biases by magnitude; count-matched to Tropical",
    count="tropical",
    needs=("input_rms",),
    scores=_scores,
    unit_scores=_unit_scores,
    unit_needs=("activation_mean",),
)
METHODS = (ACTIVATION,)
