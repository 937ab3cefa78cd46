"""``sparsegpt``: the OBS mask and update of SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive
Language Models Can Be Accurately Pruned in One-Shot"; the implementation read for reference is
``lib/sparsegpt.py`` of locuslab/wanda, adapted from IST-DASLab/sparsegpt), per adapter linear map,
with the exact inverse (the maps are small) and count-matched to Tropical (``docs/METHOD.md``).

An adapter layer has two linear maps, each with a bias, written as a weight on a constant input 1:

* down: rows of ``A = [W_d | b_d]`` ``(r, d+1)``, input ``x̃ = [x, 1]`` (``x`` the hidden state entering
  ``adapter_down``);
* up: rows of ``[B | up_bias]`` ``(d, r+1)``, input ``z̃ = [z, 1]`` (``z = ReLU(x W_dᵀ + b_d)``, entering
  ``adapter_up``).

For a map with calibration inputs ``X̃`` (``N`` non-padding tokens, rule ``calibrate``):
``H = X̃ᵀX̃ / N`` and ``H_λ = H + δ I`` with ``δ = 0.01 · mean(diag H)`` (SparseGPT's ``percdamp``).

* score of weight ``w_ij``: ``w_ij² / [H_λ⁻¹]_jj``, the OBS saliency (the least increase of the
  row's output error ``(w' - w)ᵀ H_λ (w' - w)`` when ``w_ij`` alone is removed and the row's other
  weights are re-fitted);
* mask: the ``k_T`` lowest scores of each scope group (count matching: the group's count is
  allocated across its rows and maps by this one score, not per row);
* update: each row ``w`` with pruned set ``P`` and kept set ``R`` takes ``w'_P = 0`` and
  ``w'_R = w_R + (H_λ)_RR⁻¹ (H_λ)_RP w_P``, the exact minimiser of ``(w' - w)ᵀ H_λ (w' - w)`` under
  the mask, i.e. the OBS step ``δ = -H_λ⁻¹[:, P] ([H_λ⁻¹]_PP)⁻¹ w_P`` for all of ``P`` at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import MaskMethod, PruneInputs

#: Dampening relative to the mean of ``diag H`` (SparseGPT's ``percdamp``).
PERCDAMP = 0.01


def dampened(H):
    """``H + PERCDAMP · mean(diag H) · I`` (float64)."""
    import torch

    H = H.to(torch.float64)
    diag = torch.diagonal(H)
    if not bool(torch.isfinite(H).all()) or not bool((diag >= 0).all()) or float(diag.mean()) <= 0:
        raise ValueError("second moments: H must be finite with a nonnegative diagonal of positive mean")
    return H + PERCDAMP * diag.mean() * torch.eye(H.shape[0], dtype=torch.float64, device=H.device)


def inverse_diagonal(H):
    """``diag(H⁻¹)`` of a symmetric positive definite ``H`` (float64, through its Cholesky factor)."""
    import torch

    L = torch.linalg.cholesky(H.to(torch.float64))
    return torch.diagonal(torch.cholesky_inverse(L))


def _check_moments(layers, second_moments) -> None:
    if len(second_moments) != len(layers):
        raise ValueError(f"sparsegpt: {len(layers)} layers but {len(second_moments)} second-moment pairs")
    for layer, (H_down, H_up) in zip(layers, second_moments):
        r, d1 = layer.A.shape
        if tuple(H_down.shape) != (d1, d1) or tuple(H_up.shape) != (r + 1, r + 1):
            raise ValueError(
                f"layer {layer.prefix!r}: second moments of shapes {tuple(H_down.shape)}, {tuple(H_up.shape)} do not "
                f"fit A {tuple(layer.A.shape)} (expected ({d1}, {d1}) and ({r + 1}, {r + 1}))"
            )


def sparsegpt_scores(layers, second_moments: Sequence) -> list:
    """Per layer ``(score_A (r, d+1), score_B (d, r), score_up_bias (d,))`` (float64): ``w_ij² / [H_λ⁻¹]_jj``
    with ``H_λ`` the dampened second moments of the weight's map (module docstring).

    Args:
        layers: the original adapter layers.
        second_moments: per layer ``(H_down (d+1, d+1), H_up (r+1, r+1))`` = ``X̃ᵀX̃ / N`` of the inputs of
            ``adapter_down`` and ``adapter_up``, each with the constant input 1 as the last feature.
    """
    import torch

    _check_moments(layers, second_moments)
    out = []
    for layer, (H_down, H_up) in zip(layers, second_moments):
        dev = layer.A.device
        inv_down = inverse_diagonal(dampened(H_down.to(dev)))
        inv_up = inverse_diagonal(dampened(H_up.to(dev)))
        A = layer.A.to(torch.float64)
        Bub = torch.cat([layer.B.to(torch.float64), layer.up_bias.to(torch.float64)[:, None]], 1)
        s_up = Bub.square() / inv_up[None, :]
        out.append((A.square() / inv_down[None, :], s_up[:, :-1].contiguous(), s_up[:, -1].contiguous()))
    return out


#: Maps with at most this many inputs are solved for all rows at once (one batched solve of
#: ``(rows, n, n)``); wider ones row by row on the kept block only, which is small at high ``p``.
_BATCHED_MAX_INPUTS = 64


def obs_update(W, pruned, H):
    """The rows of ``W`` ``(rows, n)`` re-fitted under the mask ``pruned`` ``(rows, n)`` (bool, True =
    pruned) with the (dampened, positive definite) ``H`` ``(n, n)``: per row ``w'_P = 0`` and
    ``w'_R = w_R + H_RR⁻¹ H_RP w_P``. float64.

    Narrow maps (the up map, ``n = r + 1``) solve all rows at once: row ``i`` solves
    ``H̃ δ = m ⊙ (H (w ⊙ ¬m))`` with ``m`` its kept entries and ``H̃ = diag(m) H diag(m) + diag(¬m)``,
    whose kept block is ``H_RR`` and whose pruned block is the identity (so ``δ_P = 0``). Wide maps
    (the down map, ``n = d + 1``) solve each row's kept block ``H_RR`` (Cholesky) on its own.
    """
    import torch

    W = W.to(torch.float64)
    H = H.to(torch.float64)
    if W.shape[1] <= _BATCHED_MAX_INPUTS:
        keep = (~pruned).to(torch.float64)  # (rows, n)
        rhs = keep * ((W * (1.0 - keep)) @ H)  # H symmetric: row i of (w ⊙ ¬m) H = (H (w ⊙ ¬m))ᵀ
        Ht = keep[:, :, None] * H[None] * keep[:, None, :] + torch.diag_embed(1.0 - keep)
        delta = torch.linalg.solve(Ht, rhs.unsqueeze(-1)).squeeze(-1)
        return (W + delta) * keep
    out = torch.zeros_like(W)
    for i in range(W.shape[0]):
        R = torch.nonzero(~pruned[i]).flatten()
        P = torch.nonzero(pruned[i]).flatten()
        if R.numel() == 0:
            continue
        w = W[i]
        if P.numel() == 0:
            out[i] = w
            continue
        rhs = H[R][:, P] @ w[P]
        L = torch.linalg.cholesky(H[R][:, R])
        out[i, R] = w[R] + torch.cholesky_solve(rhs[:, None], L)[:, 0]
    return out


def sparsegpt_update(inputs: PruneInputs, layer_masks: Sequence) -> list:
    """New layers: each map's rows re-fitted by :func:`obs_update` under its mask (pruned entries exactly
    0), in the layers' dtypes."""
    import torch

    from ..masks import AdapterLayer

    moments = inputs.need("second_moments", "sparsegpt")
    _check_moments(inputs.layers, moments)
    out = []
    for layer, mask, (H_down, H_up) in zip(inputs.layers, layer_masks, moments):
        if mask.prefix != layer.prefix:
            raise ValueError(f"mask for {mask.prefix!r} given for layer {layer.prefix!r}")
        dev = layer.A.device
        A = obs_update(layer.A, mask.A, dampened(H_down.to(dev)))
        Bub = torch.cat([layer.B, layer.up_bias[:, None]], 1)
        Bub_mask = torch.cat([mask.B, mask.up_bias[:, None]], 1)
        Bub = obs_update(Bub, Bub_mask, dampened(H_up.to(dev)))
        new = AdapterLayer(
            prefix=layer.prefix,
            A=A.to(layer.A.dtype).masked_fill(mask.A, 0),
            B=Bub[:, :-1].to(layer.B.dtype).masked_fill(mask.B, 0),
            up_bias=Bub[:, -1].to(layer.up_bias.dtype).masked_fill(mask.up_bias, 0),
        )
        out.append(new)
    return out


def _scores(inputs: PruneInputs) -> list:
    return sparsegpt_scores(inputs.layers, inputs.need("second_moments", "sparsegpt"))


SPARSEGPT = MaskMethod(
    name="sparsegpt",
    summary="SparseGPT per adapter linear map: w²/[H⁻¹]_jj with H = X̃ᵀX̃/N + 1 % dampening (biases on a constant "
    "input), count-matched to Tropical; survivors take the OBS update",
    count="tropical",
    needs=("second_moments",),
    scores=_scores,
    survivors="updated",
    update=sparsegpt_update,
    no_units="its OBS score and update are defined per weight; a structured OBS (removing whole input "
    "columns of adapter_up and re-fitting the rest) is not implemented",
)
METHODS = (SPARSEGPT,)
