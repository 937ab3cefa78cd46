"""adapter_pruning.training: best-checkpoint training, outputs, determinism, atomicity; real MiniLM."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from adapter_pruning import training
from adapter_pruning.data import DataError, load_split
from adapter_pruning.evaluation import evaluate, predict
from adapter_pruning.models import ADAPTER_FILES, load_trained
from adapter_pruning.training import TrainConfig, train_adapter


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def tiny_cfg(**kw) -> TrainConfig:
    return TrainConfig(
        **{
            **dict(
                steps=6,
                eval_every=3,
                batch_size=8,
                max_length=32,
                eval_batch_size=16,
                threads=1,
                device="cpu",
                progress=False,
                lr=5e-3,
            ),
            **kw,
        }
    )


@pytest.fixture(scope="module")
def trec_small(shared_data):
    return (
        load_split("trec", "train", mirror=shared_data, caps=64),
        load_split("trec", "validation", mirror=shared_data, caps=40),
    )


def test_train_writes_best_checkpoint_and_metrics(tiny_model_dir, trec_small, tmp_path):
    train, val = trec_small
    out = tmp_path / "adapter"
    metrics = train_adapter(str(tiny_model_dir), "trec", train, val, out, tiny_cfg(steps=7))
    assert sorted(p.name for p in out.iterdir()) == sorted([*ADAPTER_FILES, "metrics.json"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["metric"] == "accuracy" and metrics["adapter_name"] == "trec"
    assert len(metrics["loss_curve"]) == 7 and all(np.isfinite(metrics["loss_curve"]))
    curve = metrics["val_curve"]
    assert [c["step"] for c in curve] == [3, 6, 7]  # every eval_every steps and after the last step
    scores = [c["accuracy"] for c in curve]
    assert metrics["best_score"] == max(scores)
    assert metrics["best_step"] == curve[scores.index(max(scores))]["step"]  # earliest best on ties
    assert metrics["n_train"] == 64 and metrics["n_val"] == 40 and metrics["threads"] == 1
    assert metrics["seconds_per_step"] > 0 and metrics["config"]["steps"] == 7
    assert metrics["num_trainable_params"] == sum(
        t.numel() for f in ("adapter.safetensors", "model_head.safetensors") for t in load_file(out / f).values()
    )
    # The saved directory holds the best step's weights: reloading reproduces its validation scores.
    model, tok, name = load_trained(str(tiny_model_dir), out)
    assert name == "trec"
    assert evaluate(model, tok, val, "trec", batch_size=16, max_length=32) == metrics["best_scores"]


def test_training_is_deterministic_and_seeded(tiny_model_dir, trec_small, tmp_path):
    train, val = trec_small
    a = train_adapter(str(tiny_model_dir), "trec", train, val, tmp_path / "a", tiny_cfg())
    b = train_adapter(str(tiny_model_dir), "trec", train, val, tmp_path / "b", tiny_cfg())
    c = train_adapter(str(tiny_model_dir), "trec", train, val, tmp_path / "c", tiny_cfg(seed=1))
    assert a["loss_curve"] == b["loss_curve"] and a["val_curve"][0]["accuracy"] == b["val_curve"][0]["accuracy"]
    wa, wb, wc = (load_file(tmp_path / x / "adapter.safetensors") for x in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert a["loss_curve"] != c["loss_curve"]


def test_validation_set_is_tokenized_once_per_training(tiny_model_dir, trec_small, tmp_path, monkeypatch):
    from adapter_pruning import evaluation

    train, val = trec_small
    seen = []
    for module in (training, evaluation):  # training's own calls and any inside evaluate()
        real = module.encode
        monkeypatch.setattr(
            module, "encode", lambda tok, df, ml, real=real: seen.append(df.height) or real(tok, df, ml)
        )
    metrics = train_adapter(str(tiny_model_dir), "trec", train, val, tmp_path / "a", tiny_cfg(steps=6, eval_every=2))
    assert len(metrics["val_curve"]) == 3 and seen.count(val.height) == 1  # 3 validations, 1 tokenization
    assert seen.count(8) == 6  # one tokenized batch of 8 rows per step


def test_meld_selects_by_macro_f1(tiny_model_dir, shared_data, tmp_path):
    train = load_split("meld", "train", mirror=shared_data, caps=48)
    val = load_split("meld", "validation", mirror=shared_data, caps=30)
    m = train_adapter(str(tiny_model_dir), "meld", train, val, tmp_path / "meld", tiny_cfg(steps=4, eval_every=2))
    assert m["metric"] == "macro_f1"
    assert m["best_score"] == max(c["macro_f1"] for c in m["val_curve"]) == m["best_scores"]["macro_f1"]


def test_bad_input_fails_before_training(tiny_model_dir, trec_small, tmp_path):
    train, val = trec_small
    out = tmp_path / "never"
    bad = val.with_columns(label=pl.lit(6, pl.Int64))
    with pytest.raises(DataError, match=r"val_df: column 'label' has 40 label\(s\) outside 0\.\.5"):
        train_adapter(str(tiny_model_dir), "trec", train, bad, out, tiny_cfg())
    with pytest.raises(DataError, match="unknown task"):
        train_adapter(str(tiny_model_dir), "sst2", train, val, out, tiny_cfg())
    with pytest.raises(DataError, match="train_df: missing column"):
        train_adapter(str(tiny_model_dir), "trec", train.drop("text_pair"), val, out, tiny_cfg())
    assert not out.exists()
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TrainConfig(steps=0)


def test_crash_while_saving_leaves_previous_output_untouched(tiny_model_dir, trec_small, tmp_path, monkeypatch):
    train, val = trec_small
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "marker").write_text("previous run")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(training.json, "dumps", boom)
    with pytest.raises(OSError, match="disk full"):
        train_adapter(str(tiny_model_dir), "trec", train, val, out, tiny_cfg(steps=2, eval_every=2))
    assert [p.name for p in out.iterdir()] == ["marker"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


@pytest.mark.slow
def test_real_minilm_learns_rotten_tomatoes(real_rt_adapter):
    """Real MiniLM on a real subset (the ``real_rt_adapter`` fixture: 40 steps): loss falls, validation
    beats the majority class, the saved adapter reloads to the same predictions, and dynamic padding
    changes no prediction."""
    adapter_dir, _, val, m = real_rt_adapter
    losses = m["loss_curve"]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.03
    majority = val["label"].value_counts()["count"].max() / val.height
    assert m["best_score"] >= majority + 0.1, m["val_curve"]
    model, tok, name = load_trained("minilm", adapter_dir)
    preds = predict(model, tok, val, batch_size=100, max_length=40)
    assert float(np.mean(preds == val["label"].to_numpy())) == m["best_score"]
    assert np.array_equal(preds, predict(model, tok, val, batch_size=100, max_length=40, dynamic_padding=False))
    again, _, _ = load_trained("minilm", adapter_dir)
    assert np.array_equal(preds, predict(again, tok, val, batch_size=7, max_length=40))
