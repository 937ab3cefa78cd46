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
    ids = {"model": "tiny", "task": "trec", "seed": 0, "scope": "CU", "method": "tropical"}
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
        device="cpu",
        batch_size=24,
    )
    for p, info in zip(ps, infos):
        a, b = root / "one" / f"p{p:g}", root / "sweep" / f"p{p:g}"
        assert (a / "adapter.safetensors").read_bytes() == (b / "adapter.safetensors").read_bytes()
        assert json.loads((a / "prune.json").read_text()) == json.loads((b / "prune.json").read_text()) == info
        assert pl.read_parquet(f"{a}.parquet").equals(pl.read_parquet(f"{b}.parquet"))
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
        )
