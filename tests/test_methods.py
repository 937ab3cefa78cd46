"""Tests of the method registry (adapter_pruning.methods): what each method needs, count matching in
every scope group, the P_T / P_S / Tropical masks, slack, and every score and update against an
element-by-element hand computation on tiny adapters."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from test_masks import layer_flat, make_layers, optimize

from adapter_pruning import methods
from adapter_pruning.masks import SCOPES, AdapterLayer, LayerMask, mask_agreement, n_to_prune, pruning_masks
from adapter_pruning.methods.sparsegpt import PERCDAMP, obs_update, sparsegpt_scores
from adapter_pruning.methods.taylor import taylor_scores

RANKINGS = ("standard", "random", "activation", "taylor", "sparsegpt")  # count-matched to Tropical


def triples(obj_list):
    """Per layer (A, B, up_bias) of AdapterLayers, LayerMasks or score triples."""
    return [(o.A, o.B, o.up_bias) if hasattr(o, "A") else tuple(o) for o in obj_list]


def scope_groups(per_layer, scope):
    """The flat vectors of every scope group (METHOD.md: CU layers, CB all, CN rows of A and of [B | up_bias])."""
    per_layer = triples(per_layer)
    if scope == "CU":
        return [torch.cat([t.reshape(-1) for t in tr]) for tr in per_layer]
    if scope == "CB":
        return [torch.cat([t.reshape(-1) for tr in per_layer for t in tr])]
    out = []
    for A, B, ub in per_layer:
        out += [A[j] for j in range(A.shape[0])]
        out += [torch.cat([B[i], ub[i : i + 1]]) for i in range(B.shape[0])]
    return out


def fake_calibration(layers, seed=0, tokens=50):
    """Calibration statistics of made-up inputs: input RMS, second moments X̃ᵀX̃/N (with the constant 1)
    and gradients, all float64, plus the inputs themselves."""
    g = torch.Generator().manual_seed(seed)
    rms, moments, grads, inputs = [], [], [], []
    for layer in layers:
        r, d1 = layer.A.shape
        X = torch.randn(tokens, d1 - 1, generator=g, dtype=torch.float64)
        X[:, 0] = 0.0  # a dead input feature
        Z = torch.relu(torch.randn(tokens, r, generator=g, dtype=torch.float64))
        Xt = torch.cat([X, torch.ones(tokens, 1, dtype=torch.float64)], 1)
        Zt = torch.cat([Z, torch.ones(tokens, 1, dtype=torch.float64)], 1)
        rms.append((X.pow(2).mean(0).sqrt(), Z.pow(2).mean(0).sqrt()))
        moments.append((Xt.T @ Xt / tokens, Zt.T @ Zt / tokens))
        grads.append(
            tuple(torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (layer.A, layer.B, layer.up_bias))
        )
        inputs.append((Xt, Zt))
    return {"input_rms": rms, "second_moments": moments, "gradients": grads}, inputs


@pytest.fixture(scope="module")
def setup():
    layers = make_layers(L=3, d=12, r=3, seed=1)
    opt = optimize(layers, rel=1.0)
    calib, _ = fake_calibration(layers)
    return methods.PruneInputs(layers=layers, optimized=opt, seed=3, calibration=calib)


# --------------------------------------------------------------------------- the registry


def test_registry_names_and_needs():
    assert methods.names() == [
        "standard",
        "standard_ps",
        "tropical",
        "tropical_pt",
        "tropical_opt",
        "random",
        "activation",
        "taylor",
        "sparsegpt",
    ]
    need = {name: set(m.requires) for name, m in methods.REGISTRY.items()}
    assert need["standard_ps"] == set()
    assert need["standard"] == need["tropical"] == need["random"] == need["tropical_opt"] == {"optimized"}
    assert need["tropical_pt"] == {"optimized"}
    assert need["activation"] == {"optimized", "input_rms"}
    assert need["taylor"] == {"optimized", "gradients"}
    assert need["sparsegpt"] == {"optimized", "second_moments"}
    assert methods.calibration_needed(["standard", "tropical", "random"]) == []
    assert methods.calibration_needed(["taylor", "activation", "sparsegpt"]) == list(methods.CALIBRATION[:3])
    assert methods.calibration_needed(["activation"], "UN") == ["activation_mean"]
    assert methods.needs_of(["standard_ps"]) == set()
    with pytest.raises(ValueError, match="unknown pruning method 'magnitude'.*standard, standard_ps"):
        methods.get("magnitude")
    with pytest.raises(ValueError, match="count must be one of"):
        methods.MaskMethod(name="x", summary="", count="half")
    with pytest.raises(ValueError, match="unknown needs"):
        methods.MaskMethod(name="x", summary="", count="p", needs=("labels",))


def test_registry_imports_no_torch():
    """Snakemake reads the registry while it builds the DAG, and adapter-prune --help lists it: no torch."""
    code = "import sys, adapter_pruning.methods as m; m.get('sparsegpt'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_missing_input_is_refused_by_name(setup):
    bare = methods.PruneInputs(layers=setup.layers, optimized=setup.optimized, seed=0)
    for name, what in (("activation", "input_rms"), ("taylor", "gradients"), ("sparsegpt", "second_moments")):
        with pytest.raises(ValueError, match=f"method '{name}' needs {what}.*rule calibrate"):
            methods.get(name).masks(bare, 50, "CU")
    with pytest.raises(ValueError, match="'tropical_pt' needs optimized.*tropical_solve"):
        methods.get("tropical_pt").masks(methods.PruneInputs(layers=setup.layers), 50, "CU")
    # standard_ps needs nothing but the adapter
    got = methods.get("standard_ps").masks(methods.PruneInputs(layers=setup.layers), 50, "CU")
    assert sum(m.n_pruned for m in got.masks) == sum(n_to_prune(50, la.n_params) for la in setup.layers)


# --------------------------------------------------------------------------- masks, counts, slack


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("p", [10, 50, 90, 98])
def test_rankings_are_count_matched_to_tropical_in_every_group(setup, scope, p):
    trop = methods.get("tropical").masks(setup, p, scope)
    k_T = [int(g.sum()) for g in scope_groups(trop.masks, scope)]
    assert len(k_T) == {"CU": 3, "CB": 1, "CN": 3 * (3 + 12)}[scope]
    for name in RANKINGS:
        method = methods.get(name)
        got = method.masks(setup, p, scope)
        assert [int(g.sum()) for g in scope_groups(got.masks, scope)] == k_T, name
        if name == "standard":
            continue
        # the k_T lowest scores of each group (ties by flat index): nothing kept scores below a pruned one
        scores = method.scores(setup)
        for sc, mk in zip(scope_groups(scores, scope), scope_groups(got.masks, scope)):
            sc = sc.double().abs()
            if mk.any() and (~mk).any():
                assert sc[mk].max() <= sc[~mk].min(), name
        # the reference is the count-matched Standard mask
        std = methods.get("standard").masks(setup, p, scope).masks
        for a, b in zip(got.reference, std):
            assert torch.equal(layer_flat(a), layer_flat(b))


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("p", [2, 37.5, 90, 98])
def test_tropical_pt_and_standard_ps_prune_k_and_tropical_is_their_intersection(setup, scope, p):
    """P_T alone and P_S alone each prune k = ⌊p n / 100⌋ per group; Tropical = P_T ∩ P_S; P_T's ties
    go by the original magnitude, then flat index."""
    pt = methods.get("tropical_pt").masks(setup, p, scope)
    ps = methods.get("standard_ps").masks(setup, p, scope)
    trop = methods.get("tropical").masks(setup, p, scope)
    orig = scope_groups(setup.layers, scope)
    hat = scope_groups([(Ah, Bh, la.up_bias) for la, (Ah, Bh) in zip(setup.layers, setup.optimized)], scope)
    for mS, mT, mPT, mPS, mTr in zip(
        orig,
        hat,
        scope_groups(pt.masks, scope),
        scope_groups(ps.masks, scope),
        scope_groups(trop.masks, scope),
    ):
        n = mS.numel()
        k = n_to_prune(p, n)
        order_T = sorted(range(n), key=lambda i: (abs(float(mT[i])), abs(float(mS[i])), i))
        order_S = sorted(range(n), key=lambda i: (abs(float(mS[i])), i))
        assert sorted(torch.nonzero(mPT).flatten().tolist()) == sorted(order_T[:k])
        assert sorted(torch.nonzero(mPS).flatten().tolist()) == sorted(order_S[:k])
        assert torch.equal(mTr, mPT & mPS)
    # tropical_pt's reference is P_S (Standard at the same count), and P_S is its own
    for a, b in zip(pt.reference, ps.masks):
        assert torch.equal(layer_flat(a), layer_flat(b))
    assert ps.slack == 0 and mask_agreement(ps.masks, ps.reference) == {"jaccard_retained": 1.0, "pruned_outside": 0.0}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("p", [30, 60])
def test_slack_by_hand(setup, scope, p):
    """The most entries a method's mask can differ in from the reference's, summed over the groups:
    Tropical Σ_g min(k_T, |P_S| − k_T); a count-matched ranking Σ_g min(k_T, n − k_T); P_T alone
    Σ_g min(k, n − k); magnitude 0."""
    trop = methods.get("tropical").masks(setup, p, scope)
    groups = scope_groups(trop.masks, scope)
    n = [g.numel() for g in groups]
    k = [n_to_prune(p, x) for x in n]
    k_T = [int(g.sum()) for g in groups]
    assert trop.slack == sum(min(b, a - b) for a, b in zip(k, k_T))
    assert trop.slack > 0 or (p, scope) == (30, "CN")  # CN's tiny groups at p = 30: nothing to swap
    assert methods.get("tropical_opt").masks(setup, p, scope).slack == trop.slack
    for name in ("random", "activation", "taylor", "sparsegpt"):
        assert methods.get(name).masks(setup, p, scope).slack == sum(min(b, a - b) for a, b in zip(n, k_T)), name
    assert methods.get("tropical_pt").masks(setup, p, scope).slack == sum(min(b, a - b) for a, b in zip(n, k))
    assert methods.get("standard").masks(setup, p, scope).slack == 0


def test_the_registry_reproduces_the_masks_of_pruning_masks(setup):
    """standard, tropical, random and activation through the registry = pruning_masks with their scores."""
    from adapter_pruning.methods.activation import activation_scores
    from adapter_pruning.methods.random_baseline import random_scores

    for scope in SCOPES:
        plain = pruning_masks(
            setup.layers,
            setup.optimized,
            80,
            scope,
            scores={
                "random": random_scores(setup.layers, 3),
                "activation": activation_scores(setup.layers, setup.calibration["input_rms"]),
            },
        )
        for name, masks in plain.items():
            got = methods.get(name).masks(setup, 80, scope).masks
            assert all(torch.equal(layer_flat(a), layer_flat(b)) for a, b in zip(masks, got)), (scope, name)


# --------------------------------------------------------------------------- values of the survivors


def test_tropical_opt_keeps_tropicals_mask_with_the_optimized_values(setup):
    trop = methods.get("tropical")
    opt = methods.get("tropical_opt")
    mm = opt.masks(setup, 70, "CU")
    assert all(torch.equal(layer_flat(a), layer_flat(b)) for a, b in zip(mm.masks, trop.masks(setup, 70, "CU").masks))
    new = opt.apply(setup, mm.masks)
    for la, m, (Ah, Bh), nl in zip(setup.layers, mm.masks, setup.optimized, new):
        assert torch.equal(nl.A, torch.where(m.A, torch.zeros_like(Ah), Ah.to(la.A.dtype)))
        assert torch.equal(nl.B, torch.where(m.B, torch.zeros_like(Bh), Bh.to(la.B.dtype)))
        assert torch.equal(nl.up_bias, la.up_bias.masked_fill(m.up_bias, 0))  # not optimized: its own value
    orig = trop.apply(setup, mm.masks)
    assert all(torch.equal(o.A, la.A.masked_fill(m.A, 0)) for o, la, m in zip(orig, setup.layers, mm.masks))


# --------------------------------------------------------------------------- taylor, hand computation


def test_taylor_scores_equal_a_hand_computation():
    layers = make_layers(L=2, d=5, r=3, seed=7)
    calib, _ = fake_calibration(layers, seed=2)
    got = taylor_scores(layers, calib["gradients"])
    for layer, (gA, gB, gub), (sA, sB, sub) in zip(layers, calib["gradients"], got):
        for M, G, S in ((layer.A, gA, sA), (layer.B, gB, sB)):
            for i in range(M.shape[0]):
                for j in range(M.shape[1]):
                    assert S[i, j] == pytest.approx(abs(float(M[i, j]) * float(G[i, j])), rel=1e-15)
        for i in range(layer.up_bias.shape[0]):
            assert sub[i] == pytest.approx(abs(float(layer.up_bias[i]) * float(gub[i])), rel=1e-15)
    with pytest.raises(ValueError, match="gradient of A has shape"):
        taylor_scores(layers, [(gB, gB, gub)] * 2)


# --------------------------------------------------------------------------- sparsegpt, hand computation


def test_sparsegpt_scores_equal_a_hand_computation():
    """score = w_ij² / [H_λ⁻¹]_jj with H_λ = X̃ᵀX̃/N + 0.01·mean(diag)·I of the weight's map (numpy's inverse)."""
    layers = make_layers(L=2, d=5, r=3, seed=7)
    calib, inputs = fake_calibration(layers, seed=4)
    got = sparsegpt_scores(layers, calib["second_moments"])
    for layer, (Xt, Zt), (sA, sB, sub) in zip(layers, inputs, got):
        for X, W, S in (
            (Xt.numpy(), layer.A.double().numpy(), sA.numpy()),
            (Zt.numpy(), np.concatenate([layer.B.double().numpy(), layer.up_bias.double().numpy()[:, None]], 1), None),
        ):
            H = X.T @ X / X.shape[0]
            H = H + PERCDAMP * np.mean(np.diag(H)) * np.eye(H.shape[0])
            Hinv = np.linalg.inv(H)
            want = np.empty_like(W)
            for i in range(W.shape[0]):
                for j in range(W.shape[1]):
                    want[i, j] = W[i, j] ** 2 / Hinv[j, j]
            if S is None:
                S = np.concatenate([sB.numpy(), sub.numpy()[:, None]], 1)
            np.testing.assert_allclose(S, want, rtol=1e-10)
    with pytest.raises(ValueError, match="do not fit"):
        sparsegpt_scores(layers, [(m[1], m[0]) for m in calib["second_moments"]])


@pytest.mark.parametrize("n", [7, 100])  # all rows in one batched solve, and row by row (wide maps)
def test_obs_update_is_the_obs_step_and_the_least_squares_refit(n):
    g = torch.Generator().manual_seed(5)
    N, rows = 160, 4
    X = torch.randn(N, n, generator=g, dtype=torch.float64)
    H = X.T @ X / N
    H = H + PERCDAMP * torch.diagonal(H).mean() * torch.eye(n, dtype=torch.float64)
    W = torch.randn(rows, n, generator=g, dtype=torch.float64)
    pruned = torch.rand(rows, n, generator=g) < 0.5
    pruned[0] = False  # nothing pruned: unchanged
    pruned[1] = True  # everything pruned: all zeros
    got = obs_update(W, pruned, H)
    assert torch.equal(got[0], W[0]) and torch.equal(got[1], torch.zeros(n, dtype=torch.float64))
    Hinv = torch.linalg.inv(H)
    for i in range(2, rows):
        P = torch.nonzero(pruned[i]).flatten()
        R = torch.nonzero(~pruned[i]).flatten()
        # OBS (Hassibi & Stork 1993) for all of P at once: δ = -H⁻¹[:, P] (H⁻¹[P, P])⁻¹ w_P
        delta = -Hinv[:, P] @ torch.linalg.solve(Hinv[P][:, P], W[i, P])
        assert torch.allclose(got[i], W[i] + delta, atol=1e-10)
        assert torch.all(got[i, P] == 0)
        # the least-squares refit of the kept weights: min ‖(w' − w) L‖ with H = L Lᵀ, w'_P = 0
        L = torch.linalg.cholesky(H)
        target = W[i] @ L  # (n,)
        sol = torch.linalg.lstsq(L[R].T, target.unsqueeze(-1)).solution.squeeze(-1)
        assert torch.allclose(got[i, R], sol, atol=1e-10)


@pytest.mark.parametrize("scope", SCOPES)
def test_sparsegpt_update_lowers_every_maps_output_error(setup, scope):
    """On the calibration inputs, the updated layer's output error per map is at most that of the same
    mask with the original values (the OBS refit never hurts), and pruned entries are exactly 0."""
    layers = make_layers(L=3, d=12, r=3, seed=1)
    calib, inputs = fake_calibration(layers, seed=9, tokens=80)
    inp = methods.PruneInputs(layers=layers, optimized=setup.optimized, seed=0, calibration=calib)
    method = methods.get("sparsegpt")
    mm = method.masks(inp, 70, scope)
    new = method.apply(inp, mm.masks)
    plain = methods.get("standard").apply(inp, mm.masks)  # the same mask, original values
    for la, m, nl, pl_, (Xt, Zt) in zip(layers, mm.masks, new, plain, inputs):
        assert torch.all(nl.A[m.A] == 0) and torch.all(nl.B[m.B] == 0) and torch.all(nl.up_bias[m.up_bias] == 0)
        for W0, W1, W2, X in (
            (la.A, nl.A, pl_.A, Xt),
            (
                torch.cat([la.B, la.up_bias[:, None]], 1),
                torch.cat([nl.B, nl.up_bias[:, None]], 1),
                torch.cat([pl_.B, pl_.up_bias[:, None]], 1),
                Zt,
            ),
        ):
            err_obs = ((W1.double() - W0.double()) @ X.T).pow(2).sum()
            err_plain = ((W2.double() - W0.double()) @ X.T).pow(2).sum()
            assert err_obs <= err_plain * (1 + 1e-6) + 1e-9


def test_sparsegpt_layer_mask_is_pruned_exactly_in_prune_layers(setup):
    """prune_layers (the stage) records slack and the survivors' values kind for every method."""
    from adapter_pruning.stages.prune import prune_layers

    ids = {"model": "m", "task": "t", "seed": 0, "lam": 0.5, "scope": "CN"}
    for name in methods.names():
        layers, info = prune_layers(setup, methods.get(name), ids, 90)
        assert info["method"] == name and info["values"] == methods.get(name).survivors
        assert info["slack"] == methods.get(name).masks(setup, 90, "CN").slack
        zeros = sum(int((t == 0).sum()) for la in layers for t in (la.A, la.B, la.up_bias))
        assert zeros >= info["n_pruned"] > 0


def test_layer_masks_are_bool_and_shaped(setup):
    for name in methods.names():
        for m, la in zip(methods.get(name).masks(setup, 50, "CB").masks, setup.layers):
            assert isinstance(m, LayerMask) and m.A.dtype == torch.bool and m.A.shape == la.A.shape
            assert isinstance(la, AdapterLayer)
