"""Tropical-geometry objective of adapter pruning (paper Eq. 2) and its solvers.

Notation (``docs/METHOD.md``; PyTorch weight orientation, column vectors). One adapter layer is
``f(x) = B max(A [x; 1], 0)`` with

* ``A``: shape ``(r, d+1)``, the down-projection weight with the down bias appended as last column;
  row ``a_j`` holds hidden unit ``j``'s inputs and bias;
* ``B``: shape ``(d, r)``, the up-projection weight; row ``i`` is output node ``i``.

Every function also takes a batch of layers: any leading dims ``(...)`` (in this package: one
dim ``L``, the adapter layers of a model), identical for ``A`` and ``B``.

Generators. With ``B+ = max(B, 0)`` and ``B- = max(-B, 0)`` output node ``i`` has the zonotope
generator matrices ``G1^i = Diag[B+[i]] A`` and ``G2^i = Diag[B-[i]] A`` (``r x (d+1)``; row ``j``
is ``B±[i, j] * a_j``), dual to the tropical hypersurfaces of ``H`` and ``Q`` in ``f = H - Q``.

Objective (Eq. 2, summed over output nodes ``i``; ``Ĝ`` built from ``(Â, B̂)`` like ``G`` from
``(A, B)``)::

    L(Â, B̂) = Σ_i ½‖Ĝ1^i − G1^i‖²_F + ½‖Ĝ2^i − G2^i‖²_F + λ1‖Ĝ1^i‖_{1,1} + λ2‖Ĝ2^i‖_{1,1}

``objective`` evaluates it in O(d r) without the ``(d, r, d+1)`` generator tensor, in the
cancellation-free form (``U = B̂+``, ``U0 = B+``, ``e_j = ‖â_j − a_j‖²``,
``g_j = <â_j − a_j, a_j>``, ``n_j = ‖a_j‖²``, ``s_j = ‖â_j‖_1``)::

    ½‖U_ij â_j − U0_ij a_j‖² = ½ (U_ij² e_j + 2 U_ij (U_ij − U0_ij) g_j + (U_ij − U0_ij)² n_j)
    ‖Ĝ1^i‖_{1,1} summed over i = Σ_ij U_ij s_j                      (likewise B̂-, B- with λ2)

which is algebraically the METHOD.md form and stays accurate when ``Â ≈ A``, ``B̂ ≈ B``.
``materialized_objective`` builds the generators explicitly (the reference for tests).

Solvers (``solve``), both starting from ``Â = A``, ``B̂ = B``:

``method="algorithm1"``: the paper's Algorithm 1 as written. ``T`` steps; step ``t`` (1-based)
uses the G1 term with ``λ1`` when ``t`` is even and the G2 term with ``λ2`` when ``t`` is odd; inside
a step it loops over the output nodes ``i`` (rows of ``B``, ``d`` of them; the paper's loop header
says ``r`` but its index is the node ``i`` of ``b^i``), computes that node's loss
``ℓ_i = ½‖Ĝ^i − G^i‖²_F + λ‖Ĝ^i‖_{1,1}`` and immediately takes a gradient step of size
``η = algorithm1_step_size(A, B, lr)`` (``lr`` relative to the layer's curvature) on ``Â`` and
``B̂`` (autograd; the subgradients of ``max(·, 0)`` and ``|·|`` at 0 are 0, as in
PyTorch). After each step the combined objective ``L`` is recorded and the relative change checked
against ``tol``. Slow (O(d² r) Python-level work per step): the reference.

``method="fast"`` (default): exact block-coordinate descent on the same combined objective ``L``,
vectorised over nodes and over all layers at once. One step = two exact block minimisations:

1. ``Â``-step (``B̂`` fixed). ``L`` is separable over rows ``j`` of ``Â``: with
   ``q_j = Σ_i (U_ij² + V_ij²)``, ``w_j = Σ_i (U_ij U0_ij + V_ij V0_ij)``,
   ``τ_j = λ1 Σ_i U_ij + λ2 Σ_i V_ij`` (``V = B̂-``, ``V0 = B-``) the row problem is
   ``½ q_j ‖â‖² − w_j <â, a_j> + τ_j ‖â‖_1``, minimised by ``â_j = soft(w_j a_j, τ_j) / q_j``.
2. ``B̂``-step (``Â`` fixed). Every scalar ``B̂_ij`` has a piecewise-quadratic objective whose two
   sign branches have closed-form minimisers; since only one of ``B+_ij``, ``B-_ij`` is non-zero,
   the global minimiser is unique:
   ``B̂_ij = sign(B_ij) · max(|B_ij| c_j − λ_ij s_j, 0) / n̂_j`` with ``n̂_j = ‖â_j‖²``,
   ``c_j = <â_j, a_j>``, ``s_j = ‖â_j‖_1`` and ``λ_ij = λ1`` if ``B_ij > 0`` else ``λ2``.

Each block is minimised exactly (the ``Â`` rows are strongly convex problems; each ``B̂_ij`` is
piecewise quadratic with a unique global minimiser), so the trace is non-increasing. Both updates
keep signs (``sign(Â) = sign(A)`` or 0, ``sign(B̂) = sign(B)`` or 0) and are soft thresholds with
one scale and one threshold per hidden unit ``j``: ``|Â_jk| = x_j (|A_jk| − θ_j)+`` and
``|B̂_ij| = ρ_j (|B_ij| − φ_ij)+`` (``φ_ij = φ1_j`` or ``φ2_j`` by the sign of ``B_ij``). The
objective depends on the scales only through ``π_j = x_j ρ_j`` (the generators are products), so
the loop carries per-unit thresholds and ``π`` (``(L, r)`` tensors); the sums it needs (over the
entries above a threshold) are read off prefix sums of the sorted ``|A|`` rows and ``|B|``
columns with one ``searchsorted`` per block (O(r log d) per layer and step, plus a one-off sort).
The split of ``π_j`` into ``x_j`` and ``ρ_j`` (which matters for the magnitudes used by ``P_T``)
is tracked exactly as the block updates define it, and ``Â, B̂`` are materialised once at the
end. A unit whose row or column has no surviving entry is dead (``â_j = 0``, ``B̂[:, j] = 0``)
and stays dead. ``lr`` sets Algorithm 1's step (``algorithm1_step_size``); the fast method
minimises each block exactly, has no step size, and ignores ``lr``. Measured: it reaches a lower
objective than Algorithm 1 at every equal ``T`` tried (tests), and converges (``tol = 1e-6``) in 2
to 7 steps on real adapters (docs/benchmarks.md). Both solvers compute in float64 on one intra-op
CPU thread and return ``A``'s /
``B``'s dtype. The fast trace comes from the same prefix sums; it agrees with
``objective_per_layer`` of the returned ``Â, B̂`` to about 1e-12 relative, worse (seen: 1e-8) only
for units whose few surviving entries lie within ~1e-4 relative of their threshold.

Stopping (both methods): a layer has converged when the relative change of its objective
``|L_t − L_{t−1}| / |L_{t−1}|`` is ``< tol`` (``tol = 0``: run all ``steps``); a converged layer
stops changing; the solver stops when all layers have converged.

Choice of the defaults (measured; details in ``docs/benchmarks.md``, section "Tropical solve").
The problem is equivariant under ``A → αA, B → βB, λ → αβ λ`` (the raw solution scales as
``αÂ, βB̂``), and ``λ`` acts as a threshold on generator entries ``|B_ij A_jk|``: in the first
``Â``-step entry ``A_jk`` becomes exactly 0 when ``|A_jk| ≤ λ Σ_i|B_ij| / Σ_i B_ij²``. So ``λ`` is
given relative to ``lambda_scale(A, B) = rms(A) · rms(B)`` per layer (the workflow's and the CLI's
default): ``lam = DEFAULT_LAM_REL * lambda_scale(A, B)``. ``DEFAULT_LAM_REL = 0.5`` was chosen by a
sweep over real trained MiniLM adapters: about 27 % of the entries of ``Â``, ``B̂`` become exact
zeros (at most 28 % in any layer, far from a collapse), the generators move by 13 %
(``‖Ĝ − G‖² / ‖G‖²``), the fast solver's and Algorithm 1's Tropical masks agree (retained-set Jaccard
0.997), and the Tropical mask differs from Standard's more than at smaller λ. The absolute
``DEFAULT_LAM1 = DEFAULT_LAM2 = 8e-4`` (used only when ``solve`` is called without λ) is that rule at
the scale of an adapter trained with the paper's recipe on MiniLM (``lambda_scale`` ≈ 1.55e-3).
``DEFAULT_LR = 0.5`` is Algorithm 1's step relative to each layer's curvature
(``algorithm1_step_size``). ``DEFAULT_STEPS = 1000`` (an upper bound: with ``DEFAULT_TOL = 1e-6``
the fast solver stops after 2 to 7 steps).

Gauge. The objective does not fix how each hidden unit's scale is split between ``â_j`` and
``b̂_{:,j}``, but ``P_T`` depends on it; ``solve`` therefore returns both solvers' output in the
conserved gauge of ``docs/METHOD.md`` (``conserved_gauge``), which makes the Tropical masks
independent of the solver.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_LAM1",
    "DEFAULT_LAM2",
    "DEFAULT_LAM_REL",
    "DEFAULT_LR",
    "DEFAULT_STEPS",
    "DEFAULT_TOL",
    "METHODS",
    "CollapsedLayerError",
    "MAX_ZERO_SHARE",
    "SolveResult",
    "algorithm1_step_size",
    "check_lambda",
    "check_not_collapsed",
    "conserved_gauge",
    "generators",
    "lambda_scale",
    "layer_lambdas",
    "materialized_objective",
    "objective",
    "objective_per_layer",
    "solve",
    "unit_balance",
    "zero_shares",
]

from .defaults import (  # noqa: E402  (torch-free, so the workflow reads them without torch)
    DEFAULT_LAM1,
    DEFAULT_LAM2,
    DEFAULT_LAM_REL,
    DEFAULT_LR,
    DEFAULT_STEPS,
    DEFAULT_TOL,
    MAX_ZERO_SHARE,
)

METHODS = ("fast", "algorithm1")


# --------------------------------------------------------------------------- validation


def _check_pair(A: Tensor, B: Tensor, what: str = "A, B") -> tuple[int, int]:
    """Check ``A (..., r, d+1)`` and ``B (..., d, r)``; return ``(d, r)``."""
    if not isinstance(A, Tensor) or not isinstance(B, Tensor):
        raise TypeError(f"{what}: expected torch tensors, got {type(A).__name__}, {type(B).__name__}")
    if A.dim() < 2 or B.dim() < 2:
        raise ValueError(f"{what}: A must be (..., r, d+1) and B (..., d, r); got {tuple(A.shape)}, {tuple(B.shape)}")
    if A.shape[:-2] != B.shape[:-2]:
        raise ValueError(f"{what}: leading (layer) dims differ: A {tuple(A.shape)}, B {tuple(B.shape)}")
    r, d1 = A.shape[-2:]
    d, rb = B.shape[-2:]
    if rb != r or d1 != d + 1:
        raise ValueError(
            f"{what}: shapes do not fit A (..., r, d+1), B (..., d, r): A {tuple(A.shape)}, B {tuple(B.shape)}"
        )
    if not (A.is_floating_point() and B.is_floating_point()):
        raise TypeError(f"{what}: expected floating-point tensors, got {A.dtype}, {B.dtype}")
    return d, r


def _check_all(A: Tensor, B: Tensor, A_hat: Tensor, B_hat: Tensor) -> None:
    _check_pair(A, B, "A, B")
    _check_pair(A_hat, B_hat, "A_hat, B_hat")
    if A_hat.shape != A.shape or B_hat.shape != B.shape:
        raise ValueError(
            f"A_hat {tuple(A_hat.shape)} / B_hat {tuple(B_hat.shape)} must have the shapes of "
            f"A {tuple(A.shape)} / B {tuple(B.shape)}"
        )


def _lam(lam: float | Tensor, name: str, lead: torch.Size, dtype: torch.dtype, device) -> Tensor:
    """λ as a tensor broadcastable to ``lead + (1, 1)`` (a float, or one value per layer)."""
    if isinstance(lam, bool) or not isinstance(lam, (Real, Tensor)):
        raise TypeError(f"{name} must be a non-negative number or a tensor of per-layer values, got {lam!r}")
    t = torch.as_tensor(lam, dtype=dtype, device=device)
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0, got {lam!r}")
    if t.dim() > 0:
        try:
            torch.broadcast_shapes(t.shape, lead)
        except RuntimeError:
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not broadcast to the layer dims {tuple(lead)}"
            ) from None
        if torch.broadcast_shapes(t.shape, lead) != lead:
            raise ValueError(f"{name} of shape {tuple(t.shape)} does not broadcast to the layer dims {tuple(lead)}")
        t = t[..., None, None]
    else:
        t = t.reshape(1, 1)
    return t


# --------------------------------------------------------------------------- objective


def generators(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    """Zonotope generators of every output node.

    Args:
        A: ``(..., r, d+1)`` down weight | down bias.
        B: ``(..., d, r)`` up weight.

    Returns:
        ``(G1, G2)``, each ``(..., d, r, d+1)``: ``G1[..., i, j, :] = B+[..., i, j] * A[..., j, :]``
        and ``G2[..., i, j, :] = B-[..., i, j] * A[..., j, :]``. Memory O(d² r): for tests and
        figures only.
    """
    _check_pair(A, B)
    Bp, Bm = B.clamp(min=0), (-B).clamp(min=0)
    Ae = A.unsqueeze(-3)  # (..., 1, r, d+1)
    return Bp.unsqueeze(-1) * Ae, Bm.unsqueeze(-1) * Ae


def objective_per_layer(
    A: Tensor, B: Tensor, A_hat: Tensor, B_hat: Tensor, lam1: float | Tensor, lam2: float | Tensor
) -> Tensor:
    """Eq. 2 summed over output nodes, per layer, in the factorized O(d r) form.

    Args:
        A, A_hat: ``(..., r, d+1)``; B, B_hat: ``(..., d, r)`` (same shapes).
        lam1, lam2: ``λ1, λ2 >= 0``; floats or tensors broadcastable to the leading dims.

    Returns:
        Tensor of shape ``(...)`` (the leading dims; 0-dim for a single layer), dtype of the
        promoted inputs.
    """
    _check_all(A, B, A_hat, B_hat)
    dtype = torch.promote_types(torch.promote_types(A.dtype, B.dtype), torch.promote_types(A_hat.dtype, B_hat.dtype))
    A, B, A_hat, B_hat = (t.to(dtype) for t in (A, B, A_hat, B_hat))
    lead = A.shape[:-2]
    l1 = _lam(lam1, "lam1", lead, dtype, A.device)
    l2 = _lam(lam2, "lam2", lead, dtype, A.device)
    D = A_hat - A
    e = (D * D).sum(-1).unsqueeze(-2)  # (..., 1, r)
    g = (D * A).sum(-1).unsqueeze(-2)
    n = (A * A).sum(-1).unsqueeze(-2)
    s = A_hat.abs().sum(-1).unsqueeze(-2)
    fit = B.new_zeros(())
    for U, U0 in ((B_hat.clamp(min=0), B.clamp(min=0)), ((-B_hat).clamp(min=0), (-B).clamp(min=0))):
        dU = U - U0
        fit = fit + U * U * e + 2 * U * dU * g + dU * dU * n
    pen = (l1 * B_hat.clamp(min=0) + l2 * (-B_hat).clamp(min=0)) * s
    return (0.5 * fit + pen).sum((-2, -1))


def objective(A: Tensor, B: Tensor, A_hat: Tensor, B_hat: Tensor, lam1: float | Tensor, lam2: float | Tensor) -> Tensor:
    """Eq. 2 summed over output nodes and over all layers (0-dim tensor), O(d r) per layer."""
    return objective_per_layer(A, B, A_hat, B_hat, lam1, lam2).sum()


def materialized_objective(
    A: Tensor, B: Tensor, A_hat: Tensor, B_hat: Tensor, lam1: float | Tensor, lam2: float | Tensor
) -> Tensor:
    """Eq. 2 from the explicit generators (``generators``), summed over nodes and layers; 0-dim.

    The plain formula ``½‖Ĝ1−G1‖²_F + ½‖Ĝ2−G2‖²_F + λ1‖Ĝ1‖_{1,1} + λ2‖Ĝ2‖_{1,1}``; memory
    O(d² r) per layer. Reference for testing ``objective``.
    """
    _check_all(A, B, A_hat, B_hat)
    lead = A.shape[:-2]
    G1, G2 = generators(A, B)
    H1, H2 = generators(A_hat, B_hat)
    dtype = torch.promote_types(G1.dtype, H1.dtype)
    l1 = _lam(lam1, "lam1", lead, dtype, A.device)
    l2 = _lam(lam2, "lam2", lead, dtype, A.device)
    per_layer = (
        0.5 * ((H1 - G1) ** 2).sum((-3, -2, -1))
        + 0.5 * ((H2 - G2) ** 2).sum((-3, -2, -1))
        + l1[..., 0, 0] * H1.abs().sum((-3, -2, -1))
        + l2[..., 0, 0] * H2.abs().sum((-3, -2, -1))
    )
    return per_layer.sum()


def lambda_scale(A: Tensor, B: Tensor) -> Tensor:
    """Natural scale of λ for a layer: ``rms(A) * rms(B)``; shape ``(...)`` (leading dims).

    ``λ`` thresholds generator entries ``B_ij A_jk``; with ``lam = c * lambda_scale(A, B)`` the
    solution does not depend on the overall scale of ``A`` and ``B`` (the objective is equivariant
    under ``A → αA, B → βB, λ → αβλ``).
    """
    _check_pair(A, B)
    return A.pow(2).mean((-2, -1)).sqrt() * B.pow(2).mean((-2, -1)).sqrt()


# --------------------------------------------------------------------------- gauge


def layer_lambdas(A: Tensor, B: Tensor, lam1: float, lam2: float, *, relative: bool = True):
    """Per-layer ``(λ1, λ2, scale)``, each of the leading dims: ``scale = lambda_scale(A, B)`` and
    ``λ = lam · scale`` when ``relative`` (the workflow's and the CLI's default), else ``λ = lam``."""
    scale = lambda_scale(A, B)
    factor = scale if relative else torch.ones_like(scale)
    return lam1 * factor, lam2 * factor, scale


def unit_balance(A: Tensor, B: Tensor) -> Tensor:
    """Per hidden unit ``j``: ``‖a_j‖² − ‖b_{:,j}‖²`` (row of ``A`` incl. bias, column of ``B``).

    Args:
        A: ``(..., r, d+1)``; B: ``(..., d, r)``.

    Returns:
        ``(..., r)``. Gradient flow on Eq. 2 conserves this quantity (the objective is invariant
        under ``â_j → α â_j, b̂_{:,j} → b̂_{:,j} / α``), so it fixes the split of each unit's scale.
    """
    _check_pair(A, B)
    return A.pow(2).sum(-1) - B.pow(2).sum(-2)


def conserved_gauge(A: Tensor, B: Tensor, A_hat: Tensor, B_hat: Tensor) -> tuple[Tensor, Tensor]:
    """Put every hidden unit of ``(Â, B̂)`` into the conserved gauge of ``docs/METHOD.md``.

    Eq. 2 depends on ``(Â, B̂)`` only through the products ``B̂±[i, j] â_j``, so rescaling unit ``j``
    (``â_j → α_j â_j``, ``b̂_{:,j} → b̂_{:,j} / α_j``, ``α_j > 0``) changes neither the objective nor
    the adapter's function, but it changes which entries are smallest, i.e. ``P_T``. This picks the
    ``α_j`` for which ``‖α_j â_j‖² − ‖b̂_{:,j} / α_j‖² = ‖a_j‖² − ‖b_{:,j}‖²`` (the quantity gradient
    flow conserves, ``unit_balance``): with ``x = α_j²``, ``n = ‖â_j‖²``, ``m = ‖b̂_{:,j}‖²``,
    ``c = ‖a_j‖² − ‖b_{:,j}‖²``, ``x = (c + sqrt(c² + 4 n m)) / (2 n)``.

    Evaluated without cancellation and without forming ``n m`` (which underflows float64 for norms
    below about 1e-77): from the norms ``ν = ‖â_j‖``, ``μ = ‖b̂_{:,j}‖`` (computed without squaring the
    entries) and ``ρ = hypot(c, 2 ν μ)``, the new norms are ``u = sqrt((c + ρ) / 2)`` of ``â_j`` and
    ``v = sqrt((ρ − c) / 2)`` of ``b̂_{:,j}`` (``u v = ν μ``, ``u² − v² = c``), so ``α_j = u / ν`` when
    ``c > 0``, ``μ / v`` when ``c < 0`` and ``sqrt(μ / ν)`` when ``c = 0``, and ``1 / α_j`` likewise.

    Dead units. A unit with ``â_j = 0`` or ``b̂_{:,j} = 0`` contributes nothing to the objective or to
    the adapter's output whatever the other factor is; rule: both factors are set to exactly zero
    (so ``P_T`` ranks all of the unit's entries as zeros, ties broken by original magnitude). So is a
    unit whose rescaled ``â_j`` or ``b̂_{:,j}`` underflows to zero (its products ``b̂_ij â_j`` are
    below float64's range, about 1e-308).

    Args:
        A, A_hat: ``(..., r, d+1)``; B, B_hat: ``(..., d, r)``; the originals fix the gauge.

    Returns:
        ``(Â', B̂')`` of the shapes and dtypes of ``A_hat``, ``B_hat`` (computed in float64). The
        objective changes only by rounding (≤ 1e-10 relative in float64; tests).
    """
    _check_all(A, B, A_hat, B_hat)
    A64, B64 = A.to(torch.float64), B.to(torch.float64)
    Ah, Bh = A_hat.to(torch.float64), B_hat.to(torch.float64)
    nu, mu = _norm(Ah, -1), _norm(Bh, -2)  # (..., r)
    c = unit_balance(A64, B64)
    alive = (nu > 0) & (mu > 0)
    nu, mu = torch.where(alive, nu, 1.0), torch.where(alive, mu, 1.0)
    rho = torch.hypot(c, 2 * nu * mu)
    u, v = torch.sqrt((c + rho) / 2), torch.sqrt((rho - c) / 2)
    alpha = torch.where(c > 0, u / nu, torch.where(c < 0, mu / v, mu.sqrt() / nu.sqrt()))
    inv = torch.where(c > 0, nu / u, torch.where(c < 0, v / mu, nu.sqrt() / mu.sqrt()))
    alive &= (alpha * nu > 0) & (inv * mu > 0) & torch.isfinite(alpha) & torch.isfinite(inv)
    A_g = Ah * torch.where(alive, alpha, 0.0).unsqueeze(-1)
    B_g = Bh * torch.where(alive, inv, 0.0).unsqueeze(-2)
    return A_g.to(A_hat.dtype), B_g.to(B_hat.dtype)


def _norm(X: Tensor, dim: int) -> Tensor:
    """Euclidean norm along ``dim`` without squaring the raw entries (``torch.linalg.vector_norm``
    returns 0 for entries below about 1e-154 in float64): scaled by the largest magnitude first."""
    s = X.abs().amax(dim, keepdim=True)
    s = torch.where(s > 0, s, 1.0)
    return (s * torch.linalg.vector_norm(X / s, dim=dim, keepdim=True)).squeeze(dim)


def zero_shares(A_hat: Tensor, B_hat: Tensor) -> tuple[Tensor, Tensor]:
    """Share of exact zeros in ``Â`` and in ``B̂`` per layer: two tensors of the leading dims."""
    _check_pair(A_hat, B_hat, "A_hat, B_hat")
    return (A_hat == 0).double().mean((-2, -1)), (B_hat == 0).double().mean((-2, -1))


class CollapsedLayerError(ValueError):
    """λ drove a layer's ``Â`` or ``B̂`` (almost) entirely to zero, so ``P_T`` would be meaningless."""


def check_not_collapsed(
    A_hat: Tensor, B_hat: Tensor, lam1, lam2, names=None, *, max_zero_share: float = MAX_ZERO_SHARE
) -> None:
    """Raise :class:`CollapsedLayerError` naming λ and the layer when a layer's ``Â`` or ``B̂`` has
    a share of exact zeros ``>= max_zero_share``.

    Args:
        A_hat: ``(L, r, d+1)`` or ``(r, d+1)``; B_hat: ``(L, d, r)`` or ``(d, r)``.
        lam1, lam2: the λ used (floats or per-layer tensors), for the message.
        names: optional layer names (default: ``layer <k>``).
    """
    zA, zB = (z.reshape(-1) for z in zero_shares(A_hat, B_hat))
    names = list(names) if names is not None else [f"layer {k}" for k in range(zA.numel())]
    l1, l2 = (_per_layer(lam, zA.numel()) for lam in (lam1, lam2))
    bad = [
        f"{names[k]}: {100 * float(zA[k]):.1f} % of A_hat and {100 * float(zB[k]):.1f} % of B_hat are exact zeros "
        f"(lam1 = {float(l1[k]):.3g}, lam2 = {float(l2[k]):.3g})"
        for k in range(zA.numel())
        if float(zA[k]) >= max_zero_share or float(zB[k]) >= max_zero_share
    ]
    if bad:
        raise CollapsedLayerError(
            "the tropical solve collapsed: lambda is so large that P_T becomes meaningless (it would rank "
            "by original magnitude only). Lower lambda (tropical.lam1/lam2), or opt in with "
            "tropical.allow_collapse: true.\n  " + "\n  ".join(bad)
        )


def check_lambda(A: Tensor, B: Tensor, lam1, lam2, names=None, *, max_zero_share: float = MAX_ZERO_SHARE) -> None:
    """:func:`check_not_collapsed` for ``λ`` itself, whatever solver is used: it reads the exact zeros of
    the fast solver's optimum of the same objective (Algorithm 1's gradient steps leave no exact zeros,
    so its own output cannot show a collapse). ``A (L, r, d+1)``, ``B (L, d, r)``; about 0.1 s."""
    res = solve(A, B, lam1=lam1, lam2=lam2, method="fast")
    check_not_collapsed(res.A_hat, res.B_hat, lam1, lam2, names, max_zero_share=max_zero_share)


def _per_layer(value, n: int) -> Tensor:
    """A float or per-layer tensor as a flat float64 tensor of ``n`` values (for messages/records)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu().reshape(-1)
    return t.expand(n) if t.numel() == 1 else t


# --------------------------------------------------------------------------- solvers


@dataclass
class SolveResult:
    """Output of ``solve``.

    Attributes:
        A_hat: same shape/dtype as ``A``: optimized down weight | down bias.
        B_hat: same shape/dtype as ``B``: optimized up weight.
        trace: float64, ``(steps + 1,)`` for one layer or ``(steps + 1, *leading dims)`` for a
            batch (``(steps + 1, L)``); row 0 is the initial objective ``L(A, B)``, row ``t``
            the combined objective after step ``t``; a layer that converged early keeps its
            final value.
        steps: number of steps actually run (the most of any layer).
        converged: True when every layer met ``tol`` before ``steps`` ran out.
        layer_steps: int64 of the leading dims: steps each layer ran before it converged.
    """

    A_hat: Tensor
    B_hat: Tensor
    trace: Tensor
    steps: int
    converged: bool
    layer_steps: Tensor


@contextlib.contextmanager
def _one_cpu_thread():
    """Run ``solve`` on one intra-op CPU thread (restored afterwards).

    The solvers' per-step tensors are small (fast: a few hundred entries; Algorithm 1: one node);
    with several intra-op threads on a busy
    machine, every parallelised call (``searchsorted``) waits for a free core (measured: 11 ms
    instead of 37 µs per call on a loaded 2-core host), so one thread is both faster and
    steadier; the one-off sorts take tens of milliseconds on one thread.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class _Tails:
    """Sums over the entries above a threshold, per row: ``mag`` sorted once, O(log n) per query.

    ``mag`` has shape ``(..., n)``, entries >= 0; ``above(thr)`` with ``thr`` of shape ``(...)``
    returns the count, sum and sum of squares of the entries ``> thr`` of each row.
    """

    def __init__(self, mag: Tensor):
        desc, _ = torch.sort(mag, dim=-1, descending=True)
        self.neg = (-desc).contiguous()  # ascending, for searchsorted
        z = desc.new_zeros(desc.shape[:-1] + (1,))
        count = torch.arange(desc.shape[-1] + 1, dtype=desc.dtype, device=desc.device).expand(z.shape[:-1] + (-1,))
        # R[..., m, :] = (m, sum, sum of squares) of the m largest entries
        self.R = torch.stack(
            [count, torch.cat([z, desc.cumsum(-1)], -1), torch.cat([z, (desc * desc).cumsum(-1)], -1)], -1
        )

    def above(self, thr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        m = torch.searchsorted(self.neg, -thr.unsqueeze(-1))  # number of entries > thr
        return self.R.gather(-2, m.unsqueeze(-1).expand(m.shape + (3,))).squeeze(-2).unbind(-1)


def _solve_fast(A: Tensor, B: Tensor, lam1: Tensor, lam2: Tensor, steps: int, tol: float):
    """Exact block-coordinate descent; ``A (L, r, d+1)``, ``B (L, d, r)`` float64, ``lam (L,)``.

    Works with thresholds only. ``|Â_jk| = x_j (|A_jk| − θ_j)+`` and ``|B̂_ij| = ρ_j (|B_ij| − φ_ij)+``;
    with the unscaled sums over survivors ``s0 = Σ(|a|−θ)+``, ``c0 = Σ|a|(|a|−θ)+``,
    ``n0 = Σ(|a|−θ)+²`` of row ``j`` of ``|A|`` and ``w0 = Σ|b|(|b|−φ)+``, ``q0 = Σ(|b|−φ)+²``,
    ``τ0 = Σ λ(|b|−φ)+`` of column ``j`` of ``|B|``, the two block minimisers are
    ``θ = τ0 / w0, x = w0 / (ρ q0)`` (Â-step) and ``φ± = λ± s0 / c0, ρ = c0 / (x n0)`` (B̂-step).
    The objective depends on ``x, ρ`` only through ``π = x ρ = c0 / n0`` (generators are products),
    so the loop carries thresholds and ``π``; the per-unit gauge ``g = ρ q0 / w0 = 1 / x_next`` is
    tracked for the final ``Â, B̂``. A unit with no survivors is dead (threshold set above every
    entry) and stays dead.
    """
    Ln, r, _ = A.shape
    if steps == 0:
        trace = objective_per_layer(A, B, A, B, lam1, lam2)
        return A.clone(), B.clone(), trace[None], torch.zeros(Ln, dtype=torch.long), False
    TA = _Tails(A.abs())  # rows of |A|: (L, r, d+1)
    Bt = B.transpose(-1, -2)
    TB = _Tails(torch.stack([Bt.clamp(min=0), (-Bt).clamp(min=0)], -2))  # columns of B+, B-: (L, r, 2, d)
    lamB = torch.stack([lam1[:, None].expand(Ln, r), lam2[:, None].expand(Ln, r)], -1)  # (L, r, 2)
    half_N0 = 0.5 * ((B * B).sum(-2) * (A * A).sum(-1)).sum(-1)  # (L,): ½ Σ_j Σ_i B_ij² ‖a_j‖²
    dead_A, dead_B = float(A.abs().max()) * 2 + 1, float(B.abs().max()) * 2 + 1  # thresholds above all

    def a_sums(th):
        m, S1, S2 = TA.above(th)
        s0 = torch.addcmul(S1, m, th, value=-1)
        c0 = torch.addcmul(S2, th, S1, value=-1)
        return s0, c0, torch.addcmul(c0, th, s0, value=-1)

    def b_sums(phi):
        m, S1, S2 = TB.above(phi)
        sk = torch.addcmul(S1, m, phi, value=-1)
        wk = torch.addcmul(S2, phi, S1, value=-1)
        qk = torch.addcmul(wk, phi, sk, value=-1)
        return wk.sum(-1), qk.sum(-1), (lamB * sk).sum(-1)

    def obj(pi, s0, c0, n0, w0, q0, tau0):  # Σ_j ½(π² q0 n0 − 2π w0 c0 + N0) + π τ0 s0
        inner = torch.addcmul(torch.addcmul(tau0 * s0, w0, c0, value=-1), q0 * n0, pi, value=0.5)
        return half_N0 + (pi * inner).sum(-1)

    th, phi = A.new_zeros(Ln, r), A.new_zeros(Ln, r, 2)
    pi = A.new_ones(Ln, r)
    s0, c0, n0 = a_sums(th)
    w0, q0, tau0 = b_sums(phi)
    g_prev = (q0 / w0).nan_to_num(0.0)  # ρ = 1 at the start: g = q0 / w0 (= 1 unless dead)
    g = g_prev
    cur = obj(pi, s0, c0, n0, w0, q0, tau0)
    trace = [cur]
    active = torch.ones(Ln, dtype=torch.bool, device=A.device)
    layer_steps = torch.zeros(Ln, dtype=torch.long)
    t = 0
    while t < steps:
        t += 1
        layer_steps += active.cpu()
        # Â-step: θ = τ0 / w0 (dead when w0 = 0)
        th_n = (tau0 / w0).nan_to_num(nan=dead_A, posinf=dead_A)
        s0_n, c0_n, n0_n = a_sums(th_n)
        # B̂-step: π = x ρ = c0 / n0, φ± = λ± s0 / c0 (dead when no survivor)
        pi_n = (c0_n / n0_n).nan_to_num(0.0, 0.0, 0.0).clamp(min=0)
        phi_n = (lamB * (s0_n / (pi_n * n0_n)).unsqueeze(-1)).nan_to_num(nan=dead_B, posinf=dead_B)
        w0_n, q0_n, tau0_n = b_sums(phi_n)
        g_n = (pi_n * g * q0_n / w0_n).nan_to_num(0.0, 0.0, 0.0)  # ρ_t q0 / w0 with ρ_t = π_t g_{t-1}
        new = obj(pi_n, s0_n, c0_n, n0_n, w0_n, q0_n, tau0_n)
        if tol > 0 and not bool(active.all()):  # converged layers keep their state
            a1, a2 = active[:, None], active[:, None, None]
            th_n, pi_n, phi_n = torch.where(a1, th_n, th), torch.where(a1, pi_n, pi), torch.where(a2, phi_n, phi)
            w0_n, q0_n, tau0_n = torch.where(a1, w0_n, w0), torch.where(a1, q0_n, q0), torch.where(a1, tau0_n, tau0)
            g_n, g = torch.where(a1, g_n, g), torch.where(a1, g, g_prev)
            new = torch.where(active, new, cur)
        th, pi, phi, w0, q0, tau0, g_prev, g = th_n, pi_n, phi_n, w0_n, q0_n, tau0_n, g, g_n
        if tol > 0:
            active = active & ((cur - new).abs() >= tol * cur.abs())
        cur = new
        trace.append(cur)
        if tol > 0 and not bool(active.any()):
            break
    # x = 1 / g_{T-1}, ρ = π g_{T-1}; dead units (g = 0 or π = 0) become exact zeros
    x = torch.where(g_prev > 0, 1 / g_prev, 0.0)
    rho = pi * g_prev
    A_hat = torch.sign(A) * x[..., None] * (A.abs() - th[..., None]).clamp(min=0)
    phiB = torch.where(B > 0, phi[..., 0].unsqueeze(-2), phi[..., 1].unsqueeze(-2))  # (L, d, r)
    B_hat = torch.sign(B) * rho.unsqueeze(-2) * (B.abs() - phiB).clamp(min=0)
    return A_hat, B_hat, torch.stack(trace), layer_steps, not bool(active.any())


def algorithm1_step_size(A: Tensor, B: Tensor, lr: float = DEFAULT_LR) -> Tensor:
    """Algorithm 1's step ``η`` per layer: ``lr / max(max_j ‖a_j‖², max_j ‖b_{:,j}‖²)``; shape ``(...)``.

    Within one step Algorithm 1 updates ``â_j`` once per output node, ``d`` updates whose curvatures
    ``B̂±[i, j]²`` add up to ``‖b̂_{:,j}‖²``, and each ``b̂_ij`` with curvature ``‖â_j‖²``; a step
    ``η`` below ``2 / max`` of those is stable. Scaling by the layer's own curvature makes one
    relative ``lr`` converge on any model (a fixed absolute ``η = 0.5`` diverged on weights of
    scale 0.5).
    """
    _check_pair(A, B)
    curv = torch.maximum(A.pow(2).sum(-1).amax(-1), B.pow(2).sum(-2).amax(-1))
    return lr / curv.clamp(min=torch.finfo(curv.dtype).tiny)


def _algorithm1_layer(A: Tensor, B: Tensor, lam1: float, lam2: float, steps: int, eta: float, tol: float, name: str):
    """Paper's Algorithm 1 on one layer (``A (r, d+1)``, ``B (d, r)``), per-node autograd steps of size
    ``eta`` (absolute); ``name`` is used in errors."""
    d = B.shape[0]
    Bp, Bm = B.clamp(min=0), (-B).clamp(min=0)
    A_hat, B_hat = A.clone(), B.clone()
    with torch.no_grad():
        cur = objective(A, B, A_hat, B_hat, lam1, lam2)
    trace = [cur]
    converged = False
    t = 0
    while t < steps:
        t += 1
        even = t % 2 == 0
        lam, target = (lam1, Bp) if even else (lam2, Bm)
        for i in range(d):
            Ah = A_hat.detach().requires_grad_(True)
            bi = B_hat[i].clone().requires_grad_(True)
            u = bi.clamp(min=0) if even else (-bi).clamp(min=0)  # b̂^{i+} or b̂^{i-}
            G_hat = u[:, None] * Ah  # Ĝ^i = Diag[b̂^{i±}] Â
            G = target[i][:, None] * A  # G^i  = Diag[b^{i±}] A
            loss = 0.5 * ((G_hat - G) ** 2).sum() + lam * G_hat.abs().sum()
            gA, gb = torch.autograd.grad(loss, (Ah, bi))
            with torch.no_grad():
                A_hat = A_hat - eta * gA
                B_hat[i] -= eta * gb
        with torch.no_grad():
            new = objective(A, B, A_hat, B_hat, lam1, lam2)
        if not (bool(torch.isfinite(A_hat).all()) and bool(torch.isfinite(B_hat).all()) and math.isfinite(float(new))):
            raise FloatingPointError(
                f"algorithm1 diverged on {name} at step {t}: non-finite values (step size eta = {eta:.3g}); "
                "lower tropical.lr"
            )
        change = abs(float(cur) - float(new))
        cur = new
        trace.append(cur)
        if change < tol * abs(float(trace[-2])):
            converged = True
            break
    return A_hat, B_hat, torch.stack(trace), t, converged


def solve(
    A: Tensor,
    B: Tensor,
    *,
    lam1: float | Tensor = DEFAULT_LAM1,
    lam2: float | Tensor = DEFAULT_LAM2,
    method: str = "fast",
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    tol: float = DEFAULT_TOL,
    gauge: bool = True,
    layer_names: Sequence[str] | None = None,
    max_zero_share: float | None = None,
) -> SolveResult:
    """Minimise Eq. 2 over ``(Â, B̂)`` starting from ``Â = A``, ``B̂ = B``.

    Args:
        A: ``(..., r, d+1)`` down weight | down bias (leading dims = layers, solved independently).
        B: ``(..., d, r)`` up weight.
        lam1, lam2: ``λ1, λ2 >= 0``, floats or one value per layer (shape of the leading dims);
            see ``lambda_scale`` for a scale-aware choice.
        method: ``"fast"`` (exact block-coordinate descent, vectorised) or ``"algorithm1"``
            (the paper's per-node gradient descent; the slow reference).
        steps: maximum number of steps ``T >= 0``.
        lr: Algorithm 1's step size relative to each layer's curvature (``algorithm1_step_size``);
            not used by ``"fast"``.
        tol: a layer stops when the relative change of its objective is ``< tol`` (0: never).
        gauge: return ``(Â, B̂)`` in the conserved gauge (``conserved_gauge``; METHOD.md), which
            makes ``P_T`` independent of the solver. ``False`` returns the solver's raw split.
        layer_names: names of the layers (flattened leading dims) for error messages.
        max_zero_share: if given, refuse a λ that collapses a layer (:func:`check_not_collapsed`
            with this share). The check reads the fast solver's optimum, whichever ``method`` runs:
            Algorithm 1's gradient steps leave no exact zeros (:func:`check_lambda`), and it checks
            before Algorithm 1 starts, whose steps can diverge at a collapsing λ.

    Returns:
        ``SolveResult`` (see there; ``A_hat``/``B_hat`` on ``A``'s device and dtype).

    Raises:
        FloatingPointError: Algorithm 1 produced a non-finite value (names the layer and step).
        CollapsedLayerError: with ``max_zero_share``, a collapsed layer (names λ and the layer).
    """
    d, r = _check_pair(A, B)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, Real) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if isinstance(tol, bool) or not isinstance(tol, Real) or not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    with _one_cpu_thread():
        for name, t in (("A", A), ("B", B)):
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or inf")
        lead = A.shape[:-2]
        Lf = math.prod(lead)
        names = list(layer_names) if layer_names is not None else [f"layer {k}" for k in range(Lf)]
        if len(names) != Lf:
            raise ValueError(f"layer_names: {len(names)} names for {Lf} layers")
        A64 = A.detach().to(torch.float64).reshape(Lf, r, d + 1)
        B64 = B.detach().to(torch.float64).reshape(Lf, d, r)
        l1 = _lam(lam1, "lam1", lead, torch.float64, A.device).expand(lead + (1, 1)).reshape(Lf)
        l2 = _lam(lam2, "lam2", lead, torch.float64, A.device).expand(lead + (1, 1)).reshape(Lf)
        if method == "fast":
            A_hat, B_hat, trace, layer_steps, conv = _solve_fast(A64, B64, l1, l2, steps, float(tol))
        else:
            if max_zero_share is not None:  # before the loop: at a collapsing λ its steps can diverge
                check_lambda(A64, B64, l1, l2, names, max_zero_share=max_zero_share)
            eta = algorithm1_step_size(A64, B64, float(lr))
            outs = [
                _algorithm1_layer(
                    A64[k], B64[k], float(l1[k]), float(l2[k]), steps, float(eta[k]), float(tol), names[k]
                )
                for k in range(Lf)
            ]
            A_hat = torch.stack([o[0] for o in outs])
            B_hat = torch.stack([o[1] for o in outs])
            layer_steps = torch.tensor([o[3] for o in outs], dtype=torch.long)
            conv = all(o[4] for o in outs)
            n = int(layer_steps.max()) if Lf else 0
            # pad early-stopped layers with their final value
            trace = torch.stack([torch.cat([o[2], o[2][-1:].expand(n + 1 - o[2].shape[0])]) for o in outs], -1)
        if gauge:
            A_hat, B_hat = conserved_gauge(A64, B64, A_hat, B_hat)
        if max_zero_share is not None and method == "fast":
            check_not_collapsed(A_hat, B_hat, l1, l2, names, max_zero_share=max_zero_share)
    n = trace.shape[0] - 1
    return SolveResult(
        A_hat=A_hat.reshape(A.shape).to(A.dtype),
        B_hat=B_hat.reshape(B.shape).to(B.dtype),
        trace=trace.reshape((n + 1,) + tuple(lead)),
        steps=int(n),
        converged=bool(conv),
        layer_steps=layer_steps.reshape(tuple(lead)),
    )
