"""adapter_pruning.evaluation: metrics against scikit-learn, batched prediction."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from adapter_pruning.data import load_split
from adapter_pruning.evaluation import (
    CPU_BATCH_TOKENS,
    batches,
    compute_metrics,
    encode,
    evaluate,
    predict,
    predict_logits,
    resolve_batch_tokens,
)
from adapter_pruning.models import build_adapter_model, load_tokenizer


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn(seed):
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(seed)
    num_labels = 7
    labels = rng.integers(0, 5, size=200)  # classes 5 and 6 never occur as labels ...
    preds = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 6, size=200))  # ... 6 never predicted
    got = compute_metrics(preds, labels, num_labels)
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, preds), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(
        f1_score(labels, preds, average="macro", labels=list(range(num_labels)), zero_division=0), abs=1e-12
    )
    # The documented choice: absent classes count as F1 = 0, unlike scikit-learn's default.
    assert got["macro_f1"] < f1_score(labels, preds, average="macro", zero_division=0)


def test_metrics_edge_cases():
    assert compute_metrics([1, 1, 0], [1, 1, 0], 2) == {"accuracy": 1.0, "macro_f1": 1.0}
    assert compute_metrics([0, 0], [1, 1], 2) == {"accuracy": 0.0, "macro_f1": 0.0}
    with pytest.raises(ValueError, match="equal length"):
        compute_metrics([0, 1], [0], 2)
    with pytest.raises(ValueError, match="outside 0..1"):
        compute_metrics([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="zero examples"):
        compute_metrics([], [], 2)
    with pytest.raises(ValueError, match="integer"):
        compute_metrics([0.0, 1.0], [0, 1], 2)


@pytest.fixture(scope="module")
def tiny_classifier(tiny_model_dir):
    """Tiny random BERT + adapter + head, with a scaled-up head so class margins are not tiny."""
    model = build_adapter_model(str(tiny_model_dir), "meld", 7, seed=3)
    with torch.no_grad():
        model.heads["meld"][4].weight.mul_(50)
    model.eval()
    return model, load_tokenizer(str(tiny_model_dir))


@pytest.mark.parametrize("task", ["meld", "rotten_tomatoes"])
def test_dynamic_padding_matches_fixed_padding_and_single_examples(shared_data, tiny_classifier, task):
    model, tok = tiny_classifier
    df = load_split(task, "test", mirror=shared_data, caps=60, seed=1)
    if task == "rotten_tomatoes":
        df = df.with_columns(label=pl.col("label") * 3)  # any label in the head's range will do
    kw = dict(max_length=96, device="cpu")
    dyn = predict_logits(model, tok, df, batch_size=16, **kw)
    fixed = predict_logits(model, tok, df, batch_size=16, dynamic_padding=False, **kw)
    np.testing.assert_allclose(dyn, fixed, atol=1e-5)
    assert np.array_equal(dyn.argmax(1), fixed.argmax(1))
    # Original order is restored: row i's logits equal those of example i run on its own.
    single = predict_logits(model, tok, df, batch_size=1, **kw)
    np.testing.assert_allclose(dyn, single, atol=1e-5)
    for i in (0, 17, df.height - 1):
        enc = tok(df["text"][i], df["text_pair"][i], truncation=True, max_length=96, return_tensors="pt")
        with torch.inference_mode():
            np.testing.assert_allclose(model(**enc).logits[0].numpy(), dyn[i], atol=1e-5)
    preds = predict(model, tok, df, batch_size=16, **kw)
    assert preds.dtype == np.int64 and np.array_equal(preds, dyn.argmax(1))
    assert evaluate(model, tok, df, "meld", batch_size=16, **kw) == compute_metrics(preds, df["label"].to_numpy(), 7)


def test_token_batches_respect_the_budget_and_cover_every_row():
    lengths = np.array([5, 40, 12, 40, 3, 7, 90, 1])
    order = np.argsort(-lengths, kind="stable")
    for budget in (1, 50, 100, 200, 10_000):
        got = batches(lengths, order, batch_size=3, batch_tokens=budget)
        assert np.array_equal(np.concatenate(got), order)  # every row once, in order
        for b in got:
            assert 1 <= len(b) <= 3
            assert len(b) == 1 or len(b) * lengths[b].max() <= budget
    assert [len(b) for b in batches(lengths, order, batch_size=8, batch_tokens=100)] == [1, 2, 5]
    assert [len(b) for b in batches(lengths, order, batch_size=3)] == [3, 3, 2]
    with pytest.raises(ValueError, match="batch_tokens"):
        batches(lengths, order, batch_size=3, batch_tokens=0)


def test_token_budget_batching_gives_the_same_predictions(shared_data, tiny_classifier):
    model, tok = tiny_classifier
    df = load_split("meld", "test", mirror=shared_data, caps=60, seed=2)
    kw = dict(max_length=96, device="cpu")
    rows = predict_logits(model, tok, df, batch_size=128, batch_tokens=None, **kw)
    for budget in (64, 500, 2048):
        tokens = predict_logits(model, tok, df, batch_size=128, batch_tokens=budget, **kw)
        np.testing.assert_allclose(tokens, rows, atol=1e-5)
        assert np.array_equal(tokens.argmax(1), rows.argmax(1))
    auto = predict_logits(model, tok, df, batch_size=128, **kw)  # "auto": 1024 tokens on the CPU
    np.testing.assert_allclose(auto, rows, atol=1e-5)
    assert resolve_batch_tokens("auto", "cpu") == CPU_BATCH_TOKENS and resolve_batch_tokens("auto", "cuda") is None
    with pytest.raises(ValueError, match="batch_tokens"):
        resolve_batch_tokens("many", "cpu")


def test_predict_on_encodings_made_beforehand(shared_data, tiny_classifier):
    """Tokenizing once and predicting from the encodings gives exactly what tokenizing inside does;
    encodings of another frame or another max_length are refused."""
    model, tok = tiny_classifier
    df = load_split("meld", "test", mirror=shared_data, caps=60, seed=3)
    kw = dict(batch_size=16, max_length=48, device="cpu")
    enc = encode(tok, df, 48)
    assert np.array_equal(predict_logits(model, tok, df, encodings=enc, **kw), predict_logits(model, tok, df, **kw))
    with pytest.raises(ValueError, match="59 rows but the data frame has 60"):
        predict_logits(model, tok, df, encodings={k: v[:-1] for k, v in enc.items()}, **kw)
    with pytest.raises(ValueError, match="more than max_length 48"):
        predict_logits(model, tok, df, encodings=encode(tok, df, 96), **kw)


def test_predict_restores_mode_and_needs_no_grad(shared_data, tiny_classifier):
    model, tok = tiny_classifier
    df = load_split("trec", "test", mirror=shared_data, caps=10)
    model.train()
    try:
        out = predict_logits(model, tok, df, batch_size=4, max_length=32)
        assert model.training
    finally:
        model.eval()
    assert out.shape == (10, 7) and out.dtype == np.float32
    with pytest.raises(ValueError, match="empty"):
        predict(model, tok, df.head(0), batch_size=4, max_length=32)
    mixed = df.with_columns(text_pair=pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("x")).otherwise(None))
    with pytest.raises(ValueError, match="text_pair is set for 3 of 10 rows"):
        predict(model, tok, mixed, batch_size=4, max_length=32)
