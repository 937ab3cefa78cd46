"""Structured unit pruning (scope ``UN``; ``adapter_pruning.masks.unit_masks``, the unit scores of the
registry, ``adapter_pruning.structured``) on random layers and tiny random models: the unit masks and
their counts, the unit scores' definitions, and the ``structured/`` adapter that ``adapter-prune
--scope UN`` writes, loaded with plain ``load_adapter`` and computing what the masked dense adapter
computes. The real-MiniLM check is ``tests/test_structured_real.py``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_cli import expect_error, run_cli, train_and_save  # tests/ is on sys.path

from adapter_pruning import compact, masks, structured
from adapter_pruning import config as apc
from adapter_pruning import methods as registry
from adapter_pruning.io import CorruptFileError
from adapter_pruning.masks import AdapterLayer


def make_layers(L=3, d=12, r=8, seed=0) -> list[AdapterLayer]:
    gen = torch.Generator().manual_seed(seed)
    return [
        AdapterLayer(
            prefix=f"bert.encoder.layer.{i}.output.adapters.x",
            A=torch.randn(r, d + 1, generator=gen, dtype=torch.float64),
            B=torch.randn(d, r, generator=gen, dtype=torch.float64),
            up_bias=torch.randn(d, generator=gen, dtype=torch.float64),
        )
        for i in range(L)
    ]


# --------------------------------------------------------------------------- masks and scores


@pytest.mark.parametrize("p,r,k", [(10, 8, 0), (30, 8, 2), (50, 24, 12), (96, 24, 23), (99, 24, 23), (99, 1, 0)])
def test_n_units_to_remove(p, r, k):
    assert masks.n_units_to_remove(p, r) == k


def test_unit_masks_remove_whole_units_lowest_first_and_nested():
    layers = make_layers()
    scores = masks.magnitude_unit_scores(layers)
    prev = None
    for p in (10, 30, 50, 90, 99):
        got = masks.unit_masks(layers, scores, p)
        for layer, m, s in zip(layers, got, scores):
            gone = structured.removed_units(m)
            k = masks.n_units_to_remove(p, 8)
            assert int(gone.sum()) == k and not m.up_bias.any()
            assert torch.equal(m.A, gone[:, None].expand_as(m.A)) and torch.equal(m.B, gone[None, :].expand_as(m.B))
            if k:
                assert s[gone].max() < s[~gone].min()  # the lowest-scored units go
        if prev is not None:  # a larger p removes a superset
            assert all(bool((a.A <= b.A).all()) for a, b in zip(prev, got))
        prev = got
    # ties: by the secondary score, then by unit index
    flat = [torch.zeros(8, dtype=torch.float64) for _ in layers]
    tie = [torch.arange(8, 0, -1, dtype=torch.float64) for _ in layers]
    gone = structured.removed_units(masks.unit_masks(layers, flat, 30, tie=tie)[0])
    assert torch.nonzero(gone).flatten().tolist() == [6, 7]
    gone = structured.removed_units(masks.unit_masks(layers, flat, 30)[0])
    assert torch.nonzero(gone).flatten().tolist() == [0, 1]


def test_unit_scores_are_the_documented_products():
    """standard: ‖a_j‖·‖b_j‖, invariant to a unit's scale split; tropical: the same on Â, B̂, which is
    the Frobenius norm of unit j's generators over every output node's zonotopes G1^i, G2^i (METHOD.md);
    activation: E[ReLU(a_j·x̃)]·‖b_j‖; random: seeded; taylor: |⟨a_j, g_a⟩ + ⟨b_j, g_b⟩|."""
    from adapter_pruning.methods.activation import activation_unit_scores
    from adapter_pruning.methods.taylor import taylor_unit_scores

    layers = make_layers()
    std = masks.magnitude_unit_scores(layers)
    alpha = torch.rand(8, dtype=torch.float64) + 0.1
    rescaled = [AdapterLayer(la.prefix, la.A * alpha[:, None], la.B / alpha[None, :], la.up_bias) for la in layers]
    for a, b in zip(std, masks.magnitude_unit_scores(rescaled)):
        assert torch.allclose(a, b, rtol=1e-12)
    optimized = [(la.A * 0.5, la.B.clamp(min=0)) for la in layers]
    inputs = registry.PruneInputs(layers=layers, optimized=optimized, seed=3, calibration={})
    trop = registry.get("tropical").ranking(inputs, "UN")
    assert trop.tie is not None and not trop.magnitude
    for (A_hat, B_hat), s in zip(optimized, trop.scores):
        G1 = B_hat.clamp(min=0)[:, :, None] * A_hat[None]  # (d, r, d+1): node i, generator j
        G2 = (-B_hat).clamp(min=0)[:, :, None] * A_hat[None]
        assert torch.allclose(s, (G1.square().sum((0, 2)) + G2.square().sum((0, 2))).sqrt(), rtol=1e-12)
    assert registry.get("standard").ranking(inputs, "UN").magnitude
    mean = [torch.rand(8, dtype=torch.float64) for _ in layers]
    for la, m, s in zip(layers, mean, activation_unit_scores(layers, mean)):
        assert torch.allclose(s, m * la.B.norm(dim=0))
    grads = [(torch.randn_like(la.A), torch.randn_like(la.B), torch.randn_like(la.up_bias)) for la in layers]
    for la, (gA, gB, _), s in zip(layers, grads, taylor_unit_scores(layers, grads)):
        assert torch.allclose(s, ((la.A * gA).sum(1) + (la.B * gB).sum(0)).abs())
    r1 = registry.get("random").ranking(inputs, "UN").scores
    r2 = registry.get("random").ranking(inputs, "UN").scores
    assert all(torch.equal(a, b) for a, b in zip(r1, r2)) and not torch.equal(r1[0], r1[1])


def test_registry_unit_support_and_needs():
    assert registry.unit_methods() == ["standard", "tropical", "tropical_opt", "random", "activation", "taylor"]
    for name in ("standard_ps", "tropical_pt", "sparsegpt"):
        with pytest.raises(ValueError, match=f"{name}.*no unit scores"):
            registry.needs_of([name], "UN")
    assert registry.needs_of(["standard", "random"], "UN") == set()
    assert registry.needs_of(["tropical"], "UN") == {"optimized"}
    assert registry.calibration_needed(["activation", "taylor"], "UN") == ["gradients", "activation_mean"]
    assert registry.calibration_needed(["activation"], "CU") == ["input_rms"]


def test_shrink_and_reduction_factors():
    layers = make_layers(d=384, r=24)
    scores = masks.magnitude_unit_scores(layers)
    got = masks.unit_masks(layers, scores, 96)
    shrunk = structured.shrink(masks.apply_masks(layers, got), got)
    assert structured.widths(shrunk) == [1, 1, 1]
    keep = ~structured.removed_units(got[0])
    assert torch.equal(shrunk[0].A, layers[0].A[keep]) and torch.equal(shrunk[0].B, layers[0].B[:, keep])
    for d in (32, 64, 384, 768, 1024):
        for w in range(1, d + 1):
            assert int(d // structured.reduction_factor(d, w)) == w
    assert structured.reduction_factors(shrunk) == {str(i): 384 / 1.5 for i in range(3)}
    bad = masks.LayerMask(got[0].prefix, got[0].A.clone(), got[0].B.clone(), got[0].up_bias.clone())
    bad.A[0, 0] = ~bad.A[0, 0]
    with pytest.raises(ValueError, match="not a unit mask"):
        structured.removed_units(bad)
    everything = masks.unit_layer_mask(layers[0], torch.ones(24, dtype=torch.bool))
    with pytest.raises(ValueError, match="every unit is removed"):
        structured.shrink(layers[:1], [everything])
    with pytest.raises(ValueError, match="no layer index"):
        structured.layer_index("adapters.x")


# --------------------------------------------------------------------------- config


def test_config_unit_problems_name_the_key():
    cfg = {
        "tasks": ["trec"],
        "pruning": {
            "methods": ["tropical", "standard", "standard_ps"],
            "percentages": [90],
            "scopes": {"default": ["CU", "UN"]},
        },
    }
    (msg,) = apc.unit_problems(cfg)
    assert msg.startswith('pruning.methods[2] = "standard_ps"') and "pruning.scopes.default" in msg
    assert "pruning.units.methods" in msg
    cfg["pruning"]["units"] = {"methods": ["standard", "taylor"]}
    (msg,) = apc.unit_problems(cfg)
    assert msg.startswith('pruning.units.methods[1] = "taylor": not in pruning.methods')
    cfg["pruning"]["units"] = {"methods": ["standard", "tropical"], "percentages": [50]}
    assert apc.unit_problems(cfg) == []
    assert apc.scope_grid(cfg, "UN") == (["standard", "tropical"], [50])
    assert apc.scope_grid(cfg, "CU") == (["tropical", "standard", "standard_ps"], [90])
    cfg["pruning"]["scopes"] = {"default": ["CU"]}
    cfg["pruning"]["units"] = {"methods": ["sparsegpt"]}
    assert apc.unit_problems(cfg) == []  # no task runs UN


# --------------------------------------------------------------------------- adapter-prune --scope UN


@pytest.fixture(scope="module")
def tiny3(tiny_model_factory):
    """Tiny random BERT with 3 layers (hidden 32)."""
    return tiny_model_factory(num_hidden_layers=3)


def _logits(model_dir, folder, texts):
    """Plain ``adapters`` code: load ``folder`` with its head into a fresh model, score ``texts``."""
    from adapters import AutoAdapterModel
    from transformers import AutoTokenizer

    model = AutoAdapterModel.from_pretrained(str(model_dir))
    safetensors = (folder / "adapter.safetensors").is_file()
    name = model.load_adapter(str(folder), with_head=True, set_active=True, use_safetensors=safetensors)
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch).logits
    n_adapter = sum(p.numel() for k, p in model.named_parameters() if f".adapters.{name}." in k)
    return out, n_adapter


TEXTS = ["a fine film", "dull and long", "great acting, weak plot", "a waste of time"]
CASES = {
    # case: (adapter kind, its config, safetensors?)
    "seq_bn_rf_mapping": ("seq_bn", {"reduction_factor": {"1": 2, "default": 4}}, True),
    "double_seq_bn_bin": ("double_seq_bn", {"non_linearity": "relu", "reduction_factor": 4}, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_structured_adapter_loads_and_matches_the_masked_dense(case, tiny3, tmp_path, capsys):
    """--scope UN: every method's structured/ loads with plain load_adapter, has exactly the kept units'
    parameters, and gives the dense pruned adapter's logits; its record and verify_beside agree, and a
    changed byte is caught."""
    kind, config, safetensors = CASES[case]
    src = train_and_save(tiny3, tmp_path / "a", kind, safetensors=safetensors, steps=4, **config)
    out = tmp_path / "out"
    methods = ["standard", "tropical", "random"]
    rc = run_cli(src, "--model", tiny3, "--scope", "UN", "--method", *methods, "--p", 30, 75, "--out", out)
    assert rc == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    assert "structured bytes" in table
    full, n_full = _logits(tiny3, src, TEXTS)
    for method in methods:
        for p in (30, 75):
            d = out / method / f"p{p}"
            info = json.loads((d / "prune.json").read_text())
            sdir = d / structured.STRUCTURED_DIR
            assert info["structured_dir"] == "structured" and info["scope"] == "UN"
            weights = sdir / info["weights_file"]
            assert info["structured_bytes"] == weights.stat().st_size < info["dense_bytes"]
            structured.verify_beside(d, info)
            dense, n_dense = _logits(tiny3, d, TEXTS)
            small, n_small = _logits(tiny3, sdir, TEXTS)
            assert n_dense == n_full and n_small == n_full - info["n_pruned"]
            assert info["retained"] == pytest.approx(n_small / n_full)
            assert torch.allclose(small, dense, atol=1e-6, rtol=1e-5), (method, p)
            r = [la["n_params"] for la in info["layers"]]
            assert len(info["widths"]) == len(info["units_removed"]) == len(r)
            assert all(w + len(gone) in (8, 16) for w, gone in zip(info["widths"], info["units_removed"]))
    assert info["slack"] > 0 and json.loads((out / "standard" / "p75" / "prune.json").read_text())["slack"] == 0
    # a changed structured file is caught, naming it
    d = out / "standard" / "p30"
    info = json.loads((d / "prune.json").read_text())
    weights = d / "structured" / info["weights_file"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="structured"):
        structured.verify_beside(d, info)


def test_cli_unit_scope_calibration_and_refusals(tiny_model_dir, tmp_path, shared_data, capsys):
    """activation and taylor under UN calibrate what they read there (activation_mean, gradients);
    methods without unit scores are refused by name before anything is written; --format compact keeps
    structured/."""
    src = train_and_save(tiny_model_dir, tmp_path / "a", "seq_bn", reduction_factor=4)
    out = tmp_path / "out"
    common = ["--model", tiny_model_dir, "--scope", "UN", "--data-mirror", shared_data]
    rc = run_cli(
        src,
        *common,
        "--method",
        "activation",
        "taylor",
        "--p",
        50,
        "--out",
        out,
        "--calibration",
        "rotten_tomatoes",
        "--calibration-examples",
        8,
        "--format",
        "compact",
    )
    assert rc == 0, capsys.readouterr().err
    info = json.loads((out / "activation" / "p50" / "prune.json").read_text())
    assert info["calibration"]["statistics"] == ["gradients", "activation_mean"]
    assert info["solver"]["groups"] == [] and info["widths"] == [4, 4]
    assert (out / "taylor" / "p50" / "structured" / "adapter.safetensors").is_file()
    assert not (out / "taylor" / "p50" / "adapter.safetensors").exists()
    for name in ("standard_ps", "sparsegpt"):
        expect_error(
            capsys,
            [src, *common, "--method", "standard", name, "--out", tmp_path / "o2"],
            f"--method {name} --scope UN",
            "no unit scores",
        )
    assert not (tmp_path / "o2").exists()


def test_write_structured_keeps_the_source_format(tiny3, tmp_path):
    """write_structured copies the head and keeps the weight file's name and other tensors; the layer
    order of a shrunk adapter must match the source."""
    src = train_and_save(tiny3, tmp_path / "a", "seq_bn", steps=0, reduction_factor=4)
    state = compact.read_weight_file(src / "adapter.safetensors")[0]
    layers = masks.extract_layers(state, "mine")
    got = masks.unit_masks(layers, masks.magnitude_unit_scores(layers), 50)
    rec = structured.write_structured(tmp_path / "s", src, structured.shrink(masks.apply_masks(layers, got), got))
    assert rec["widths"] == [4, 4, 4]
    assert {p.name for p in (tmp_path / "s").iterdir()} == {p.name for p in src.iterdir()}
    assert json.loads((tmp_path / "s" / "head_config.json").read_text()) == json.loads(
        (src / "head_config.json").read_text()
    )
    shutil.rmtree(tmp_path / "s")
    foreign = [AdapterLayer(la.prefix.replace("mine", "other"), la.A, la.B, la.up_bias) for la in layers]
    with pytest.raises(ValueError, match="has no tensor"):
        structured.write_structured(tmp_path / "s", src, foreign)
