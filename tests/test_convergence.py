"""adapter_pruning.convergence: training curves, the converged flag, the majority class; real data."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from adapter_pruning import convergence
from adapter_pruning.evaluation import compute_metrics
from adapter_pruning.results import SCHEMA


def _adapter(tmp_path, task, seed, curve, best_step, metric="accuracy"):
    folder = tmp_path / f"{task}{seed}"
    folder.mkdir()
    val = [{"step": s, "accuracy": a, "macro_f1": a / 2, "seconds": 0.1} for s, a in curve]
    (folder / "metrics.json").write_text(json.dumps({"metric": metric, "best_step": best_step, "val_curve": val}))
    return folder


def _fm(task, seed, score):
    row = {k: None for k in SCHEMA}
    row.update(task=task, seed=seed, method="full", split="test", metric="accuracy", score=score, primary=True)
    return row


@pytest.mark.parametrize("seed", range(4))
def test_majority_score_equals_scoring_the_constant_prediction(seed):
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 7, size=300)
    test = rng.integers(0, 7, size=200)
    majority = int(np.bincount(train, minlength=7).argmax())
    scores = compute_metrics(np.full(200, majority), test, 7)
    assert convergence.majority_score(train, test, 7, "accuracy") == pytest.approx(scores["accuracy"], abs=1e-12)
    assert convergence.majority_score(train, test, 7, "macro_f1") == pytest.approx(scores["macro_f1"], abs=1e-12)
    assert convergence.majority_score([1, 1, 0], [0, 0], 2, "macro_f1") == 0.0


def test_table_flags_seeds_that_peak_at_the_last_validation(tmp_path):
    dirs = {
        ("trec", 0): _adapter(tmp_path, "trec", 0, [(100, 0.5), (200, 0.7), (300, 0.6)], 200),
        ("trec", 1): _adapter(tmp_path, "trec", 1, [(100, 0.4), (200, 0.8), (300, 0.8)], 200),
        ("snli", 0): _adapter(tmp_path, "snli", 0, [(100, 0.5), (200, 0.6), (300, 0.7)], 300),
        ("snli", 1): _adapter(tmp_path, "snli", 1, [(100, 0.5), (200, 0.55), (300, 0.6)], 300),
    }
    imported = tmp_path / "imported"
    imported.mkdir()
    (imported / "metrics.json").write_text(json.dumps({"imported": True}))
    curves = convergence.read_curves({**dirs, ("meld", 0): imported})
    assert curves.height == 12 and set(curves["task"]) == {"trec", "snli"}
    results = pl.DataFrame(
        [_fm("trec", 0, 0.9), _fm("trec", 1, 0.8), _fm("snli", 0, 0.6), _fm("snli", 1, 0.7)], schema=SCHEMA
    )
    table = convergence.convergence_table(curves, results, {"trec": 0.2, "snli": 0.34})
    trec = table.filter(pl.col("task") == "trec").row(0, named=True)
    snli = table.filter(pl.col("task") == "snli").row(0, named=True)
    assert trec["converged"] and trec["seeds_best_at_last"] == 0 and trec["steps"] == 300
    assert trec["val_best"] == pytest.approx(75.0) and trec["val_last"] == pytest.approx(70.0)
    assert trec["fm_test"] == pytest.approx(85.0) and trec["fm_test_std"] == pytest.approx(
        100 * np.std([0.9, 0.8], ddof=1)
    )
    assert not snli["converged"] and snli["seeds_best_at_last"] == 2
    assert trec["paper_fm"] == 97.2 and snli["majority"] == pytest.approx(34.0)
    out = {k: tmp_path / f"c.{k}" for k in ("md", "csv")} | {"curves": tmp_path / "curves.csv"}
    convergence.write_convergence(table, curves, out)
    md = out["md"].read_text()
    assert "| snli | 2 | 300 |" in md and "2 of 2 | no |" in md and "trec, validation by step" in md
    assert pl.read_csv(out["curves"]).height == 12


@pytest.mark.slow
def test_real_adapter_curve_and_real_majority(real_rt_adapter, shared_data, tmp_path):
    """The real MiniLM adapter's metrics.json (40 steps, validation every 20) and the real Rotten
    Tomatoes test split: two validations, and a majority class at about half the test set."""
    from adapter_pruning.data import load_split

    adapter_dir, train, _, metrics = real_rt_adapter
    curves = convergence.read_curves({("rotten_tomatoes", 0): adapter_dir})
    assert curves["step"].to_list() == [20, 40] and curves["best_step"][0] == metrics["best_step"]
    test = load_split("rotten_tomatoes", "test", mirror=shared_data)
    share = convergence.majority_score(train["label"].to_numpy(), test["label"].to_numpy(), 2, "accuracy")
    assert share == pytest.approx(0.5, abs=0.01)
