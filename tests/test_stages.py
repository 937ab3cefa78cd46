"""The stage functions behind the rules, on a tiny random BERT and real data: one state per job and one
sweep per job write identical files; solve.json and prune.json carry what the docs promise."""

from __future__ import annotations

import json

import polars as pl
import pytest

from adapter_pruning import artifacts, config
from adapter_pruning.data import load_split, write_prepared
from adapter_pruning.stages.prune import prune_evaluate, prune_evaluate_sweep
from adapter_pruning.stages.solve import tropical_solve
from adapter_pruning.training import TrainConfig, train_adapter


@pytest.fixture(scope="module")
def trained(tiny_model_dir, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    paths = {}
    for split, cap in (("train", 64), ("validation", 24), ("test", 24)):
        paths[split] = root / f"{split}.parquet"
        write_prepared(load_split("trec", split, mirror=shared_data, caps=cap), paths[split], "trec")
    cfg = TrainConfig(
        steps=4, eval_every=2, batch_size=8, max_length=32, eval_batch_size=24, threads=1, device="cpu", progress=False
    )
    train_adapter(
        str(tiny_model_dir),
        "trec",
        load_split("trec", "train", mirror=shared_data, caps=64),
        load_split("trec", "validation", mirror=shared_data, caps=24),
        root / "adapter",
        cfg,
    )
    spec = config.fill_tropical_defaults({"tropical": {}})["tropical"]
    tropical_solve(spec, root / "adapter", root / "optimized.safetensors", root / "trace.parquet", root / "solve.json")
    return root, paths


def test_solve_json_records_each_layer(trained):
    root, _ = trained
    info = json.loads((root / "solve.json").read_text())
    layers = artifacts.read_adapter_layers(root / "adapter")
    assert info["gauge"] == "conserved" and [rec["layer"] for rec in info["layers"]] == [la.prefix for la in layers]
    for rec in info["layers"]:
        assert set(rec) >= {
            "lam1",
            "lam2",
            "lambda_scale",
            "steps",
            "objective_start",
            "objective_end",
            "zeros_A_hat",
            "zeros_B_hat",
        }
        assert rec["lam1"] == pytest.approx(0.5 * rec["lambda_scale"])


def test_sweep_writes_exactly_what_per_state_jobs_write(trained, tiny_model_dir):
    root, paths = trained
    ids = {"model": "tiny", "task": "trec", "seed": 0, "lam": 0.5, "scope": "CU", "method": "tropical"}
    spec = {"model": str(tiny_model_dir), "max_length": 32, "values": "original"}
    splits = {"validation": paths["validation"], "test": paths["test"]}
    ps = [90.0, 50.0, 10.0]
    for p in ps:
        prune_evaluate(
            ids,
            p,
            spec,
            root / "adapter",
            root / "optimized.safetensors",
            splits,
            root / "one" / f"p{p:g}",
            root / "one" / f"p{p:g}.parquet",
            root / "one" / f"pred{p:g}.parquet",
            device="cpu",
            batch_size=24,
        )
    infos = prune_evaluate_sweep(
        ids,
        ps,
        spec,
        root / "adapter",
        root / "optimized.safetensors",
        splits,
        [root / "sweep" / f"p{p:g}" for p in ps],
        [root / "sweep" / f"p{p:g}.parquet" for p in ps],
        [root / "sweep" / f"pred{p:g}.parquet" for p in ps],
        device="cpu",
        batch_size=24,
    )
    for p, info in zip(ps, infos):
        a, b = root / "one" / f"p{p:g}", root / "sweep" / f"p{p:g}"
        assert (a / "adapter.safetensors").read_bytes() == (b / "adapter.safetensors").read_bytes()
        assert json.loads((a / "prune.json").read_text()) == json.loads((b / "prune.json").read_text()) == info
        assert pl.read_parquet(f"{a}.parquet").equals(pl.read_parquet(f"{b}.parquet"))
        pred = pl.read_parquet(root / "sweep" / f"pred{p:g}.parquet")
        assert pred.equals(pl.read_parquet(root / "one" / f"pred{p:g}.parquet"))
        scores = pl.read_parquet(f"{b}.parquet").filter(pl.col("metric") == "accuracy")
        for split, path in splits.items():  # the predictions are the scored ones, in the data's order
            got = pred.filter(pl.col("split") == split)
            assert got["id"].to_list() == pl.read_parquet(path)["id"].to_list()
            assert got["lam"].unique().to_list() == [0.5] and got["p"].unique().to_list() == [p]
            acc = float((got["prediction"] == got["label"]).mean())
            assert scores.filter(pl.col("split") == split)["score"].item() == pytest.approx(acc, abs=1e-12)
        assert artifacts.verify_pruned(b)["n_pruned"] == info["n_pruned"]
        assert 0 < info["jaccard_standard"] <= 1 and 0 <= info["pruned_outside_standard"] < 1
    frame = pl.read_parquet(root / "sweep" / "p90.parquet")
    assert frame["device"].unique().to_list() == ["cpu"] and frame["torch"].null_count() == 0
    with pytest.raises(ValueError, match="3 percentages but 2 output folders"):
        prune_evaluate_sweep(
            ids,
            ps,
            spec,
            root / "adapter",
            root / "optimized.safetensors",
            splits,
            [root / "x1", root / "x2"],
            [root / "x1.parquet"] * 3,
            [root / "y1.parquet"] * 3,
        )


def test_calibration_norms_and_the_baseline_states(trained, tiny_model_dir):
    """input_rms equals the RMS of the adapter inputs captured by hand (non-padding tokens only), the
    up input is ReLU of the down layer, and random / activation states are count-matched to Tropical."""
    import numpy as np
    import torch

    from adapter_pruning import evaluation, masks, models
    from adapter_pruning.stages.calibrate import calibrate, input_rms

    root, paths = trained
    model, tok, name = models.load_trained(str(tiny_model_dir), root / "adapter")
    df = pl.read_parquet(paths["train"]).head(10)
    got, n_tokens = input_rms(model, tok, name, df, max_length=32, batch_size=4, device="cpu")
    # by hand: one padded batch of all 10 rows, full input tensors captured, padding removed
    layer = masks.extract_layers(model, name)[0]
    seen = {}
    down = model.get_submodule(f"{layer.prefix}.adapter_down.0")
    h = down.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach().clone()))
    enc = evaluation.encode(tok, df, 32)
    batch = evaluation.collate(enc, np.arange(10), tok.pad_token_id)
    with torch.no_grad():
        model(**batch)
    h.remove()
    keep = batch["attention_mask"].bool()
    x = seen["x"][keep].double()  # (tokens, d)
    assert n_tokens == int(keep.sum())
    down_in, up_in = got[layer.prefix]
    assert torch.allclose(down_in, x.pow(2).mean(0).sqrt(), rtol=1e-5)
    z = torch.relu(x @ down.weight.double().T + down.bias.double())
    assert torch.allclose(up_in, z.pow(2).mean(0).sqrt(), rtol=1e-5, atol=1e-7)

    calibrate(
        {"model": "tiny", "task": "trec", "seed": 0},
        {"model": str(tiny_model_dir), "max_length": 32, "examples": 16},
        root / "adapter",
        paths["train"],
        root / "calibration.safetensors",
        device="cpu",
        batch_size=8,
    )
    spec = {"model": str(tiny_model_dir), "max_length": 32, "values": "original"}
    splits = {"validation": paths["validation"], "test": paths["test"]}
    counts = {}
    for method in ("tropical", "random", "activation"):
        ids = {"model": "tiny", "task": "trec", "seed": 0, "lam": 0.5, "scope": "CN", "method": method}
        info = prune_evaluate(
            ids,
            90.0,
            spec,
            root / "adapter",
            root / "optimized.safetensors",
            splits,
            root / method,
            root / f"{method}.parquet",
            root / f"{method}_pred.parquet",
            calibration_path=root / "calibration.safetensors",
            device="cpu",
            batch_size=24,
        )
        counts[method] = [rec["n_pruned"] for rec in info["layers"]]
        assert pl.read_parquet(root / f"{method}.parquet")["method"].unique().to_list() == [method]
    assert counts["random"] == counts["activation"] == counts["tropical"]
    with pytest.raises(ValueError, match="calibration norms"):
        ids = {"model": "tiny", "task": "trec", "seed": 0, "lam": 0.5, "scope": "CU", "method": "activation"}
        prune_evaluate(
            ids,
            90.0,
            spec,
            root / "adapter",
            root / "optimized.safetensors",
            splits,
            root / "x",
            root / "x.pq",
            root / "y.pq",
        )
