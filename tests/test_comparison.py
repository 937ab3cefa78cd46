"""Paired bootstrap Tropical vs Standard (adapter_pruning.comparison) and its two figures."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from adapter_pruning import comparison
from adapter_pruning.comparison import (
    comparison_frame,
    metric_per_seed,
    paired_bootstrap,
    read_predictions,
    win_counts,
    write_comparison,
)
from adapter_pruning.evaluation import compute_metrics
from adapter_pruning.results import PREDICTIONS_SCHEMA, SCHEMA, predictions_frame, score_frame

PROV = {"device": "cpu", "torch": "t", "transformers": "tf", "adapters": "a"}


def _noisy(rng, labels, acc, num_labels, shape):
    """Predictions right with probability ``acc``, else a uniformly random class."""
    return np.where(rng.random(shape) < acc, labels, rng.integers(0, num_labels, shape))


# --------------------------------------------------------------------------- paired_bootstrap


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_identical_predictions_give_zero_and_a_degenerate_interval(metric):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 300)
    preds = _noisy(rng, labels, 0.7, 4, (3, 300))
    r = paired_bootstrap(labels, preds, preds.copy(), num_labels=4, metric=metric, resamples=200)
    assert r == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "resamples": 200, "level": 0.95}


def _k_more(n, k, S, seed=0):
    """Reference right on the first half of the examples; the target additionally on k more."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    wrong = (labels + 1) % 3
    ref = np.where(np.arange(n) < n // 2, labels, wrong)
    tgt = np.where(np.arange(n) < n // 2 + k, labels, wrong)
    return labels, np.tile(tgt, (S, 1)), np.tile(ref, (S, 1))


def test_target_right_on_k_more_examples_gives_k_over_n_exactly():
    n = 400
    labels, tgt, ref = _k_more(n, 60, S=4)
    r = paired_bootstrap(labels, tgt, ref, num_labels=3, metric="accuracy", resamples=500, seed=3)
    assert r["diff"] == 60 / n
    assert 0 < r["lo"] < r["diff"] < r["hi"]
    # with a single differing example the interval reaches 0: it is not significant
    labels, tgt, ref = _k_more(n, 1, S=4)
    r = paired_bootstrap(labels, tgt, ref, num_labels=3, metric="accuracy", resamples=500, seed=3)
    assert r["diff"] == 1 / n
    assert r["lo"] == 0.0 <= r["diff"] <= r["hi"]


def test_macro_f1_observed_difference_equals_compute_metrics():
    rng = np.random.default_rng(1)
    n, S, C = 500, 5, 7
    labels = rng.integers(0, C - 1, n)  # class 6 never occurs: F1 = 0 unless predicted
    tgt, ref = _noisy(rng, labels, 0.6, C, (S, n)), _noisy(rng, labels, 0.5, C, (S, n))
    expect = np.mean(
        [
            compute_metrics(tgt[s], labels, C)["macro_f1"] - compute_metrics(ref[s], labels, C)["macro_f1"]
            for s in range(S)
        ]
    )
    r = paired_bootstrap(labels, tgt, ref, num_labels=C, metric="macro_f1", resamples=50)
    assert r["diff"] == pytest.approx(expect, abs=1e-12)
    for metric in ("accuracy", "macro_f1"):
        got = metric_per_seed(labels, tgt, num_labels=C, metric=metric)
        assert got == pytest.approx([compute_metrics(tgt[s], labels, C)[metric] for s in range(S)], abs=1e-12)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_resamples_equal_a_loop_over_compute_metrics(metric):
    """The vectorised resamples are the documented two-level paired bootstrap, resample by resample."""
    rng = np.random.default_rng(2)
    n, S, C, B = 80, 3, 4, 40
    labels = rng.integers(0, C, n)
    tgt, ref = _noisy(rng, labels, 0.7, C, (S, n)), _noisy(rng, labels, 0.6, C, (S, n))
    r = paired_bootstrap(labels, tgt, ref, num_labels=C, metric=metric, resamples=B, seed=11)
    draw = np.random.default_rng(11)
    seeds = draw.integers(0, S, size=(B, S))
    examples = draw.integers(0, n, size=(B, n))  # one chunk: B * n is small
    stats = [
        np.mean(
            [
                compute_metrics(tgt[s, ex], labels[ex], C)[metric] - compute_metrics(ref[s, ex], labels[ex], C)[metric]
                for s in ss
            ]
        )
        for ss, ex in zip(seeds, examples)
    ]
    lo, hi = np.quantile(stats, [0.025, 0.975])
    assert (r["lo"], r["hi"]) == pytest.approx((lo, hi), abs=1e-12)


def test_bootstrap_is_deterministic_under_a_seed():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, 300)
    tgt, ref = _noisy(rng, labels, 0.6, 5, (4, 300)), _noisy(rng, labels, 0.55, 5, (4, 300))
    kw = dict(num_labels=5, metric="macro_f1", resamples=300)
    a = paired_bootstrap(labels, tgt, ref, seed=7, **kw)
    assert a == paired_bootstrap(labels, tgt, ref, seed=7, **kw)
    b = paired_bootstrap(labels, tgt, ref, seed=8, **kw)
    assert b["diff"] == a["diff"] and (b["lo"], b["hi"]) != (a["lo"], a["hi"])


def test_interval_narrows_with_more_examples():
    """With the seeds alike only the example level varies: 16x the examples, ~1/4 the width."""
    rng = np.random.default_rng(5)
    n, S = 100, 3
    labels = rng.integers(0, 3, n)
    tgt = np.tile(_noisy(rng, labels, 0.7, 3, n), (S, 1))
    ref = np.tile(_noisy(rng, labels, 0.6, 3, n), (S, 1))
    kw = dict(num_labels=3, metric="accuracy", resamples=400, seed=0)
    small = paired_bootstrap(labels, tgt, ref, **kw)
    big = paired_bootstrap(np.tile(labels, 16), np.tile(tgt, 16), np.tile(ref, 16), **kw)
    assert big["diff"] == pytest.approx(small["diff"], abs=1e-15)
    assert big["hi"] - big["lo"] < 0.5 * (small["hi"] - small["lo"])


def test_bootstrap_rejects_misaligned_inputs():
    labels = np.zeros(5, dtype=np.int64)
    with pytest.raises(ValueError, match=r"\(S, n\)"):
        paired_bootstrap(labels, np.zeros((2, 5), int), np.zeros((3, 5), int), num_labels=2, metric="accuracy")
    with pytest.raises(ValueError, match="metric"):
        paired_bootstrap(labels, np.zeros((2, 5), int), np.zeros((2, 5), int), num_labels=2, metric="f1")


# --------------------------------------------------------------------------- comparison_frame


def _synthetic(task="trec", seeds=(0, 1, 2), ps=(50.0, 90.0), lams=(1.0,), n=60, extra_methods=("random",)):
    """results (SCHEMA) and predictions (PREDICTIONS_SCHEMA) of a small run whose scores are those
    of the predictions (compute_metrics)."""
    from adapter_pruning.data import TASKS

    spec = TASKS[task]
    C = spec.num_labels
    rng = np.random.default_rng(0)
    ids = [f"ex{i:03d}" for i in range(n)]
    labels = rng.integers(0, C, n)
    score_rows, pred_rows = [], []

    def add(seed, method, scope, p, lam, acc):
        perm = rng.permutation(n)  # predictions stored in an arbitrary order
        pred = _noisy(rng, labels, acc, C, n)
        m = compute_metrics(pred, labels, C)
        ident = {"model": "m", "task": task, "seed": seed}
        n_pruned = 0 if method == "full" else int(p) + (7 if method == "tropical" else 0)
        score_rows.append(
            score_frame(
                ident,
                {"test": m, "validation": m},
                scope=scope,
                method=method,
                p=p,
                n_params=200,
                n_pruned=n_pruned,
                primary_metric=spec.metric,
                provenance=PROV,
                lam=lam,
            )
        )
        df = pl.DataFrame({"id": [ids[i] for i in perm], "prediction": pred[perm], "label": labels[perm]})
        pred_rows.append(predictions_frame(ident, {"test": df}, lam=lam, scope=scope, method=method, p=p))

    for seed in seeds:
        add(seed, "full", None, 0.0, None, 0.9)
        for lam in lams:
            for p in ps:
                for method, acc in (("standard", 0.6), ("tropical", 0.75)) + tuple((m, 0.4) for m in extra_methods):
                    add(seed, method, "CU", p, lam, acc)
    return pl.concat(score_rows), pl.concat(pred_rows), labels


def test_comparison_frame_means_std_and_bootstrap():
    results, preds, labels = _synthetic()
    frame = comparison_frame(results, preds, resamples=200, seed=1)
    assert frame.height == 2
    assert frame["p"].to_list() == [50.0, 90.0]
    assert frame["n_seeds"].to_list() == [3, 3] and frame["n_examples"].to_list() == [60, 60]
    assert set(frame["metric"]) == {"accuracy"}
    test = results.filter(pl.col("primary"), pl.col("split") == "test")
    full = test.filter(pl.col("method") == "full")["score"].to_numpy()
    row = frame.row(1, named=True)
    assert row["full_mean"] == pytest.approx(full.mean())
    for method in ("standard", "tropical", "random"):
        s = test.filter(pl.col("method") == method, pl.col("p") == 90.0).sort("seed")
        assert row[f"{method}_mean"] == pytest.approx(s["score"].mean())
        assert row[f"{method}_std"] == pytest.approx(np.std(s["score"].to_numpy(), ddof=1))
        assert row[f"{method}_retained"] == pytest.approx(s["retained"].mean())
    assert "activation_mean" not in frame.columns
    # the bootstrap on the paired (seed, id) predictions
    p = preds.filter(pl.col("p") == 90.0).sort("seed", "id")
    tgt = np.stack([p.filter(pl.col("method") == "tropical", pl.col("seed") == s)["prediction"] for s in (0, 1, 2)])
    ref = np.stack([p.filter(pl.col("method") == "standard", pl.col("seed") == s)["prediction"] for s in (0, 1, 2)])
    lab = p.filter(pl.col("method") == "tropical", pl.col("seed") == 0)["label"].to_numpy()
    boot = paired_bootstrap(lab, tgt, ref, num_labels=6, metric="accuracy", resamples=200, seed=1)
    assert (row["diff"], row["ci_lo"], row["ci_hi"]) == (boot["diff"], boot["lo"], boot["hi"])
    assert row["diff"] == pytest.approx(row["tropical_mean"] - row["standard_mean"], abs=1e-12)
    assert row["significant"] == (boot["lo"] > 0 or boot["hi"] < 0)


def test_comparison_frame_one_seed_macro_f1_and_several_lambdas():
    results, preds, _ = _synthetic(task="meld", seeds=(4,), ps=(30.0,), lams=(0.5, 2.0), extra_methods=())
    frame = comparison_frame(results, preds, resamples=50)
    assert frame["lam"].to_list() == [0.5, 2.0]
    assert set(frame["metric"]) == {"macro_f1"}
    assert frame["standard_std"].to_list() == [None, None]
    assert frame["n_seeds"].to_list() == [1, 1]


def test_comparison_frame_refuses_predictions_that_were_not_scored():
    results, preds, _ = _synthetic(seeds=(0, 1), ps=(50.0,))
    bad = results.with_columns(
        pl.when((pl.col("method") == "standard") & (pl.col("seed") == 1) & (pl.col("split") == "test"))
        .then(pl.col("score") + 0.01)
        .otherwise(pl.col("score"))
        .alias("score")
    )
    with pytest.raises(ValueError, match=r"m/trec/seed1/lam=1/CU/standard/p50/test.*not those that were scored"):
        comparison_frame(bad, preds, resamples=10)


def test_comparison_frame_refuses_a_missing_seed_or_example():
    results, preds, _ = _synthetic(seeds=(0, 1), ps=(50.0,))
    no_seed = preds.filter(~((pl.col("method") == "standard") & (pl.col("seed") == 1)))
    with pytest.raises(ValueError, match=r"no predictions for state m/trec/seed1/lam=1/CU/standard/p50/test"):
        comparison_frame(results, no_seed, resamples=10)
    no_ex = preds.filter(~((pl.col("method") == "tropical") & (pl.col("seed") == 1) & (pl.col("id") == "ex007")))
    with pytest.raises(ValueError, match=r"seed1/lam=1/CU/tropical/p50/test cover other examples.*ex007"):
        comparison_frame(results, no_ex, resamples=10)
    with pytest.raises(ValueError, match="pairs seeds"):
        comparison_frame(results.filter(~((pl.col("method") == "tropical") & (pl.col("seed") == 0))), preds)


def test_read_predictions_checks_the_schema(tmp_path):
    from adapter_pruning.io import CorruptFileError, write_parquet

    _, preds, _ = _synthetic(seeds=(0,), ps=(50.0,), extra_methods=())
    a, b, bad = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "bad.parquet"
    write_parquet(preds.head(10), a)
    write_parquet(preds.tail(5), b)
    got = read_predictions([a, b])
    assert got.schema == pl.Schema(PREDICTIONS_SCHEMA) and got.height == 15
    write_parquet(preds.with_columns(pl.col("prediction").cast(pl.Int32)), bad)
    with pytest.raises(CorruptFileError, match=r"bad\.parquet.*prediction"):
        read_predictions([a, bad])
    with pytest.raises(ValueError, match="no prediction files"):
        read_predictions([])


# --------------------------------------------------------------------------- wins and output


def _frame(diffs, los, his, task="trec", lam=1.0):
    n = len(diffs)
    return pl.DataFrame(
        {
            "model": ["m"] * n,
            "task": [task] * n,
            "scope": ["CU"] * n,
            "lam": [lam] * n,
            "p": [float(10 * i) for i in range(n)],
            "diff": diffs,
            "ci_lo": los,
            "ci_hi": his,
        }
    )


def test_win_counts():
    f = pl.concat(
        [
            _frame([0.02, 0.01, 0.0, -0.01, -0.03], [0.005, -0.01, 0.0, -0.02, -0.05], [0.03, 0.02, 0.0, 0.0, -0.01]),
            _frame([0.01], [0.001], [0.02], task="other", lam=2.0),
        ]
    )
    w = win_counts(f)
    assert w.columns == [
        "model",
        "task",
        "scope",
        "lam",
        "n_p",
        "wins",
        "ties",
        "losses",
        "significant_wins",
        "significant_losses",
        "paper",
    ]
    assert w.row(0) == ("m", "other", "CU", 2.0, 1, 1, 0, 0, 1, 0, None)
    assert w.row(1) == ("m", "trec", "CU", 1.0, 5, 2, 1, 2, 1, 1, "6/9")
    assert comparison.PAPER_WINS["meld"] == (8, 9)


def test_write_comparison_writes_md_csv_tex(tmp_path):
    results, preds, _ = _synthetic(seeds=(0, 1), ps=(50.0, 90.0))
    frame = comparison_frame(results, preds, resamples=100)
    out = {ext: tmp_path / f"comparison.{ext}" for ext in ("md", "csv", "tex")}
    write_comparison(frame, win_counts(frame), out, resamples=100)
    md = out["md"].read_text()
    assert "paired bootstrap over seeds and test examples (100 resamples" in md
    assert "percentile 95 % CI" in md
    r = frame.row(0, named=True)
    assert f"{100 * r['tropical_mean']:.2f} ± {100 * r['tropical_std']:.2f}" in md
    assert f"{100 * r['diff']:+.2f} [{100 * r['ci_lo']:+.2f}, {100 * r['ci_hi']:+.2f}]" in md
    assert "| 6/9 |" in md
    back = pl.read_csv(out["csv"])
    assert back.height == frame.height and back.columns == frame.columns
    tex = out["tex"].read_text()
    assert tex.count(r"\begin{tabular}") == 2 and "λ" not in tex and "Δ" not in tex
    assert not list(tmp_path.glob(".tmp-*"))


# --------------------------------------------------------------------------- figures


def test_figures_write_png_and_svg(tmp_path):
    from adapter_pruning.figures.delta import delta_figure
    from adapter_pruning.figures.methods import method_comparison_figure
    from adapter_pruning.io import write_parquet

    results, preds, _ = _synthetic(seeds=(0, 1), ps=(50.0, 90.0), lams=(0.5, 2.0))
    assert results.schema == pl.Schema(SCHEMA)
    write_parquet(results, tmp_path / "results.parquet")
    frame = comparison_frame(results, preds, resamples=50)
    out = {ext: tmp_path / f"comparison.{ext}" for ext in ("md", "csv", "tex")}
    write_comparison(frame, win_counts(frame), out, resamples=50)
    figs = {
        "methods": lambda o: method_comparison_figure(tmp_path / "results.parquet", "trec", o),
        "delta": lambda o: delta_figure(out["csv"], "trec", o),
    }
    for name, draw in figs.items():
        o = {"png": tmp_path / f"{name}.png", "svg": tmp_path / f"{name}.svg"}
        draw(o)
        assert o["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in o["svg"].read_text()
