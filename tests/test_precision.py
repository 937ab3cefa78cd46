"""adapter_pruning.precision: fp32 / bf16 / tf32 contexts, and the precision through training, scoring,
calibration, aggregation and the CLI; real MiniLM in bf16."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from adapter_pruning import aggregate, precision
from adapter_pruning.data import load_split
from adapter_pruning.evaluation import predict, predict_logits
from adapter_pruning.io import write_parquet
from adapter_pruning.models import build_adapter_model, load_tokenizer, load_trained
from adapter_pruning.precision import PrecisionError, autocast, check_precision, float32_matmul
from adapter_pruning.training import TrainConfig, train_adapter


def test_check_precision_names_the_culprit(monkeypatch, caplog):
    with pytest.raises(PrecisionError, match=r"evaluation.precision: 'fp16' is not one of \['fp32', 'bf16', 'tf32'\]"):
        check_precision("fp16", "cpu", what="evaluation.precision")
    with pytest.raises(PrecisionError, match="training.precision: 'tf32' is a CUDA precision.*cpu"):
        check_precision("tf32", "cpu", what="training.precision")
    assert check_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": False)
    with caplog.at_level(logging.WARNING, logger="adapter_pruning.precision"):
        assert check_precision("bf16", "cpu") == "bf16"
    assert "no native bfloat16" in caplog.text
    caplog.clear()
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": True)
    with caplog.at_level(logging.WARNING, logger="adapter_pruning.precision"):
        check_precision("bf16", "cpu")
    assert caplog.text == ""


def test_autocast_runs_linear_layers_in_bf16_and_restores_the_matmul_setting():
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # a caller's own setting must come back
    try:
        with autocast("bf16", "cpu"):
            y = linear(x)
            assert torch.get_float32_matmul_precision() == "highest"
        assert y.dtype == torch.bfloat16
        with autocast("fp32", "cpu"):
            z = linear(x)
            assert torch.get_float32_matmul_precision() == "highest"
        assert z.dtype == torch.float32 and torch.equal(z, linear(x))
        # bf16 rounds the inputs and weights to 8 mantissa bits: close to fp32, not equal
        assert not torch.equal(y.float(), z) and torch.allclose(y.float(), z, atol=0.05, rtol=0.02)
        with float32_matmul("tf32"):
            assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
        with pytest.raises(PrecisionError, match="'int8'"):
            with autocast("int8", "cpu"):
                pass
    finally:
        torch.set_float32_matmul_precision(old)
    assert torch.get_float32_matmul_precision() == old


@pytest.fixture(scope="module")
def tiny_classifier(tiny_model_dir):
    model = build_adapter_model(str(tiny_model_dir), "trec", 6, seed=3)
    with torch.no_grad():
        model.heads["trec"][4].weight.mul_(50)
    model.eval()
    return model, load_tokenizer(str(tiny_model_dir))


def test_predict_in_bf16(shared_data, tiny_classifier):
    """bf16 scoring computes other logits than fp32 (it is really used), close to them, returned as
    float32; the predictions mostly agree on this tiny random model."""
    model, tok = tiny_classifier
    df = load_split("trec", "test", mirror=shared_data, caps=80)
    kw = dict(batch_size=16, max_length=32, device="cpu")
    fp32 = predict_logits(model, tok, df, **kw)
    bf16 = predict_logits(model, tok, df, precision="bf16", **kw)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)
    scale = np.abs(fp32).max()
    assert np.abs(bf16 - fp32).max() < 0.05 * scale
    assert np.mean(bf16.argmax(1) == fp32.argmax(1)) >= 0.9
    assert np.array_equal(predict(model, tok, df, precision="bf16", **kw), bf16.argmax(1))
    # the same precision twice gives the same logits
    assert np.array_equal(bf16, predict_logits(model, tok, df, precision="bf16", **kw))


def test_training_in_bf16(tiny_model_dir, shared_data, tmp_path):
    """bf16 training: float32 parameters, saved as float32, other weights than fp32 from the same seed,
    reproducible, and metrics.json records the precision."""
    train = load_split("trec", "train", mirror=shared_data, caps=64)
    val = load_split("trec", "validation", mirror=shared_data, caps=40)
    cfg = dict(steps=6, eval_every=3, batch_size=8, max_length=32, eval_batch_size=16, threads=1, device="cpu")
    runs = {}
    for name, prec in (("fp32", "fp32"), ("bf16", "bf16"), ("bf16_again", "bf16")):
        out = tmp_path / name
        m = train_adapter(
            str(tiny_model_dir), "trec", train, val, out, TrainConfig(progress=False, lr=5e-3, precision=prec, **cfg)
        )
        assert m["precision"] == prec and m["config"]["precision"] == prec
        runs[name] = load_file(out / "adapter.safetensors")
    assert all(t.dtype == torch.float32 for t in runs["bf16"].values())
    assert any(not torch.equal(runs["bf16"][k], runs["fp32"][k]) for k in runs["fp32"])
    assert all(torch.equal(runs["bf16"][k], runs["bf16_again"][k]) for k in runs["bf16"])
    with pytest.raises(ValueError, match="TrainConfig.precision"):
        TrainConfig(precision="fp16")
    with pytest.raises(PrecisionError, match="training precision: 'tf32' is a CUDA precision"):
        train_adapter(str(tiny_model_dir), "trec", train, val, tmp_path / "x", TrainConfig(precision="tf32", **cfg))
    assert not (tmp_path / "x").exists()


def test_evaluate_states_records_both_precisions(tiny_model_dir, shared_data, tmp_path):
    """The scoring stage scores in spec['precision'] and writes it, and the adapter's training
    precision, into every score row."""
    from adapter_pruning.data import write_prepared
    from adapter_pruning.stages.evaluate import evaluate_states

    train = load_split("trec", "train", mirror=shared_data, caps=64)
    val = load_split("trec", "validation", mirror=shared_data, caps=24)
    adapter = tmp_path / "adapter"
    cfg = TrainConfig(steps=2, eval_every=2, batch_size=8, max_length=32, threads=1, device="cpu", progress=False)
    train_adapter(str(tiny_model_dir), "trec", train, val, adapter, cfg)
    write_prepared(val, tmp_path / "validation.parquet", "trec")
    ids = {"model": "tiny", "task": "trec", "seed": 0}
    scores = {}
    for prec in ("fp32", "bf16"):
        out = tmp_path / f"{prec}.parquet"
        evaluate_states(
            ids,
            {"model": str(tiny_model_dir), "max_length": 32, "precision": prec},
            [adapter],
            {"validation": tmp_path / "validation.parquet"},
            [out],
            [tmp_path / f"pred_{prec}.parquet"],
            device="cpu",
            batch_size=8,
        )
        scores[prec] = pl.read_parquet(out)
        assert set(scores[prec]["precision"]) == {prec} and set(scores[prec]["train_precision"]) == {"fp32"}
    # an imported adapter (metrics.json says so) has no training precision
    metrics = json.loads((adapter / "metrics.json").read_text())
    (adapter / "metrics.json").write_text(json.dumps({"imported": True, "source": "elsewhere"}))
    out = tmp_path / "imported.parquet"
    evaluate_states(
        ids,
        {"model": str(tiny_model_dir), "max_length": 32},
        [adapter],
        {"validation": tmp_path / "validation.parquet"},
        [out],
        [tmp_path / "pred_imported.parquet"],
        device="cpu",
        batch_size=8,
    )
    imported = pl.read_parquet(out)
    assert imported["train_precision"].null_count() == imported.height and set(imported["precision"]) == {"fp32"}
    # an adapter trained before the setting existed (metrics.json without "precision") was trained in fp32
    metrics.pop("precision")
    metrics["config"].pop("precision")
    (adapter / "metrics.json").write_text(json.dumps(metrics))
    from adapter_pruning.artifacts import read_train_precision

    assert read_train_precision(adapter) == "fp32"
    assert read_train_precision(tmp_path) is None


def test_aggregation_refuses_mixed_precisions_unless_allowed(tmp_path):
    from tests.test_aggregate import _frame, _rows

    rows = _rows("rt", 0, None, "full", 0, 1.0, 0.9, 0.9) + _rows("rt", 0, "CU", "standard", 90, 0.12, 0.6, 0.5)
    rows += _rows("rt", 1, "CU", "standard", 90, 0.12, 0.6, 0.5)
    df = _frame(rows).with_columns(pl.lit("fp32").alias("precision"), pl.lit("fp32").alias("train_precision"))
    df = df.with_columns(precision=pl.when(pl.col("seed") == 1).then(pl.lit("bf16")).otherwise(pl.col("precision")))
    paths = []
    for i, part in enumerate(df.partition_by(["seed", "method"])):
        paths.append(tmp_path / f"{i}.parquet")
        write_parquet(part, paths[-1])
    with pytest.raises(
        aggregate.MixedPrecisionError,
        match=r"(?s)allow_mixed_precision.*precision differs between states.*precision fp32: 2 state.*"
        r"precision bf16: 1 state.*rt/seed1/CU/standard/p90",
    ):
        aggregate.collect(paths, tmp_path / "results.parquet")
    assert not (tmp_path / "results.parquet").exists()
    out = aggregate.collect(paths, tmp_path / "results.parquet", allow_mixed_precision=True)
    assert set(out["precision"]) == {"fp32", "bf16"}
    # one precision everywhere passes; a training precision that differs between states is refused too
    same = df.with_columns(pl.lit("bf16").alias("precision"))
    write_parquet(same, tmp_path / "same.parquet")
    assert aggregate.collect([tmp_path / "same.parquet"], tmp_path / "r2.parquet").height == same.height
    trained = same.with_columns(
        train_precision=pl.when(pl.col("seed") == 1).then(pl.lit("bf16")).otherwise(pl.lit("fp32"))
    )
    write_parquet(trained, tmp_path / "trained.parquet")
    with pytest.raises(aggregate.MixedPrecisionError, match="train_precision bf16"):
        aggregate.collect([tmp_path / "trained.parquet"], tmp_path / "r3.parquet")
    # an imported adapter (unknown training precision) beside trained ones is not a mix
    imported = same.with_columns(
        train_precision=pl.when(pl.col("seed") == 1).then(pl.lit(None, dtype=pl.String)).otherwise(pl.lit("fp32"))
    )
    write_parquet(imported, tmp_path / "imported.parquet")
    assert aggregate.collect([tmp_path / "imported.parquet"], tmp_path / "r4.parquet").height == imported.height


@pytest.mark.slow
def test_real_minilm_scores_almost_the_same_in_bf16(real_rt_adapter):
    """The real MiniLM adapter scored in bf16 and in fp32 on 200 real Rotten Tomatoes validation
    examples: at most 2 % of the predictions flip (docs/benchmarks.md measures the flips at scale)."""
    adapter_dir, _, val, _ = real_rt_adapter
    model, tok, _ = load_trained("minilm", adapter_dir)
    kw = dict(batch_size=50, max_length=40, device="cpu")
    fp32 = predict_logits(model, tok, val, **kw)
    bf16 = predict_logits(model, tok, val, precision="bf16", **kw)
    assert not np.array_equal(fp32, bf16)
    flips = int(np.sum(fp32.argmax(1) != bf16.argmax(1)))
    assert flips <= 0.02 * val.height, flips
    np.testing.assert_allclose(bf16, fp32, atol=0.25)
