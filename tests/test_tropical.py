"""Tests of adapter_pruning.tropical: objective forms, generators and both solvers."""

from __future__ import annotations

import math

import pytest
import torch

from adapter_pruning import tropical as T
from adapter_pruning.tropical import (
    generators,
    lambda_scale,
    materialized_objective,
    objective,
    objective_per_layer,
    solve,
)

F64 = torch.float64


def rand_layers(lead, d, r, seed=0, scale=1.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    A = scale * torch.randn(*lead, r, d + 1, generator=g, dtype=dtype)
    B = scale * torch.randn(*lead, d, r, generator=g, dtype=dtype)
    return A, B


def perturbed(A, B, seed=1):
    g = torch.Generator().manual_seed(seed)
    A_hat = A + 0.4 * torch.randn(A.shape, generator=g, dtype=A.dtype)
    B_hat = B + 0.6 * torch.randn(B.shape, generator=g, dtype=B.dtype)  # flips some signs
    A_hat[..., 0, :2] = 0.0  # exact zeros exercise the |.| and max(., 0) kinks
    B_hat[..., 0, 0] = 0.0
    return A_hat, B_hat


# --------------------------------------------------------------------------- generators / objective


def test_generators_are_diag_scaled_rows():
    A, B = rand_layers((), 4, 3)
    G1, G2 = generators(A, B)
    assert G1.shape == G2.shape == (4, 3, 5)
    for i in range(4):
        for j in range(3):
            assert torch.equal(G1[i, j], max(B[i, j].item(), 0.0) * A[j])
            assert torch.equal(G2[i, j], max(-B[i, j].item(), 0.0) * A[j])
    torch.testing.assert_close(G1 - G2, B[..., None] * A[None], rtol=0, atol=0)


@pytest.mark.parametrize(
    "lead,d,r",
    [((), 5, 2), ((), 9, 4), ((3,), 6, 3), ((2, 2), 4, 5), ((4,), 16, 1)],
)
def test_objective_equals_materialized(lead, d, r):
    A, B = rand_layers(lead, d, r, seed=d * 10 + r)
    A_hat, B_hat = perturbed(A, B, seed=r)
    for lam1, lam2 in [(0.0, 0.0), (0.3, 0.0), (0.0, 0.7), (0.25, 1.5)]:
        fast = objective(A, B, A_hat, B_hat, lam1, lam2)
        ref = materialized_objective(A, B, A_hat, B_hat, lam1, lam2)
        assert fast.shape == ref.shape == ()
        torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    per = objective_per_layer(A, B, A_hat, B_hat, 0.25, 1.5)
    assert per.shape == A.shape[:-2]
    torch.testing.assert_close(per.sum(), materialized_objective(A, B, A_hat, B_hat, 0.25, 1.5), rtol=1e-12, atol=0)


def test_objective_per_layer_lambda_tensor_and_manual_formula():
    A, B = rand_layers((3,), 6, 2, seed=5)
    A_hat, B_hat = perturbed(A, B)
    lam1 = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    lam2 = torch.tensor([1.0, 0.1, 0.0], dtype=F64)
    per = objective_per_layer(A, B, A_hat, B_hat, lam1, lam2)
    for k in range(3):
        G1, G2 = generators(A[k], B[k])
        H1, H2 = generators(A_hat[k], B_hat[k])
        manual = 0.0
        for i in range(6):  # Eq. 2 node by node
            manual += (
                0.5 * torch.linalg.matrix_norm(H1[i] - G1[i]) ** 2 + 0.5 * torch.linalg.matrix_norm(H2[i] - G2[i]) ** 2
            )
            manual += lam1[k] * H1[i].abs().sum() + lam2[k] * H2[i].abs().sum()
        torch.testing.assert_close(per[k], manual, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(materialized_objective(A, B, A_hat, B_hat, lam1, lam2), per.sum(), rtol=1e-12, atol=0)


def test_objective_at_start_is_the_penalty():
    A, B = rand_layers((2,), 7, 3, seed=3)
    assert objective(A, B, A, B, 0.0, 0.0).item() == 0.0
    val = objective(A, B, A, B, 0.3, 0.9)
    s = A.abs().sum(-1)  # ‖a_j‖_1
    expect = 0.3 * (B.clamp(min=0) * s[..., None, :]).sum() + 0.9 * ((-B).clamp(min=0) * s[..., None, :]).sum()
    torch.testing.assert_close(val, expect, rtol=1e-13, atol=0)


def test_objective_float32_near_start_is_accurate():
    # the cancellation-free form keeps the fit term accurate when Â ≈ A in float32
    A, B = rand_layers((), 64, 8, seed=2, scale=0.02, dtype=torch.float32)
    A_hat = A * (1 + 1e-3)
    ref = materialized_objective(A.double(), B.double(), A_hat.double(), B.double(), 0.0, 0.0)
    got = objective(A, B, A_hat, B, 0.0, 0.0)
    torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=0)


# --------------------------------------------------------------------------- solvers


@pytest.mark.parametrize("method", ["fast", "algorithm1"])
def test_zero_steps_returns_inputs(method):
    A, B = rand_layers((2,), 5, 3, dtype=torch.float32)
    res = solve(A, B, lam1=0.4, lam2=0.2, steps=0, method=method)
    assert torch.equal(res.A_hat, A) and torch.equal(res.B_hat, B)
    assert res.A_hat.dtype == torch.float32 and res.steps == 0 and not res.converged
    assert res.trace.shape == (1, 2) and res.trace.dtype == F64
    torch.testing.assert_close(
        res.trace[0], objective_per_layer(A.double(), B.double(), A.double(), B.double(), 0.4, 0.2)
    )
    single = solve(A[0], B[0], steps=0, method=method)
    assert single.trace.shape == (1,)


@pytest.mark.parametrize("seed", range(4))
def test_fast_not_worse_than_algorithm1_at_equal_steps(seed):
    A, B = rand_layers((2,), 8, 3, seed=seed, scale=0.5)
    lam1, lam2 = 0.05 * (seed + 1), 0.1
    for steps in (1, 2, 5, 20):
        fast = solve(A, B, lam1=lam1, lam2=lam2, steps=steps, tol=0.0)
        ref = solve(A, B, lam1=lam1, lam2=lam2, steps=steps, tol=0.0, method="algorithm1", lr=0.1)
        assert fast.steps == ref.steps == steps
        assert (fast.trace[-1] <= ref.trace[-1] + 1e-12).all(), (steps, fast.trace[-1], ref.trace[-1])
        assert (ref.trace[-1] < ref.trace[0]).all()  # the reference did make progress


def test_fast_trace_non_increasing_and_consistent():
    A, B = rand_layers((3,), 12, 4, seed=7, scale=0.3)
    res = solve(A, B, lam1=0.08, lam2=0.03, steps=60, tol=0.0)
    assert res.trace.shape == (61, 3) and res.steps == 60 and not res.converged
    prev, nxt = res.trace[:-1], res.trace[1:]
    assert (nxt <= prev + 1e-12 * prev.abs()).all()
    assert (res.trace[-1] < res.trace[0]).all()
    # the trace is the objective of what is returned
    torch.testing.assert_close(
        res.trace[-1], objective_per_layer(A, B, res.A_hat, res.B_hat, 0.08, 0.03), rtol=1e-10, atol=1e-12
    )


def test_fast_first_step_is_exact_block_minimisation():
    """One fast step = Â = soft(w a, τ)/q given B, then the closed-form B̂ given that Â (dense check)."""
    A, B = rand_layers((), 10, 4, seed=11, scale=0.7)
    lam1, lam2 = 0.2, 0.05
    res = solve(A, B, lam1=lam1, lam2=lam2, steps=1, tol=0.0, gauge=False)  # the raw block updates
    U0, V0 = B.clamp(min=0), (-B).clamp(min=0)
    q = (U0**2 + V0**2).sum(0)
    w = (U0 * U0 + V0 * V0).sum(0)
    tau = lam1 * U0.sum(0) + lam2 * V0.sum(0)
    wa = w[:, None] * A
    A_exp = torch.sign(wa) * (wa.abs() - tau[:, None]).clamp(min=0) / q[:, None]
    torch.testing.assert_close(res.A_hat, A_exp, rtol=1e-12, atol=1e-14)
    nh, c, s = (A_exp**2).sum(1), (A_exp * A).sum(1), A_exp.abs().sum(1)
    lam = lam1 * (B > 0).double() + lam2 * (B <= 0).double()
    B_exp = torch.sign(B) * (B.abs() * c - lam * s).clamp(min=0) / nh
    torch.testing.assert_close(res.B_hat, B_exp, rtol=1e-12, atol=1e-14)


def test_fast_fixed_point_is_coordinatewise_optimal():
    A, B = rand_layers((), 9, 3, seed=4, scale=0.5)
    lam1, lam2 = 0.1, 0.15
    res = solve(A, B, lam1=lam1, lam2=lam2, steps=500, tol=1e-14)
    base = objective(A, B, res.A_hat, res.B_hat, lam1, lam2)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):  # no single-coordinate move (incl. sign flips) improves the objective
        A_hat, B_hat = res.A_hat.clone(), res.B_hat.clone()
        eps = float(torch.randn((), generator=g, dtype=F64)) * 0.05
        if torch.rand((), generator=g) < 0.5:
            j, k = torch.randint(3, (1,), generator=g).item(), torch.randint(10, (1,), generator=g).item()
            A_hat[j, k] += eps
        else:
            i, j = torch.randint(9, (1,), generator=g).item(), torch.randint(3, (1,), generator=g).item()
            B_hat[i, j] += eps
        assert objective(A, B, A_hat, B_hat, lam1, lam2) >= base - 1e-12


def test_fast_signs_and_sparsity():
    A, B = rand_layers((2,), 40, 6, seed=8, scale=0.02)
    lam = T.DEFAULT_LAM_REL * lambda_scale(A, B)
    res = solve(A, B, lam1=lam, lam2=lam)
    assert res.converged and res.steps < 50
    # never a sign flip: zero or the original sign
    assert ((torch.sign(res.A_hat) == torch.sign(A)) | (res.A_hat == 0)).all()
    assert ((torch.sign(res.B_hat) == torch.sign(B)) | (res.B_hat == 0)).all()
    zA, zB = (res.A_hat == 0).double().mean(), (res.B_hat == 0).double().mean()
    assert 0.03 < zA < 0.5 and 0.03 < zB < 0.5  # informative: some but not most entries are exact zeros
    # geometry kept: the generators move by a modest relative amount
    G1, G2 = generators(A, B)
    H1, H2 = generators(res.A_hat, res.B_hat)
    rel = ((H1 - G1).norm() ** 2 + (H2 - G2).norm() ** 2) / (G1.norm() ** 2 + G2.norm() ** 2)
    assert rel < 0.15


@pytest.mark.parametrize("rel1,rel2", [(3.0, 3.0), (20.0, 20.0), (10.0, 0.5), (0.0, 8.0)])
def test_fast_large_lambda_kills_units_consistently(rel1, rel2):
    A, B = rand_layers((3,), 49, 8, seed=21, scale=0.02)
    B[0, :, 3] = 0.0  # a unit with no outgoing weights is dead from the start
    A[1, 2] = 0.0  # and one with no inputs
    sc = lambda_scale(A, B)
    res = solve(A, B, lam1=rel1 * sc, lam2=rel2 * sc, steps=100, tol=0.0)
    assert torch.isfinite(res.trace).all() and torch.isfinite(res.A_hat).all() and torch.isfinite(res.B_hat).all()
    assert (res.trace[1:] <= res.trace[:-1] + 1e-12 * res.trace[:-1].abs()).all()
    dead_rows = (res.A_hat == 0).all(-1)  # (L, r)
    dead_cols = (res.B_hat == 0).all(-2)
    assert torch.equal(dead_rows, dead_cols)  # a unit is dead on both sides or on neither
    assert dead_rows[0, 3] and dead_rows[1, 2] and dead_rows.any(-1).all()
    obj = objective_per_layer(A, B, res.A_hat, res.B_hat, rel1 * sc, rel2 * sc)
    torch.testing.assert_close(res.trace[-1], obj, rtol=1e-7, atol=0)


def test_scale_equivariance():
    A, B = rand_layers((2,), 10, 3, seed=9, scale=0.05)
    lam = 0.3 * lambda_scale(A, B)
    for gauge, (alpha, beta) in ((False, (3.0, 0.25)), (True, (3.0, 3.0))):
        # the raw solution is equivariant under any (alpha, beta); the conserved gauge fixes each
        # unit's split by ‖a_j‖² − ‖b_j‖², which is homogeneous only for alpha = beta
        r1 = solve(A, B, lam1=lam, lam2=lam, steps=20, tol=0.0, gauge=gauge)
        ab = alpha * beta
        r2 = solve(alpha * A, beta * B, lam1=lam * ab, lam2=lam * ab, steps=20, tol=0.0, gauge=gauge)
        torch.testing.assert_close(r2.A_hat, alpha * r1.A_hat, rtol=1e-9, atol=1e-15)
        torch.testing.assert_close(r2.B_hat, beta * r1.B_hat, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(lambda_scale(alpha * A, beta * B), alpha * beta * lambda_scale(A, B))


@pytest.mark.parametrize("method", ["fast", "algorithm1"])
def test_batched_equals_per_layer_with_early_stopping(method):
    A, B = rand_layers((3,), 6, 2, seed=12, scale=0.5)
    A[1] *= 0.1  # layers converge at different steps
    kw = dict(lam1=0.05, lam2=0.08, steps=40, tol=1e-4, method=method, lr=0.2)
    batch = solve(A, B, **kw)
    singles = [solve(A[k], B[k], **kw) for k in range(3)]
    assert batch.steps == max(s.steps for s in singles)
    assert batch.converged == all(s.converged for s in singles)
    for k, s in enumerate(singles):
        torch.testing.assert_close(batch.A_hat[k], s.A_hat, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(batch.B_hat[k], s.B_hat, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(batch.trace[: s.steps + 1, k], s.trace, rtol=1e-12, atol=1e-14)
        assert (batch.trace[s.steps :, k] == s.trace[-1]).all()  # frozen after convergence


def test_convergence_rule():
    A, B = rand_layers((2,), 10, 3, seed=13, scale=0.3)
    res = solve(A, B, lam1=0.05, lam2=0.05, steps=1000, tol=1e-8)
    assert res.converged and res.steps < 1000
    last, before = res.trace[-1], res.trace[-2]
    assert ((before - last).abs() < 1e-8 * before.abs()).all()


def test_algorithm1_alternates_g2_then_g1():
    A, B = rand_layers((), 6, 3, seed=14, scale=0.5)
    pos, neg = B > 0, B < 0
    kw = dict(lam1=0.1, lam2=0.1, tol=0.0, method="algorithm1", lr=0.05, gauge=False)  # the raw updates
    r1 = solve(A, B, steps=1, **kw)
    # step 1 is odd: only the G2 term (B̂-) is used, so positive entries of B̂ cannot move
    assert torch.equal(r1.B_hat[pos], B[pos]) and not torch.equal(r1.B_hat[neg], B[neg])
    assert not torch.equal(r1.A_hat, A)
    r2 = solve(A, B, steps=2, **kw)
    still_neg = neg & (r1.B_hat < 0)
    assert torch.equal(r2.B_hat[still_neg], r1.B_hat[still_neg])  # step 2 is even: G1 term only
    assert not torch.equal(r2.B_hat[pos], B[pos])


def test_algorithm1_per_node_updates_differ_from_one_full_gradient_step():
    # Algorithm 1 updates Â after every node, so its step is not the plain gradient step on the G2 half
    A, B = rand_layers((), 5, 2, seed=15, scale=0.8)
    lr, lam = 0.1, 0.2
    res = solve(A, B, lam1=lam, lam2=lam, steps=1, tol=0.0, method="algorithm1", lr=lr, gauge=False)
    eta = float(T.algorithm1_step_size(A, B, lr))  # lr is relative to the layer's curvature
    Ah = A.clone().requires_grad_(True)
    Bh = B.clone().requires_grad_(True)
    G2 = (-B).clamp(min=0)[..., None] * A
    H2 = (-Bh).clamp(min=0)[..., None] * Ah
    loss = 0.5 * ((H2 - G2) ** 2).sum() + lam * H2.abs().sum()
    gA, gB = torch.autograd.grad(loss, (Ah, Bh))
    assert not torch.allclose(res.A_hat, A - eta * gA, rtol=0, atol=1e-12)
    # ...but with a single output node (d = 1) the two coincide
    A1, B1 = rand_layers((), 1, 3, seed=16, scale=0.8)
    r = solve(A1, B1, lam1=lam, lam2=lam, steps=1, tol=0.0, method="algorithm1", lr=lr, gauge=False)
    eta = float(T.algorithm1_step_size(A1, B1, lr))
    Ah = A1.clone().requires_grad_(True)
    Bh = B1.clone().requires_grad_(True)
    H2 = (-Bh).clamp(min=0)[..., None] * Ah
    loss = 0.5 * ((H2 - (-B1).clamp(min=0)[..., None] * A1) ** 2).sum() + lam * H2.abs().sum()
    gA, gB = torch.autograd.grad(loss, (Ah, Bh))
    assert not torch.equal(r.A_hat, A1) and not torch.equal(r.B_hat, B1)
    torch.testing.assert_close(r.A_hat, A1 - eta * gA, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(r.B_hat, B1 - eta * gB, rtol=1e-12, atol=1e-14)


def test_zero_lambda_keeps_the_start():
    A, B = rand_layers((2,), 6, 3, seed=16)
    res = solve(A, B, lam1=0.0, lam2=0.0, steps=10, tol=0.0)
    torch.testing.assert_close(res.A_hat, A, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(res.B_hat, B, rtol=1e-12, atol=1e-14)
    assert res.trace.abs().max() < 1e-10


def test_defaults_are_sane():
    assert T.DEFAULT_LAM1 > 0 and T.DEFAULT_LAM2 > 0 and T.DEFAULT_LR > 0
    assert isinstance(T.DEFAULT_STEPS, int) and T.DEFAULT_STEPS > 0 and 0 < T.DEFAULT_TOL < 1e-3
    # default call on init-scale adapters converges well before the step limit
    A, B = rand_layers((2,), 48, 3, seed=17, scale=0.02, dtype=torch.float32)
    A[..., -1] = 0.0
    res = solve(A, B)
    assert res.converged and res.steps < T.DEFAULT_STEPS
    assert res.A_hat.dtype == torch.float32 and (res.A_hat == 0).any()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="sgd"), "method"),
        (dict(steps=-1), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(lr=0.0), "lr"),
        (dict(tol=-1.0), "tol"),
        (dict(lam1=-0.1), "lam1"),
        (dict(lam2=float("nan")), "lam2"),
        (dict(lam1=torch.ones(5)), "lam1"),
    ],
)
def test_solve_validates_arguments(kwargs, match):
    A, B = rand_layers((2,), 4, 2)
    with pytest.raises((ValueError, TypeError), match=match):
        solve(A, B, **kwargs)


def test_shape_errors_name_the_shapes():
    A, B = rand_layers((), 4, 2)
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        solve(A, B[:3])
    with pytest.raises(ValueError, match="leading"):
        objective(A[None].expand(2, -1, -1), B, A, B, 0.1, 0.1)
    with pytest.raises(ValueError, match="A_hat"):
        objective(A, B, A[:1], B, 0.1, 0.1)
    bad = A.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        solve(bad, B)


# --------------------------------------------------------------------------- gauge, collapse, Algorithm 1 scale


def trained_like(seed=0, L=2, d=96, r=6):
    """A seeded adapter with trained-like statistics: weights N(0, 0.028²) times a per-unit
    log-normal scale, biases N(0, 0.014²) (issue 11's reference case)."""
    g = torch.Generator().manual_seed(seed)
    unit = torch.exp(0.5 * torch.randn(L, r, generator=g, dtype=F64))
    W_d = 0.028 * torch.randn(L, r, d, generator=g, dtype=F64) * unit[..., None]
    b_d = 0.014 * torch.randn(L, r, generator=g, dtype=F64)
    W_u = 0.028 * torch.randn(L, d, r, generator=g, dtype=F64) * unit[:, None, :]
    b_u = 0.014 * torch.randn(L, d, generator=g, dtype=F64)
    return torch.cat([W_d, b_d[..., None]], -1), W_u, b_u


@pytest.mark.parametrize("method", ["fast", "algorithm1"])
def test_conserved_gauge_keeps_objective_and_balance(method):
    A, B, _ = trained_like(seed=3, L=2, d=24, r=4)
    lam = 3e-4
    raw = solve(A, B, lam1=lam, lam2=lam, method=method, steps=30, gauge=False)
    Ag, Bg = T.conserved_gauge(A, B, raw.A_hat, raw.B_hat)
    before = objective_per_layer(A, B, raw.A_hat, raw.B_hat, lam, lam)
    after = objective_per_layer(A, B, Ag, Bg, lam, lam)
    assert ((after - before).abs() <= 1e-10 * before.abs()).all()
    alive = (raw.A_hat != 0).any(-1) & (raw.B_hat != 0).any(-2)
    assert alive.all()  # this case has no dead unit: every unit is checked
    scale = A.pow(2).sum(-1) + B.pow(2).sum(-2)
    err = (T.unit_balance(Ag, Bg) - T.unit_balance(A, B)).abs() / scale
    assert (err <= 1e-10).all(), err
    # a pure rescaling per unit: the products B̂[i, j] â_j are those of the raw solution
    torch.testing.assert_close(
        Bg[..., None] * Ag[..., None, :, :], raw.B_hat[..., None] * raw.A_hat[..., None, :, :], rtol=1e-12, atol=1e-18
    )
    # solve's default returns exactly the gauged raw solution, and gauging twice changes nothing
    res = solve(A, B, lam1=lam, lam2=lam, method=method, steps=30)
    torch.testing.assert_close(res.A_hat, Ag, rtol=1e-12, atol=0)
    A2, B2 = T.conserved_gauge(A, B, Ag, Bg)
    torch.testing.assert_close(A2, Ag, rtol=1e-12, atol=0)
    torch.testing.assert_close(B2, Bg, rtol=1e-12, atol=0)


def test_conserved_gauge_rule_for_dead_units_and_negative_balance():
    A, B = rand_layers((), 6, 3, seed=31)
    A_hat, B_hat = A.clone(), B.clone()
    A_hat[0] = 0.0  # â_0 = 0: the unit contributes nothing; its b̂ column is zeroed too
    B_hat[:, 1] = 0.0  # b̂_1 = 0: its â row is zeroed too
    B[:, 2] *= 50  # c < 0 for unit 2: the cancellation-free branch
    B_hat[:, 2] = B[:, 2] * 0.5
    Ag, Bg = T.conserved_gauge(A, B, A_hat, B_hat)
    assert (Ag[0] == 0).all() and (Bg[:, 0] == 0).all() and (Ag[1] == 0).all() and (Bg[:, 1] == 0).all()
    assert T.unit_balance(A, B)[2] < 0
    torch.testing.assert_close(T.unit_balance(Ag, Bg)[2], T.unit_balance(A, B)[2], rtol=1e-12, atol=0)
    # the gauge is identity at the start (Â = A, B̂ = B)
    A0, B0 = T.conserved_gauge(A, B, A, B)
    torch.testing.assert_close(A0, A, rtol=1e-13, atol=0)
    torch.testing.assert_close(B0, B, rtol=1e-13, atol=0)


def test_conserved_gauge_of_tiny_units_is_finite():
    """Norms are taken without squaring the entries: a unit whose ``‖â_j‖²`` or ``‖â_j‖² ‖b̂_{:,j}‖²``
    underflows float64 is still gauged (it used to come out as 0 · inf = NaN or inf), and a unit whose
    rescaled factor underflows to zero is dead: both factors are zero."""
    A = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]], dtype=F64)  # r = 3 units, d = 1
    B = torch.tensor([[1.0, 1.0, 2.0]], dtype=F64)  # balances c = 0, 3, -3
    for s in (1e-100, 1e-150):
        Ag, Bg = T.conserved_gauge(A, B, A * s, B * s)
        assert torch.isfinite(Ag).all() and torch.isfinite(Bg).all(), s
        assert (Ag[:, 0] > 0).all() and (Bg > 0).all(), s
        torch.testing.assert_close(Bg * Ag[:, 0], B * A[:, 0] * s * s, rtol=1e-12, atol=0)
        torch.testing.assert_close(T.unit_balance(Ag, Bg)[1:], T.unit_balance(A, B)[1:], rtol=1e-12, atol=0)
    assert Ag[0, 0] == Bg[0, 0] == 1e-150  # c = 0: the split stays even
    # s = 1e-200: units 1 and 2 have products of 1e-400, below float64; their small factor underflows
    Ag, Bg = T.conserved_gauge(A, B, A * 1e-200, B * 1e-200)
    assert torch.isfinite(Ag).all() and torch.isfinite(Bg).all()
    assert Ag[0, 0] == Bg[0, 0] == 1e-200
    assert (Ag[1:] == 0).all() and (Bg[:, 1:] == 0).all()


def test_algorithm1_names_a_collapsing_lambda_before_it_can_diverge():
    """A λ that collapses a layer is refused as such (naming λ) before Algorithm 1 runs; at such a λ
    its gradient steps diverge (here at step 4 with lr = 0.5), which named only the step size."""
    g = torch.Generator().manual_seed(4)
    A = 0.05 * torch.randn(1, 3, 49, generator=g, dtype=F64)
    B = 0.05 * torch.randn(1, 48, 3, generator=g, dtype=F64)
    lam1, lam2, _ = T.layer_lambdas(A, B, 50.0, 50.0)
    with pytest.raises(FloatingPointError, match="diverged"):
        solve(A, B, lam1=lam1, lam2=lam2, method="algorithm1", steps=1000, lr=0.5)
    with pytest.raises(T.CollapsedLayerError, match="lam1 = "):
        solve(A, B, lam1=lam1, lam2=lam2, method="algorithm1", steps=1000, lr=0.5, max_zero_share=0.99)


def test_fast_and_algorithm1_tropical_masks_agree_in_the_gauge():
    """Issue 11: same objective, different solvers -> the same Tropical CU masks once both are gauged
    (retained-set Jaccard >= 0.97 on average over p in {98, 96, 94, 90, 80})."""
    from adapter_pruning import masks as M

    A, B, b_u = trained_like(seed=0)
    layers = [M.AdapterLayer(prefix=f"layer{k}", A=A[k], B=B[k], up_bias=b_u[k]) for k in range(2)]
    lam = 4e-4  # absolute, as in the issue
    out = {}
    for method, kw in (("fast", {}), ("algorithm1", {"steps": 100})):
        for gauge in (False, True):
            r = solve(A, B, lam1=lam, lam2=lam, method=method, gauge=gauge, **kw)
            out[method, gauge] = list(zip(r.A_hat, r.B_hat))
    jac = {}
    for gauge in (False, True):
        js = []
        for p in (98, 96, 94, 90, 80):
            mf = M.pruning_masks(layers, out["fast", gauge], p, "CU")["tropical"]
            ma = M.pruning_masks(layers, out["algorithm1", gauge], p, "CU")["tropical"]
            js.append(M.mask_agreement(mf, ma)["jaccard_retained"])
        jac[gauge] = sum(js) / len(js)
    assert jac[True] >= 0.97, jac
    assert jac[False] < jac[True]  # the raw splits differ; the gauge is what makes them agree


def test_algorithm1_step_is_relative_and_non_finite_values_name_the_layer():
    # weights of scale 0.5: a fixed absolute step 0.5 diverged here; the relative default converges
    A, B = rand_layers((2,), 16, 4, seed=5, scale=0.5)
    lam = 0.25 * lambda_scale(A, B)
    res = solve(A, B, lam1=lam, lam2=lam, method="algorithm1", steps=60)
    assert torch.isfinite(res.A_hat).all() and (res.trace[-1] < res.trace[0]).all()
    fast = solve(A, B, lam1=lam, lam2=lam)
    assert (res.trace[-1] <= 1.01 * fast.trace[-1]).all()  # converged to (about) the same optimum
    assert (res.trace[30:].amax(0) <= 1.01 * res.trace[30:].amin(0)).all()  # settled, no oscillation
    eta = T.algorithm1_step_size(A, B)
    curv = torch.maximum(A.pow(2).sum(-1).amax(-1), B.pow(2).sum(-2).amax(-1))
    torch.testing.assert_close(eta, T.DEFAULT_LR / curv)
    with pytest.raises(FloatingPointError, match=r"enc\.1 at step \d+"):
        solve(A, B, lam1=lam, lam2=lam, method="algorithm1", steps=60, lr=1e6, layer_names=["enc.0", "enc.1"][::-1])


def test_layer_steps_and_zero_shares():
    A, B = rand_layers((3,), 12, 4, seed=6, scale=0.3)
    A[1] *= 0.01  # converges at another step
    res = solve(A, B, lam1=0.02, lam2=0.02, steps=200, tol=1e-6)
    assert res.layer_steps.shape == (3,) and int(res.layer_steps.max()) == res.steps
    assert len(set(res.layer_steps.tolist())) > 1  # the layers converge at different steps
    for k in range(3):  # layer k met tol at its own last step n (not before) and froze after it
        n, tr = int(res.layer_steps[k]), res.trace[:, k]
        assert (tr[n - 1] - tr[n]).abs() < 1e-6 * tr[n - 1].abs()
        assert n < 2 or (tr[n - 2] - tr[n - 1]).abs() >= 1e-6 * tr[n - 2].abs()
        assert (tr[n:] == tr[n]).all()
    zA, zB = T.zero_shares(res.A_hat, res.B_hat)
    torch.testing.assert_close(zA, (res.A_hat == 0).double().mean((-2, -1)))
    torch.testing.assert_close(zB, (res.B_hat == 0).double().mean((-2, -1)))


def test_collapse_is_an_error_naming_lambda_and_layer():
    A, B = rand_layers((2,), 20, 4, seed=7, scale=0.02)
    sc = lambda_scale(A, B)
    ok = solve(A, B, lam1=0.25 * sc, lam2=0.25 * sc)
    T.check_not_collapsed(ok.A_hat, ok.B_hat, 0.25 * sc, 0.25 * sc, ["a", "b"])  # no error
    big = torch.tensor([0.25, 1e4]) * sc
    res = solve(A, B, lam1=big, lam2=big)
    assert (res.A_hat[1] == 0).all()
    with pytest.raises(T.CollapsedLayerError, match=r"(?s)allow_collapse.*\n  enc\.b: 100\.0 % of A_hat.*lam1 = ") as e:
        T.check_not_collapsed(res.A_hat, res.B_hat, big, big, ["enc.a", "enc.b"])
    assert "enc.a" not in str(e.value)
    # Algorithm 1 leaves no exact zeros, so its own output cannot show the collapse; check_lambda reads
    # the fast optimum of the same objective and catches it whatever the solver
    big = torch.tensor([0.25, 16.0]) * sc
    assert (solve(A, B, lam1=big, lam2=big).A_hat[1] == 0).all()  # the fast optimum collapses at 16
    alg1 = solve(A, B, lam1=big, lam2=big, method="algorithm1", steps=20, lr=0.02)
    assert (alg1.A_hat[1] != 0).any()
    T.check_not_collapsed(alg1.A_hat, alg1.B_hat, big, big, ["enc.a", "enc.b"])  # blind to it
    with pytest.raises(T.CollapsedLayerError, match=r"enc\.b: 100\.0 %"):
        T.check_lambda(A, B, big, big, ["enc.a", "enc.b"])
    T.check_lambda(A, B, 0.25 * sc, 0.25 * sc, ["enc.a", "enc.b"])  # a sane λ passes
