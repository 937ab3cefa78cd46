"""Method comparisons (adapter_pruning.comparison): the paired bootstrap per state, the pooled
hierarchical bootstrap, p-values and their adjustment, verdicts, floors, the tables and the figure."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from adapter_pruning import comparison
from adapter_pruning.comparison import (
    adjust_p_values,
    bootstrap_p_values,
    compare,
    floor_score,
    metric_per_seed,
    minimum_detectable_effect,
    paired_bootstrap,
    pooled_bootstrap,
    read_predictions,
    verdict,
    win_counts,
    write_comparison,
    write_verdicts,
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
    assert r == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "p_value": 1.0, "resamples": 200, "level": 0.95}


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
    stats = np.round(stats, 12)  # the loop's float sums: exact zeros stay zeros
    p = min(1.0, 2 * (1 + min((stats <= 0).sum(), (stats >= 0).sum())) / (B + 1))
    assert r["p_value"] == pytest.approx(p)


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


# --------------------------------------------------------------------------- p-values, adjustment, verdicts


def test_bootstrap_p_values_by_hand():
    stats = np.array([[0.0, 0.1, -0.2, 0.3], [0.0, 0.2, 0.1, 0.4], [0.0, 0.3, 0.2, 0.5], [0.0, -0.1, 0.3, 0.6]])
    # B = 4: all zero -> 1; one resample <= 0 -> 2·(1+1)/5; one <= 0 -> same; none <= 0 -> 2/5
    assert bootstrap_p_values(stats).tolist() == pytest.approx([1.0, 0.8, 0.8, 0.4])
    assert bootstrap_p_values(stats, null=0.45).tolist() == pytest.approx([0.4, 0.4, 0.4, 1.0])  # 2 each side


def test_adjusted_p_values_are_statsmodels_holm_and_bh():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.001, 0.04, 0.03, 0.2, 0.012, 0.9])
    holm, bh = adjust_p_values(p)
    assert holm.tolist() == multipletests(p, method="holm")[1].tolist()
    assert bh.tolist() == multipletests(p, method="fdr_bh")[1].tolist()
    # by hand: Holm multiplies the k-th smallest by (m − k + 1), keeps monotone and caps at 1
    assert holm.tolist() == pytest.approx([0.006, 0.12, 0.12, 0.4, 0.06, 0.9])
    assert [a.size for a in adjust_p_values([])] == [0, 0]


@pytest.mark.parametrize(
    ("ci95", "ci90", "expected"),
    [
        ((-0.004, 0.005), (-0.003, 0.004), "equivalent"),  # inside ±1 point
        ((0.001, 0.006), (0.002, 0.005), "equivalent"),  # above 0, but smaller than the margin
        ((-0.012, 0.004), (-0.011, 0.003), "inconclusive"),  # straddles 0 and the margin
        ((-0.004, 0.012), (-0.003, 0.0101), "inconclusive"),
        ((0.004, 0.03), (0.006, 0.025), "better"),  # above 0, not shown to be small
        ((0.012, 0.03), (0.014, 0.025), "better"),  # entirely outside the margin
        ((-0.03, -0.001), (-0.025, -0.002), "worse"),
        ((-0.0105, 0.0), (-0.0099, -0.0001), "equivalent"),  # the 90 % CI decides equivalence
        ((-0.01, 0.0), (-0.01, -0.001), "inconclusive"),  # on the margin is not inside it
    ],
)
def test_verdict_on_hand_made_cells(ci95, ci90, expected):
    assert verdict(*ci95, *ci90, 0.01) == expected


def test_minimum_detectable_effect():
    assert minimum_detectable_effect(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert minimum_detectable_effect(np.array([0.5, 2.0]), level=0.9, power=0.5) == pytest.approx(
        [0.5 * 1.644854, 2 * 1.644854], abs=1e-5
    )


def test_floor_score():
    labels = np.array([0, 0, 0, 1, 2, 2, 0, 1])  # class 0: 4 of 8
    assert floor_score(labels, num_labels=4, metric="accuracy") == 0.5
    # macro-F1 of always 0: F1 of class 0 = 2·4/(8 + 4), the other 3 classes 0
    assert floor_score(labels, num_labels=4, metric="macro_f1") == pytest.approx((8 / 12) / 4)


# --------------------------------------------------------------------------- pooled bootstrap


def _planted(rng, effect, P=9, S=5, n=300, C=3):
    """Accuracy predictions whose target − reference difference has population mean ``effect`` in
    every one of ``P`` states: per seed and example, the target is right and the reference wrong
    with probability ``0.05 + effect + a_s + b_i + c_sj`` (seed effect ``a``, example effect ``b``
    shared by every seed and state, seed-by-state noise ``c``, all of mean 0), the reverse with
    probability 0.05, and otherwise both agree (right with probability 0.7)."""
    labels = rng.integers(0, C, n)
    wrong = (labels + 1) % C
    a, b = rng.uniform(-0.02, 0.02, S), rng.uniform(-0.03, 0.03, n)
    pt, pr = np.empty((P, S, n), dtype=np.int64), np.empty((P, S, n), dtype=np.int64)
    for j in range(P):
        up = 0.05 + effect + a[:, None] + b[None, :] + rng.uniform(-0.01, 0.01, S)[:, None]
        u = rng.random((S, n))
        d = np.where(u < up, 1, np.where(u < up + 0.05, -1, 0))
        agree = rng.random((S, n)) < 0.7
        pt[j] = np.where(np.where(d == 0, agree, d == 1), labels, wrong)
        pr[j] = np.where(np.where(d == 0, agree, d == -1), labels, wrong)
    return labels, pt, pr


@pytest.mark.parametrize("effect", [0.01, 0.0])
def test_pooled_interval_covers_a_planted_effect_at_about_the_nominal_rate(effect):
    """A seeded simulation: 120 independent studies (5 seeds, 300 fresh test examples, 9 states
    sharing them); the pooled 95 % CI covers the planted mean difference (+1 point, or 0) in about
    95 % of them, and with no effect the p-value is below 0.05 in about 5 %."""
    reps, cover, reject = 120, 0, 0
    for rep in range(reps):
        labels, pt, pr = _planted(np.random.default_rng(1000 + rep), effect)
        r = pooled_bootstrap(labels, pt, pr, num_labels=3, metric="accuracy", resamples=300, seed=rep)
        cover += r["ci_lo"] <= effect <= r["ci_hi"]
        reject += r["p_value"] < 0.05
    assert 0.88 <= cover / reps <= 0.99
    if effect == 0:
        assert reject / reps <= 0.1
    else:
        assert reject / reps >= 0.2  # some power at +1 point with 300 examples


def test_pooled_macro_f1_with_exchangeable_methods_covers_zero():
    """Two methods drawn from the same distribution (true Δ = 0) on 7 classes, macro-F1."""
    reps, cover = 60, 0
    for rep in range(reps):
        rng = np.random.default_rng(2000 + rep)
        labels = rng.integers(0, 7, 250)
        pt, pr = (_noisy(rng, labels, 0.5, 7, (4, 5, 250)) for _ in range(2))
        r = pooled_bootstrap(labels, pt, pr, num_labels=7, metric="macro_f1", resamples=200, seed=rep)
        cover += r["ci_lo"] <= 0 <= r["ci_hi"]
    assert cover / reps >= 0.88


def test_pooled_of_one_state_is_the_paired_bootstrap():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 200)
    pt, pr = _noisy(rng, labels, 0.7, 4, (1, 3, 200)), _noisy(rng, labels, 0.6, 4, (1, 3, 200))
    for metric in ("accuracy", "macro_f1"):
        pool = pooled_bootstrap(labels, pt, pr, num_labels=4, metric=metric, resamples=300, seed=5)
        one = paired_bootstrap(labels, pt[0], pr[0], num_labels=4, metric=metric, resamples=300, seed=5)
        assert (pool["diff"], pool["ci_lo"], pool["ci_hi"], pool["p_value"]) == (
            one["diff"],
            one["lo"],
            one["hi"],
            one["p_value"],
        )


def test_pooled_statistics_by_hand():
    """Every state a copy of one: the pooled Δ is that state's; the paired sd is the std over seeds of
    the per-seed Δ, the unpaired one sqrt(sd_t² + sd_r²); the MDE is 2.80 × the SE of the resamples."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 150)
    t, r = _noisy(rng, labels, 0.8, 3, (3, 150)), _noisy(rng, labels, 0.6, 3, (3, 150))
    pool = pooled_bootstrap(labels, np.stack([t] * 4), np.stack([r] * 4), num_labels=3, metric="accuracy", seed=1)
    acc_t, acc_r = (t == labels).mean(axis=1), (r == labels).mean(axis=1)
    assert pool["diff"] == pytest.approx(np.mean(acc_t - acc_r))
    assert pool["seed_std_paired"] == pytest.approx(np.std(acc_t - acc_r, ddof=1))
    assert pool["seed_std_unpaired"] == pytest.approx(np.hypot(np.std(acc_t, ddof=1), np.std(acc_r, ddof=1)))
    assert pool["mde"] == pytest.approx(minimum_detectable_effect(pool["se"]))
    assert pool["ci_lo"] <= pool["ci90_lo"] <= pool["diff"] <= pool["ci90_hi"] <= pool["ci_hi"]
    assert pool["verdict"] == "better" and pool["p_value"] < 0.01


# --------------------------------------------------------------------------- compare


def _synthetic(
    task="trec",
    seeds=(0, 1, 2),
    ps=(50.0, 90.0),
    lams=(1.0,),
    n=60,
    methods=(("standard", 0.6), ("tropical", 0.75), ("random", 0.4)),
    constant=(),
    model="m",
):
    """results (SCHEMA) and predictions (PREDICTIONS_SCHEMA) of a small run whose scores are those
    of the predictions (compute_metrics). ``methods``: (name, accuracy of its noisy predictions);
    states ``(method, p)`` in ``constant`` predict class 0 for every example."""
    from adapter_pruning.data import TASKS

    spec = TASKS[task]
    C = spec.num_labels
    rng = np.random.default_rng(0)
    ids = [f"ex{i:03d}" for i in range(n)]
    labels = rng.integers(0, C, n)
    score_rows, pred_rows = [], []

    def add(seed, method, scope, p, lam, acc):
        perm = rng.permutation(n)  # predictions stored in an arbitrary order
        pred = np.zeros(n, dtype=np.int64) if (method, p) in constant else _noisy(rng, labels, acc, C, n)
        m = compute_metrics(pred, labels, C)
        ident = {"model": model, "task": task, "seed": seed}
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
                for method, acc in methods:
                    add(seed, method, "CU", p, lam, acc)
    return pl.concat(score_rows), pl.concat(pred_rows), labels


def _arrays(preds, method, p, lam=1.0, seeds=(0, 1, 2)):
    d = preds.filter(pl.col("method") == method, pl.col("p") == p, pl.col("lam") == lam).sort("seed", "id")
    return np.stack([d.filter(pl.col("seed") == s)["prediction"].to_numpy() for s in seeds])


def test_compare_state_rows_means_std_and_bootstrap():
    results, preds, labels = _synthetic()
    states = compare(results, preds, resamples=200, seed=1).states
    assert states.height == 2
    assert states["p"].to_list() == [50.0, 90.0]
    assert states["target"].to_list() == ["tropical"] * 2 and states["reference"].to_list() == ["standard"] * 2
    assert states["n_seeds"].to_list() == [3, 3] and states["n_examples"].to_list() == [60, 60]
    assert set(states["metric"]) == {"accuracy"}
    test = results.filter(pl.col("primary"), pl.col("split") == "test")
    full = test.filter(pl.col("method") == "full")["score"].to_numpy()
    row = states.row(1, named=True)
    assert row["full_mean"] == pytest.approx(full.mean())
    for method in ("standard", "tropical", "random"):
        s = test.filter(pl.col("method") == method, pl.col("p") == 90.0).sort("seed")
        assert row[f"{method}_mean"] == pytest.approx(s["score"].mean())
        assert row[f"{method}_std"] == pytest.approx(np.std(s["score"].to_numpy(), ddof=1))
        assert row[f"{method}_retained"] == pytest.approx(s["retained"].mean())
    assert "activation_mean" not in states.columns
    # the bootstrap on the paired (seed, id) predictions, exactly paired_bootstrap's numbers
    sorted_labels = labels[np.argsort([f"ex{i:03d}" for i in range(60)])]
    boot = paired_bootstrap(
        sorted_labels,
        _arrays(preds, "tropical", 90.0),
        _arrays(preds, "standard", 90.0),
        num_labels=6,
        metric="accuracy",
        resamples=200,
        seed=1,
    )
    assert (row["diff"], row["ci_lo"], row["ci_hi"], row["p_value"]) == (
        boot["diff"],
        boot["lo"],
        boot["hi"],
        boot["p_value"],
    )
    assert row["diff"] == pytest.approx(row["tropical_mean"] - row["standard_mean"], abs=1e-12)
    assert row["significant"] == (boot["lo"] > 0 or boot["hi"] < 0)
    per_seed = (_arrays(preds, "tropical", 90.0) == sorted_labels).mean(1) - (
        _arrays(preds, "standard", 90.0) == sorted_labels
    ).mean(1)
    assert row["diff_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["floor"] is False and row["floor_methods"] == ""
    assert row["floor_score"] == pytest.approx(np.bincount(labels).max() / 60)


def test_compare_every_pair_and_rows_independent_of_the_others():
    results, preds, _ = _synthetic(lams=(0.5, 1.0))
    pairs = [("tropical", "standard"), ("random", "standard"), ("tropical", "random")]
    out = compare(results, preds, pairs=pairs, resamples=150, seed=3)
    assert out.states.height == 3 * 2 * 2
    assert list(dict.fromkeys(out.states.select("target", "reference").iter_rows())) == pairs
    alone = compare(results, preds, pairs=[("random", "standard")], resamples=150, seed=3)
    got = out.states.filter(pl.col("target") == "random")
    assert got.equals(alone.states)
    one_task = compare(
        results.filter(pl.col("lam").is_null() | (pl.col("lam") == 1.0)), preds, pairs=pairs, resamples=150, seed=3
    )
    cols = ["diff", "ci_lo", "ci_hi", "p_value"]
    assert one_task.states.select(cols).equals(out.states.filter(pl.col("lam") == 1.0).select(cols))
    # random is far behind standard
    assert (got["diff"] < 0).all()
    with pytest.raises(ValueError, match="listed twice"):
        compare(results, preds, pairs=[("tropical", "standard"), ("tropical", "standard")])
    with pytest.raises(ValueError, match="two different methods"):
        compare(results, preds, pairs=[("tropical", "tropical")])


def test_holm_and_bh_columns_are_statsmodels_within_task_and_pair():
    from statsmodels.stats.multitest import multipletests

    a = _synthetic(ps=(50.0, 70.0, 90.0), lams=(0.5, 1.0))
    b = _synthetic(task="rotten_tomatoes", ps=(50.0, 70.0, 90.0), lams=(0.5, 1.0))
    results, preds = pl.concat([a[0], b[0]]), pl.concat([a[1], b[1]])
    states = compare(results, preds, pairs=[("tropical", "standard"), ("random", "standard")], resamples=100).states
    for (task, target), fam in states.group_by(["task", "target"]):
        assert fam.height == 6  # 2 λ × 3 p
        p = fam["p_value"].to_numpy()
        assert fam["p_holm"].to_list() == multipletests(p, method="holm")[1].tolist()
        assert fam["p_bh"].to_list() == multipletests(p, method="fdr_bh")[1].tolist()


def test_compare_pooled_rows_and_overall():
    a = _synthetic(ps=(50.0, 70.0, 90.0), lams=(0.5, 1.0))
    b = _synthetic(task="rotten_tomatoes", ps=(50.0, 70.0, 90.0), lams=(0.5, 1.0))
    results, preds = pl.concat([a[0], b[0]]), pl.concat([a[1], b[1]])
    out = compare(results, preds, resamples=200, seed=2, margin=0.05)
    v = out.verdicts
    cells = v.filter(~pl.col("overall"))
    assert cells.select("task", "lam").rows() == [
        ("trec", 0.5),
        ("trec", 1.0),
        ("rotten_tomatoes", 0.5),
        ("rotten_tomatoes", 1.0),
    ]
    assert cells["n_states"].to_list() == [3] * 4 and cells["n_floor"].to_list() == [0] * 4
    for row in cells.iter_rows(named=True):
        d = out.states.filter(pl.col("task") == row["task"], pl.col("lam") == row["lam"])
        assert row["diff"] == pytest.approx(d["diff"].mean())
        assert row["ci_lo"] < row["ci90_lo"] < row["ci90_hi"] < row["ci_hi"]
        assert row["margin"] == 0.05 and row["verdict"] in comparison.VERDICTS
    # the cell equals pooled_bootstrap on its arrays (same generator seed, same draw)
    sorted_labels = a[2][np.argsort([f"ex{i:03d}" for i in range(60)])]
    pt = np.stack([_arrays(a[1], "tropical", p, lam=0.5) for p in (50.0, 70.0, 90.0)])
    pr = np.stack([_arrays(a[1], "standard", p, lam=0.5) for p in (50.0, 70.0, 90.0)])
    pool = pooled_bootstrap(sorted_labels, pt, pr, num_labels=6, metric="accuracy", resamples=200, seed=2, margin=0.05)
    row = cells.row(0, named=True)
    assert {k: row[k] for k in pool} == pool
    overall = v.filter(pl.col("overall")).row(0, named=True)
    assert (overall["task"], overall["scope"], overall["lam"], overall["n_states"]) == ("all", "all", None, 12)
    assert overall["diff"] == pytest.approx(out.states["diff"].mean())
    assert overall["n_seeds"] == 3 and overall["seed_std_paired"] is not None


def test_floor_states_are_flagged_and_left_out():
    """Both methods predict one class at p = 90: a floor state, out of the family and the verdicts."""
    results, preds, _ = _synthetic(
        ps=(50.0, 70.0, 90.0), constant={("tropical", 90.0), ("standard", 90.0), ("random", 70.0)}
    )
    out = compare(results, preds, pairs=[("tropical", "standard"), ("random", "standard")], resamples=100)
    s = out.states
    floor = s.filter(pl.col("floor"))
    assert floor.select("target", "p").rows() == [("tropical", 90.0)]
    assert floor["p_holm"].is_null().all() and floor["p_bh"].is_null().all()
    assert s.filter(pl.col("target") == "random", pl.col("p") == 70.0)["floor_methods"].to_list() == ["random"]
    # one method at the floor is a real difference, not a floor state
    assert s.filter(pl.col("target") == "random", pl.col("p") == 90.0)["floor_methods"].to_list() == ["standard"]
    fam = s.filter(pl.col("target") == "tropical", ~pl.col("floor"))
    assert fam["p_holm"].to_list() == pytest.approx(adjust_p_values(fam["p_value"].to_numpy())[0].tolist())
    cells = out.verdicts.filter(~pl.col("overall"))
    assert cells["n_states"].to_list() == [2, 3] and cells["n_floor"].to_list() == [1, 0]
    assert cells["diff"][0] == pytest.approx(fam["diff"].mean())
    # every state at the floor: no estimate, no verdict, the count says why
    only = compare(results.filter(pl.col("p") == 90.0), preds, resamples=50).verdicts
    assert only["n_states"].to_list() == [0, 0] and only["n_floor"].to_list() == [1, 1]  # cell and overall
    assert only["diff"].is_null().all() and only["verdict"].is_null().all()


def test_floor_band_follows_floor_fraction():
    """A method scoring just above the majority class sits at the floor with a wide band, not with 0."""
    results, preds, labels = _synthetic(methods=(("standard", 0.05), ("tropical", 0.05)), ps=(50.0,))
    frac = compare(results, preds, resamples=20, floor_fraction=1.0).states
    zero = compare(results, preds, resamples=20, floor_fraction=0.0).states
    assert frac["floor"].to_list() == [True]
    mean = frac["standard_mean"][0]
    assert zero["floor"].to_list() == [
        mean <= zero["floor_score"][0] and frac["tropical_mean"][0] <= zero["floor_score"][0]
    ]


def test_compare_one_seed_macro_f1_and_several_lambdas():
    results, preds, _ = _synthetic(
        task="meld", seeds=(4,), ps=(30.0,), lams=(0.5, 2.0), methods=(("standard", 0.6), ("tropical", 0.75))
    )
    out = compare(results, preds, resamples=50)
    assert out.states["lam"].to_list() == [0.5, 2.0]
    assert set(out.states["metric"]) == {"macro_f1"}
    assert out.states["standard_std"].to_list() == [None, None]
    assert out.states["diff_std"].to_list() == [None, None]
    assert out.states["n_seeds"].to_list() == [1, 1]
    assert out.verdicts["seed_std_paired"].is_null().all()


def test_compare_refuses_predictions_that_were_not_scored():
    results, preds, _ = _synthetic(seeds=(0, 1), ps=(50.0,))
    bad = results.with_columns(
        pl.when((pl.col("method") == "standard") & (pl.col("seed") == 1) & (pl.col("split") == "test"))
        .then(pl.col("score") + 0.01)
        .otherwise(pl.col("score"))
        .alias("score")
    )
    with pytest.raises(ValueError, match=r"m/trec/seed1/lam=1/CU/standard/p50/test.*not those that were scored"):
        compare(bad, preds, resamples=10)


def test_compare_refuses_a_missing_seed_or_example():
    results, preds, _ = _synthetic(seeds=(0, 1), ps=(50.0,))
    no_seed = preds.filter(~((pl.col("method") == "standard") & (pl.col("seed") == 1)))
    with pytest.raises(ValueError, match=r"no predictions for state m/trec/seed1/lam=1/CU/standard/p50/test"):
        compare(results, no_seed, resamples=10)
    no_ex = preds.filter(~((pl.col("method") == "tropical") & (pl.col("seed") == 1) & (pl.col("id") == "ex007")))
    with pytest.raises(ValueError, match=r"seed1/lam=1/CU/tropical/p50/test cover other examples.*ex007"):
        compare(results, no_ex, resamples=10)
    with pytest.raises(ValueError, match="pairs seeds"):
        compare(results.filter(~((pl.col("method") == "tropical") & (pl.col("seed") == 0))), preds)


def test_read_predictions_checks_the_schema(tmp_path):
    from adapter_pruning.io import CorruptFileError, write_parquet

    _, preds, _ = _synthetic(seeds=(0,), ps=(50.0,))
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


def _frame(diffs, los, his, task="trec", lam=1.0, target="tropical", holm=None, floor=None):
    n = len(diffs)
    return pl.DataFrame(
        {
            "model": ["m"] * n,
            "task": [task] * n,
            "scope": ["CU"] * n,
            "lam": [lam] * n,
            "p": [float(10 * i) for i in range(n)],
            "target": [target] * n,
            "reference": ["standard"] * n,
            "diff": diffs,
            "ci_lo": los,
            "ci_hi": his,
            "p_holm": holm or [0.5] * n,
            "floor": floor or [False] * n,
        }
    )


def test_win_counts():
    f = pl.concat(
        [
            _frame(
                [0.02, 0.01, 0.0, -0.01, -0.03],
                [0.005, -0.01, 0.0, -0.02, -0.05],
                [0.03, 0.02, 0.0, 0.0, -0.01],
                holm=[0.01, 0.5, None, 0.9, 0.04],
                floor=[False, False, True, False, False],
            ),
            _frame([0.01], [0.001], [0.02], task="other", lam=2.0),
            _frame([0.01], [0.001], [0.02], target="random"),
        ]
    )
    w = win_counts(f)
    assert w.columns == [
        "model",
        "task",
        "scope",
        "lam",
        "target",
        "reference",
        "n_p",
        "wins",
        "ties",
        "losses",
        "significant_wins",
        "significant_losses",
        "holm_wins",
        "holm_losses",
        "floor",
        "paper",
    ]
    assert w.row(0) == ("m", "trec", "CU", 1.0, "tropical", "standard", 5, 2, 1, 2, 1, 1, 1, 1, 1, "6/9")
    assert w.row(1) == ("m", "other", "CU", 2.0, "tropical", "standard", 1, 1, 0, 0, 1, 0, 0, 0, 0, None)
    assert w.row(2)[4:6] == ("random", "standard") and w.row(2)[-1] is None  # the paper counts tropical − standard
    assert comparison.PAPER_WINS["meld"] == (8, 9)


def test_write_comparison_and_verdicts(tmp_path):
    results, preds, _ = _synthetic(seeds=(0, 1), ps=(50.0, 90.0), constant={("tropical", 90.0), ("standard", 90.0)})
    pairs = [("tropical", "standard"), ("random", "standard")]
    out = compare(results, preds, pairs=pairs, resamples=100)
    files = {ext: tmp_path / f"comparison.{ext}" for ext in ("md", "csv", "tex")}
    write_comparison(out.states, win_counts(out.states), files, resamples=100)
    md = files["md"].read_text()
    assert "paired bootstrap over seeds and test examples (100 resamples" in md
    assert "percentile 95 % CI" in md
    assert "## tropical − standard" in md and "## random − standard" in md
    assert "Multiplicity family: one task × this pair (random − standard)" in md
    r = out.states.row(0, named=True)
    assert f"{100 * r['tropical_mean']:.2f} ± {100 * r['tropical_std']:.2f}" in md
    assert f"{100 * r['diff']:+.2f} [{100 * r['ci_lo']:+.2f}, {100 * r['ci_hi']:+.2f}]" in md
    assert "| 6/9 |" in md
    back = pl.read_csv(files["csv"])
    assert back.height == out.states.height == 4 and back.columns == out.states.columns
    tex = files["tex"].read_text()
    assert tex.count(r"\begin{tabular}") == 1 + 2 * 2 and "λ" not in tex and "Δ" not in tex
    vfiles = {ext: tmp_path / f"comparison_verdicts.{ext}" for ext in ("md", "csv")}
    write_verdicts(out.verdicts, vfiles, resamples=100)
    vmd = vfiles["md"].read_text()
    assert vmd.startswith("# Verdicts: pooled paired comparisons")
    assert "1 of 4 states were excluded" in vmd  # p = 90 is a floor state of tropical − standard
    assert "Sensitivity of tropical − standard" in vmd and "- trec:" in vmd
    for row in out.verdicts.iter_rows(named=True):
        name = "equivalent within ±1" if row["verdict"] == "equivalent" else row["verdict"]
        assert f"| {name} |" in vmd
    back = pl.read_csv(vfiles["csv"])
    assert back.height == out.verdicts.height == 4 and back.columns == out.verdicts.columns
    assert not list(tmp_path.glob(".tmp-*"))


def test_write_with_no_pairs(tmp_path):
    results, preds, _ = _synthetic(seeds=(0,), ps=(50.0,))
    out = compare(results, preds, pairs=[("tropical", "activation")], resamples=10)
    assert out.states.height == 0 and out.verdicts.height == 0
    files = {ext: tmp_path / f"c.{ext}" for ext in ("md", "csv", "tex")}
    write_comparison(out.states, win_counts(out.states), files, resamples=10)
    write_verdicts(out.verdicts, {"md": tmp_path / "v.md", "csv": tmp_path / "v.csv"}, resamples=10)
    assert "No pruning state has a compared pair." in files["md"].read_text()
    assert "No pruning state has a compared pair." in (tmp_path / "v.md").read_text()


# --------------------------------------------------------------------------- figures


def test_figures_write_png_and_svg(tmp_path):
    from adapter_pruning.figures.delta import delta_figure
    from adapter_pruning.figures.methods import method_comparison_figure
    from adapter_pruning.io import write_parquet

    results, preds, _ = _synthetic(seeds=(0, 1), ps=(50.0, 90.0), lams=(0.5, 2.0))
    assert results.schema == pl.Schema(SCHEMA)
    write_parquet(results, tmp_path / "results.parquet")
    out = compare(results, preds, pairs=[("tropical", "standard"), ("random", "standard")], resamples=50)
    files = {ext: tmp_path / f"comparison.{ext}" for ext in ("md", "csv", "tex")}
    write_comparison(out.states, win_counts(out.states), files, resamples=50)
    figs = {
        "methods": lambda o: method_comparison_figure(tmp_path / "results.parquet", "trec", o),
        "delta": lambda o: delta_figure(files["csv"], "trec", o, target="random", reference="standard"),
        "delta_none": lambda o: delta_figure(files["csv"], "trec", o, target="activation", reference="standard"),
    }
    for name, draw in figs.items():
        o = {"png": tmp_path / f"{name}.png", "svg": tmp_path / f"{name}.svg"}
        draw(o)
        assert o["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in o["svg"].read_text()


def test_compare_reads_prediction_files_one_at_a_time(tmp_path):
    """The rule passes the prediction files (one per state and seed): the same numbers as the frame."""
    from adapter_pruning.io import CorruptFileError, write_parquet

    results, preds, _ = _synthetic(ps=(50.0, 90.0), lams=(0.5, 1.0))
    # most states list their examples in one (shuffled) order, as evaluation writes them; some not
    order = pl.DataFrame({"id": [f"ex{i:03d}" for i in np.random.default_rng(9).permutation(60)]})
    order = order.with_row_index("rank")
    files = []
    for i, part in enumerate(preds.partition_by(["seed", "lam", "method", "p"])):
        if i % 4 != 1:  # the first file too: the others reuse its sorting permutation
            part = part.join(order, on="id").sort("rank").drop("rank")
        files.append(tmp_path / f"{i}.parquet")
        write_parquet(part, files[-1])
    pairs = [("tropical", "standard"), ("random", "standard")]
    a = compare(results, preds, pairs=pairs, resamples=100)
    b = compare(results, files, pairs=pairs, resamples=100)
    assert a.states.equals(b.states) and a.verdicts.equals(b.verdicts)
    write_parquet(preds.head(5).drop("label"), tmp_path / "bad.parquet")
    with pytest.raises(CorruptFileError, match=r"bad\.parquet.*label"):
        compare(results, [*files, tmp_path / "bad.parquet"], pairs=pairs, resamples=10)
    with pytest.raises(ValueError, match=r"predictions of state m/trec/seed0/.* are given twice"):
        compare(results, [*files, files[0]], pairs=pairs, resamples=10)


def test_dense_small_frame_by_hand():
    """Per task and width: the mean retained share, mean ± std of the test score over seeds and the full
    model's mean over the same seeds; pruned states and other splits are left out."""
    from adapter_pruning.comparison import dense_small_frame

    prov = {"device": "cpu", "torch": "t", "transformers": "x", "adapters": "a"}
    frames = []
    for seed, (small, full) in enumerate([(0.6, 0.8), (0.7, 0.9)]):
        ids = {"model": "m", "task": "trec", "seed": seed}
        common = dict(primary_metric="accuracy", provenance=prov)
        frames.append(
            score_frame(
                ids,
                {"test": {"accuracy": small}, "validation": {"accuracy": 0.1}},
                scope=None,
                method="dense_small",
                p=90.0,
                n_params=100,
                n_pruned=90,
                width=1,
                **common,
            )
        )
        frames.append(
            score_frame(
                ids,
                {"test": {"accuracy": full}},
                scope=None,
                method="full",
                p=0.0,
                n_params=100,
                n_pruned=0,
                width=4,
                **common,
            )
        )
        frames.append(
            score_frame(
                ids,
                {"test": {"accuracy": 0.5}},
                scope="CU",
                method="tropical",
                p=90.0,
                n_params=100,
                n_pruned=88,
                lam=0.5,
                slack=3,
                width=4,
                **common,
            )
        )
    got = dense_small_frame(pl.concat(frames))
    assert got.height == 1
    row = got.row(0, named=True)
    assert (row["task"], row["width"], row["n_seeds"]) == ("trec", 1, 2)
    assert row["retained"] == pytest.approx(0.1) and row["mean"] == pytest.approx(0.65)
    assert row["std"] == pytest.approx(np.std([0.6, 0.7], ddof=1)) and row["full_mean"] == pytest.approx(0.85)


def test_overall_row_draws_each_task_independently():
    """Two tasks with identical data (same seeds, examples and predictions): the overall row is their
    mean, and with independent draws per task its bootstrap SE is about the task's SE / √2 (a shared
    draw would give the task's SE itself: the tasks' seeds and examples are unrelated)."""
    a = _synthetic(task="rotten_tomatoes", ps=(50.0, 70.0, 90.0), n=80)
    b = _synthetic(task="imdb", ps=(50.0, 70.0, 90.0), n=80)
    assert a[1]["prediction"].to_list() == b[1]["prediction"].to_list()
    out = compare(pl.concat([a[0], b[0]]), pl.concat([a[1], b[1]]), resamples=2000, seed=1)
    v = out.verdicts
    cells = v.filter(~pl.col("overall"), pl.col("target") == "tropical", pl.col("reference") == "standard")
    overall = v.filter(pl.col("overall"), pl.col("target") == "tropical", pl.col("reference") == "standard").row(
        0, named=True
    )
    assert cells["se"][0] == pytest.approx(cells["se"][1])  # same data, same draw within a task
    assert overall["diff"] == pytest.approx(cells["diff"][0])
    assert overall["se"] == pytest.approx(cells["se"][0] / np.sqrt(2), rel=0.12)
