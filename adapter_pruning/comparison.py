"""Tropical vs Standard with uncertainty: a paired bootstrap over seeds and test examples.

The paper (Bhardwaj et al. 2023, Table 1) reports single runs; here every pruning state
``(model, task, scope, lam, p)`` is compared over all seeds of the run, using the per-example
predictions that each evaluated state saves beside its score file
(:data:`adapter_pruning.results.PREDICTIONS_SCHEMA`).

**Statistic.** For a target method (default ``tropical``) and a reference method (default
``standard``, the count-matched magnitude baseline), ``Δ = mean over seeds s of
[metric(target, s) − metric(reference, s)]`` on the task's primary metric (accuracy or macro-F1,
as :func:`adapter_pruning.evaluation.compute_metrics` defines them), in 0..1 units.

**Confidence interval.** A paired two-level bootstrap (:func:`paired_bootstrap`): each resample
draws ``S`` seeds with replacement (the variation between trained adapters) and ``n`` test
examples with replacement (the variation of the test sample); the same example indices are used
for every drawn seed and for both methods (the comparison is paired on the example), and ``Δ`` is
recomputed. The CI is the percentile interval of the resampled ``Δ`` (95 % by default); a cell is
*significant* when its CI excludes 0. The test examples are the same for every seed of a task
(the test subset is drawn with ``data.seed``, not the training seed), so seeds and examples are
crossed factors and the pairing is exact.

Every row of :func:`comparison_frame` is bootstrapped with the same generator seed ``seed``, so a
row's interval does not depend on which other rows are present (filtering the results to one
task gives the same numbers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import polars as pl

from .aggregate import _cell, _md, _tex
from .io import atomic_path, read_parquet
from .results import PREDICTIONS_SCHEMA

__all__ = [
    "PAPER_WINS",
    "read_predictions",
    "metric_per_seed",
    "paired_bootstrap",
    "comparison_frame",
    "dense_small_frame",
    "win_counts",
    "write_comparison",
]

#: The paper's Table 1: in how many of its 9 retained fractions Tropical beats Standard, per task.
PAPER_WINS: dict[str, tuple[int, int]] = {
    "meld": (8, 9),
    "snli": (6, 9),
    "rotten_tomatoes": (8, 9),
    "imdb": (8, 9),
    "trec": (6, 9),
}

_METRICS = ("accuracy", "macro_f1")
_METHOD_ORDER = (
    "standard",
    "tropical",
    "random",
    "activation",
    "standard_ps",
    "tropical_pt",
    "tropical_opt",
    "taylor",
    "sparsegpt",
)
#: Upper bound on resamples × examples held in memory at once by :func:`paired_bootstrap`.
_CHUNK_CELLS = 4_000_000


def read_predictions(paths: Iterable[str | Path]) -> pl.DataFrame:
    """Concatenate prediction files (Parquet, one per evaluated state) into one frame with the
    columns of :data:`~adapter_pruning.results.PREDICTIONS_SCHEMA`, in that order.

    Each file must have every column of the schema with its exact type; a missing or mistyped
    column raises :class:`~adapter_pruning.io.CorruptFileError` naming the file. No files ->
    :class:`ValueError`."""
    frames = [
        read_parquet(path, required_columns=PREDICTIONS_SCHEMA).select(list(PREDICTIONS_SCHEMA)) for path in paths
    ]
    if not frames:
        raise ValueError("no prediction files to read")
    return pl.concat(frames)


def _check_metric(metric: str) -> None:
    if metric not in _METRICS:
        raise ValueError(f"metric {metric!r}: expected one of {_METRICS}")


def _one_hot(x: np.ndarray, num_labels: int) -> np.ndarray:
    """``(..., n)`` class indices -> ``(..., n, num_labels)`` float64 indicators."""
    return (x[..., None] == np.arange(num_labels)).astype(np.float64)


def _macro_f1(w: np.ndarray, labels: np.ndarray, preds: np.ndarray, num_labels: int) -> np.ndarray:
    """Macro-F1 of every seed under example weights.

    ``w``: ``(B, n)`` example multiplicities (one row per resample), ``labels`` ``(n,)``, ``preds``
    ``(S, n)``. Returns ``(B, S)``. Per class ``c``: ``F1 = 2 tp / (2 tp + fp + fn) = 2 tp /
    (#predicted c + #labelled c)``, 0 when that denominator is 0; the mean is over all
    ``num_labels`` classes (as :func:`~adapter_pruning.evaluation.compute_metrics`)."""
    S, n = preds.shape
    lab = _one_hot(labels, num_labels)  # (n, C)
    pred = _one_hot(preds, num_labels)  # (S, n, C)
    hit = pred * lab[None]  # (S, n, C): predicted c and labelled c
    B = w.shape[0]
    tp = (w @ hit.transpose(1, 0, 2).reshape(n, S * num_labels)).reshape(B, S, num_labels)
    n_pred = (w @ pred.transpose(1, 0, 2).reshape(n, S * num_labels)).reshape(B, S, num_labels)
    n_lab = (w @ lab)[:, None, :]  # (B, 1, C)
    denom = n_pred + n_lab
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(axis=2)


def metric_per_seed(labels, preds, *, num_labels: int, metric: str) -> np.ndarray:
    """``metric`` (``accuracy`` or ``macro_f1``) of each row of ``preds`` ``(S, n)`` against
    ``labels`` ``(n,)``; returns ``(S,)``, equal to ``compute_metrics(preds[s], labels, num_labels)[metric]``."""
    _check_metric(metric)
    labels = np.asarray(labels)
    preds = np.atleast_2d(np.asarray(preds))
    if metric == "accuracy":
        return (preds == labels[None]).sum(axis=1) / labels.size
    return _macro_f1(np.ones((1, labels.size)), labels, preds, num_labels)[0]


def _validate(labels, pred_target, pred_reference, num_labels):
    labels = np.asarray(labels)
    pt = np.asarray(pred_target)
    pr = np.asarray(pred_reference)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be 1-D and non-empty, got shape {labels.shape}")
    if pt.ndim != 2 or pt.shape != pr.shape or pt.shape[1] != labels.size or pt.shape[0] == 0:
        raise ValueError(
            f"pred_target and pred_reference must both be (S, n) with n = {labels.size} and S >= 1, "
            f"got {pt.shape} and {pr.shape}"
        )
    for name, arr in (("labels", labels), ("pred_target", pt), ("pred_reference", pr)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be integer class indices, got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= num_labels:
            raise ValueError(f"{name} contain values outside 0..{num_labels - 1}")
    return labels, pt, pr


def paired_bootstrap(
    labels,
    pred_target,
    pred_reference,
    *,
    num_labels: int,
    metric: str,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Paired two-level bootstrap CI of the mean per-seed metric difference, target − reference.

    ``labels``: ``(n,)`` gold class indices of the ``n`` test examples; ``pred_target``,
    ``pred_reference``: ``(S, n)`` predicted class indices, row ``s`` = seed ``s`` (the same seed
    in both arrays), column ``i`` = example ``i`` (aligned with ``labels``). ``metric``:
    ``accuracy`` or ``macro_f1`` (over all ``num_labels`` classes, 0 for a class with no
    tp + fp + fn, as :func:`~adapter_pruning.evaluation.compute_metrics`).

    Statistic: ``Δ = (1/S) Σ_s [metric(pred_target[s]) − metric(pred_reference[s])]``. Each of
    ``resamples`` resamples draws ``S`` seed indices and ``n`` example indices uniformly with
    replacement (``numpy.random.default_rng(seed)``); the same example indices serve every drawn
    seed and both methods (paired); ``Δ`` is recomputed on the resampled data (a seed drawn twice
    counts twice). The interval is the percentile interval: the ``(1 − level)/2`` and
    ``(1 + level)/2`` quantiles (numpy's default linear interpolation) of the resampled ``Δ``.
    Accuracy differences are summed in integers, so ``Δ`` is exact up to one rounding (``k/n``
    when the target is right on ``k`` more examples in every seed).

    Returns ``{"diff": Δ, "lo": lower bound, "hi": upper bound, "resamples": resamples,
    "level": level}`` (floats in 0..1 metric units, except ``resamples``). Deterministic for a
    given ``seed``."""
    _check_metric(metric)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    labels, pt, pr = _validate(labels, pred_target, pred_reference, num_labels)
    S, n = pt.shape
    rng = np.random.default_rng(seed)
    seed_idx = rng.integers(0, S, size=(resamples, S))  # (B, S)

    if metric == "accuracy":
        # per seed and example: +1 target right and reference wrong, −1 the reverse, 0 otherwise
        d = (pt == labels[None]).astype(np.int64) - (pr == labels[None]).astype(np.int64)  # (S, n)
        observed = float(d.sum() / (S * n))
    else:
        observed = float(
            np.mean(
                metric_per_seed(labels, pt, num_labels=num_labels, metric=metric)
                - metric_per_seed(labels, pr, num_labels=num_labels, metric=metric)
            )
        )

    stats = np.empty(resamples)
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        ex = rng.integers(0, n, size=(b, n))
        # w[r, i] = how often example i is drawn in resample r
        w = np.bincount((ex + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        si = seed_idx[start : start + b]
        wf = w.astype(np.float64)  # BLAS; sums of integers below 2**53 stay exact
        if metric == "accuracy":
            per_seed = wf @ d.T.astype(np.float64)  # (b, S) integer sums of the paired differences
            stats[start : start + b] = np.take_along_axis(per_seed, si, axis=1).sum(axis=1) / (S * n)
        else:
            per_seed = _macro_f1(wf, labels, pt, num_labels) - _macro_f1(wf, labels, pr, num_labels)  # (b, S)
            stats[start : start + b] = np.take_along_axis(per_seed, si, axis=1).mean(axis=1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": observed, "lo": float(lo), "hi": float(hi), "resamples": int(resamples), "level": float(level)}


def _state_name(model, task, seed, lam, scope, method, p, split) -> str:
    lam_s = "-" if lam is None else f"{lam:g}"
    return f"{model}/{task}/seed{seed}/lam={lam_s}/{scope}/{method}/p{p:g}/{split}"


def _methods(results: pl.DataFrame) -> list[str]:
    present = [m for m in results["method"].unique().to_list() if m not in ("full", "dense_small")]
    return [m for m in _METHOD_ORDER if m in present] + sorted(m for m in present if m not in _METHOD_ORDER)


def _aligned(preds_by_state: Mapping, key: tuple, state: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, labels, predictions) of one state, sorted by id."""
    df = preds_by_state.get(key)
    if df is None or df.height == 0:
        raise ValueError(f"no predictions for state {state}")
    df = df.sort("id")
    ids = df["id"].to_numpy()
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"predictions of state {state} repeat example ids")
    return ids, df["label"].to_numpy(), df["prediction"].to_numpy()


def comparison_frame(
    results: pl.DataFrame,
    predictions: pl.DataFrame,
    *,
    split: str = "test",
    target: str = "tropical",
    reference: str = "standard",
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    num_labels: Mapping[str, int] | None = None,
) -> pl.DataFrame:
    """One row per ``(model, task, scope, lam, p)`` at which both ``target`` and ``reference``
    were evaluated, on split ``split`` and the task's primary metric (``primary`` rows of
    ``results``, a frame with :data:`~adapter_pruning.results.SCHEMA`).

    Columns: ``model, task, scope, lam, p``; ``target``, ``reference`` (the method names);
    ``metric``; ``n_seeds`` (seeds with both target and reference; they must be the same seeds);
    ``n_examples``; ``full_mean`` (the full model's mean score over those seeds, null if it was not
    evaluated); for every pruned method in ``results``: ``{method}_mean``, ``{method}_std`` (over
    seeds, ddof = 1; null with one seed) and ``{method}_retained`` (mean retained share), null where
    that method is absent from the cell (its mean is over the seeds it has); ``diff``, ``ci_lo``,
    ``ci_hi`` (:func:`paired_bootstrap` of target − reference on ``predictions``, a frame with
    :data:`~adapter_pruning.results.PREDICTIONS_SCHEMA`, with ``resamples``, ``level`` and generator
    seed ``seed`` for every row); ``significant`` (the CI excludes 0). Scores in 0..1.

    Seeds and example ids are paired exactly: every seed's target and reference predictions must
    cover the same example ids with the same labels (the same ids for every seed), else
    :class:`ValueError` naming the state. The per-seed metric recomputed from the predictions must
    equal that state's ``score`` in ``results`` within 1e-9, else :class:`ValueError` naming the
    state (so the predictions are the ones that were scored). ``num_labels`` maps a task to its
    class count (default :data:`adapter_pruning.data.TASKS`)."""
    prim = results.filter(pl.col("primary"), pl.col("split") == split)
    methods = _methods(prim)
    pred_split = predictions.filter(pl.col("split") == split)
    keys = ["model", "task", "scope", "lam", "method", "p", "seed"]
    preds_by_state = pred_split.partition_by(keys, as_dict=True, maintain_order=True)

    full = prim.filter(pl.col("method") == "full")
    pruned = prim.filter(pl.col("method") != "full")
    cells = (
        pruned.filter(pl.col("method").is_in([target, reference]))
        .group_by(["model", "task", "scope", "lam", "p"])
        .agg(pl.col("method").n_unique().alias("_n"))
        .filter(pl.col("_n") == 2)
        .sort(["model", "task", "scope", "lam", "p"], nulls_last=False)
    )
    rows = []
    for model, task, scope, lam, p, _ in cells.iter_rows():
        if num_labels is not None and task in num_labels:
            n_labels = int(num_labels[task])
        else:
            from .data import TASKS

            if task not in TASKS:
                raise ValueError(f"task {task!r}: class count unknown (not in data.TASKS; pass num_labels)")
            n_labels = TASKS[task].num_labels
        cell = pruned.filter(
            *[pl.col(c).eq_missing(v) for c, v in (("model", model), ("task", task), ("scope", scope), ("lam", lam))],
            pl.col("p") == p,
        )
        metric = cell["metric"][0]
        _check_metric(metric)
        seeds = {}
        for m in (target, reference):
            seeds[m] = sorted(cell.filter(pl.col("method") == m)["seed"].to_list())
        if seeds[target] != seeds[reference]:
            raise ValueError(
                f"{_state_name(model, task, '*', lam, scope, '*', p, split)}: {target} has seeds {seeds[target]}, "
                f"{reference} has seeds {seeds[reference]}; the comparison pairs seeds"
            )
        seed_list = seeds[target]
        ids0 = labels0 = None
        preds = {target: [], reference: []}
        for s in seed_list:
            for m in (target, reference):
                state = _state_name(model, task, s, lam, scope, m, p, split)
                ids, labels, pred = _aligned(preds_by_state, (model, task, scope, lam, m, p, s), state)
                if ids0 is None:
                    ids0, labels0, first = ids, labels, state
                elif len(ids) != len(ids0) or not np.array_equal(ids, ids0):
                    missing = sorted(set(ids0) - set(ids))[:3]
                    extra = sorted(set(ids) - set(ids0))[:3]
                    raise ValueError(
                        f"predictions of state {state} cover other examples than {first} "
                        f"(missing e.g. {missing}, extra e.g. {extra}); the comparison pairs examples"
                    )
                elif not np.array_equal(labels, labels0):
                    raise ValueError(f"predictions of state {state}: labels differ from those of {first}")
                recomputed = metric_per_seed(labels, pred[None], num_labels=n_labels, metric=metric)[0]
                score = cell.filter(pl.col("method") == m, pl.col("seed") == s)["score"][0]
                if abs(recomputed - score) > 1e-9:
                    raise ValueError(
                        f"state {state}: {metric} recomputed from the predictions is {recomputed!r}, "
                        f"but results say {score!r}; the predictions are not those that were scored"
                    )
                preds[m].append(pred)
        boot = paired_bootstrap(
            labels0,
            np.stack(preds[target]),
            np.stack(preds[reference]),
            num_labels=n_labels,
            metric=metric,
            resamples=resamples,
            seed=seed,
            level=level,
        )
        fm = full.filter(pl.col("model") == model, pl.col("task") == task, pl.col("seed").is_in(seed_list))
        row = {
            "model": model,
            "task": task,
            "scope": scope,
            "lam": lam,
            "p": p,
            "target": target,
            "reference": reference,
            "metric": metric,
            "n_seeds": len(seed_list),
            "n_examples": len(ids0),
            "full_mean": fm["score"].mean() if fm.height else None,
        }
        for m in methods:
            d = cell.filter(pl.col("method") == m)
            row[f"{m}_mean"] = d["score"].mean() if d.height else None
            row[f"{m}_std"] = d["score"].std() if d.height > 1 else None
            row[f"{m}_retained"] = d["retained"].mean() if d.height else None
            row[f"{m}_slack"] = d["slack"].cast(pl.Float64).mean() if d.height else None
        row.update(
            diff=boot["diff"], ci_lo=boot["lo"], ci_hi=boot["hi"], significant=bool(boot["lo"] > 0 or boot["hi"] < 0)
        )
        rows.append(row)
    schema = {
        "model": pl.String,
        "task": pl.String,
        "scope": pl.String,
        "lam": pl.Float64,
        "p": pl.Float64,
        "target": pl.String,
        "reference": pl.String,
        "metric": pl.String,
        "n_seeds": pl.Int64,
        "n_examples": pl.Int64,
        "full_mean": pl.Float64,
        **{f"{m}_{k}": pl.Float64 for m in methods for k in ("mean", "std", "retained", "slack")},
        "diff": pl.Float64,
        "ci_lo": pl.Float64,
        "ci_hi": pl.Float64,
        "significant": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema)


def win_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """Per ``(model, task, scope, lam)`` of a :func:`comparison_frame`: ``n_p`` (pruning states),
    ``wins`` (``diff > 0``), ``ties`` (``diff == 0``), ``losses`` (``diff < 0``),
    ``significant_wins`` (``ci_lo > 0``), ``significant_losses`` (``ci_hi < 0``), and ``paper``:
    the paper's Table 1 count of Tropical-beats-Standard states for the task (e.g. ``"8/9"``,
    :data:`PAPER_WINS`; null for a task it does not report, and for scopes other than CU, which the
    paper's Table 1 uses)."""
    by = ["model", "task", "scope", "lam"]
    return (
        frame.group_by(by, maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("n_p"),
            (pl.col("diff") > 0).sum().cast(pl.Int64).alias("wins"),
            (pl.col("diff") == 0).sum().cast(pl.Int64).alias("ties"),
            (pl.col("diff") < 0).sum().cast(pl.Int64).alias("losses"),
            (pl.col("ci_lo") > 0).sum().cast(pl.Int64).alias("significant_wins"),
            (pl.col("ci_hi") < 0).sum().cast(pl.Int64).alias("significant_losses"),
        )
        .with_columns(
            pl.when(pl.col("scope") == "CU")
            .then(
                pl.col("task").replace_strict(
                    {t: f"{w}/{n}" for t, (w, n) in PAPER_WINS.items()}, default=None, return_dtype=pl.String
                )
            )
            .otherwise(None)
            .alias("paper")
        )
        .sort(by, nulls_last=False)
    )


def _lam(lam) -> str:
    return "–" if lam is None or (isinstance(lam, float) and math.isnan(lam)) else f"{lam:g}"


def _latex(s: str) -> str:
    """Characters ``aggregate._tex`` does not escape, for pdflatex (it escapes _ % ± * –)."""
    for a, b in (("λ", r"$\lambda$"), ("Δ", r"$\Delta$"), ("−", "-"), ("×", "x"), ("`", "")):
        s = s.replace(a, b)
    return s


def _delta(r) -> str:
    return f"{100 * r['diff']:+.2f} [{100 * r['ci_lo']:+.2f}, {100 * r['ci_hi']:+.2f}]" + (
        "*" if r["significant"] else ""
    )


def dense_small_frame(results: pl.DataFrame, *, split: str = "test") -> pl.DataFrame:
    """The dense small adapters (method ``dense_small``) of ``results`` on ``split`` and the primary
    metric: per ``(model, task, width)`` the mean retained share, the score's mean and std over seeds
    (ddof = 1; null with one seed), the number of seeds and the full model's mean over the same seeds."""
    prim = results.filter(pl.col("primary"), pl.col("split") == split)
    small = prim.filter(pl.col("method") == "dense_small")
    full = prim.filter(pl.col("method") == "full").select("model", "task", "seed", pl.col("score").alias("_fm"))
    return (
        small.join(full, on=["model", "task", "seed"], how="left")
        .group_by(["model", "task", "width"])
        .agg(
            pl.col("retained").mean(),
            pl.col("score").mean().alias("mean"),
            pl.col("score").std().alias("std"),
            pl.len().cast(pl.Int64).alias("n_seeds"),
            pl.col("_fm").mean().alias("full_mean"),
        )
        .sort(["model", "task", "width"])
    )


def write_comparison(
    frame: pl.DataFrame,
    wins: pl.DataFrame,
    out: Mapping[str, str | Path],
    *,
    resamples: int,
    level: float = 0.95,
    dense_small: pl.DataFrame | None = None,
) -> None:
    """Write a :func:`comparison_frame` and its :func:`win_counts` as Markdown (``out["md"]``: a
    caption stating the method, the per-cell table and the win counts beside the paper's), CSV
    (``out["csv"]``: ``frame`` as is) and LaTeX (``out["tex"]``: the same two tables), atomically.
    Scores are printed ×100 with 2 decimals (mean ± std over seeds), Δ in points with its CI; ``slack``
    is the target's mean slack. ``dense_small`` (:func:`dense_small_frame`), when it has rows, adds a
    table of the dense small adapters to the Markdown and LaTeX."""
    target = frame["target"][0] if frame.height else "tropical"
    reference = frame["reference"][0] if frame.height else "standard"
    methods = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean") and c != "full_mean"]
    pct = f"{100 * level:g}"
    caption = (
        f"Δ = mean over seeds of (score of {target} − score of {reference}), ×100 (points), on each task's primary "
        f"metric; [lo, hi] is a percentile {pct} % CI from a paired bootstrap over seeds and test examples "
        f"({resamples} resamples; each resample draws the seeds and the test examples with replacement, the same "
        f"examples for every seed and both methods). `*` = the CI excludes 0. Scores ×100, mean ± std over seeds "
        f"(sample std); retained = {target}'s mean retained share of adapter parameters; slack = {target}'s mean "
        f"number of parameters Standard keeps that its rule allowed it to prune instead (the room it had to differ "
        f"from Standard). standard, random, activation, taylor and sparsegpt are count-matched to Tropical; "
        f"standard_ps and tropical_pt prune floor(p n / 100) per scope group (compare them with each other)."
    )
    header = ["model", "task", "scope", "λ", "p", "retained", "slack", "FM"] + methods
    header += [f"Δ {target} − {reference} [CI]"]
    rows = []
    for r in frame.iter_rows(named=True):
        n = r["n_seeds"]
        rows.append(
            [
                r["model"],
                r["task"],
                r["scope"] or "–",
                _lam(r["lam"]),
                f"{r['p']:g}",
                "–" if r[f"{target}_retained"] is None else f"{100 * r[f'{target}_retained']:.1f}%",
                "–" if r.get(f"{target}_slack") is None else f"{r[f'{target}_slack']:.0f}",
                _cell(r["full_mean"], None, 1),
                *(_cell(r[f"{m}_mean"], r[f"{m}_std"], n) for m in methods),
                _delta(r),
            ]
        )
    wheader = ["model", "task", "scope", "λ", "states", "wins", "ties", "losses", "sig. wins", "sig. losses", "paper"]
    wrows = [
        [
            r["model"],
            r["task"],
            r["scope"] or "–",
            _lam(r["lam"]),
            str(r["n_p"]),
            str(r["wins"]),
            str(r["ties"]),
            str(r["losses"]),
            str(r["significant_wins"]),
            str(r["significant_losses"]),
            r["paper"] or "–",
        ]
        for r in wins.iter_rows(named=True)
    ]
    wcaption = (
        f"Pruning states where {target} beats {reference} (Δ > 0), ties, loses; significant = the {pct} % CI "
        f"excludes 0. paper = Bhardwaj et al. (2023), Table 1: states (of 9) where Tropical beats Standard."
    )
    md = [f"# {target.capitalize()} vs {reference.capitalize()}: paired bootstrap\n", caption, ""]
    md += [_md(header, rows) if rows else "No pruning state has both methods.", ""]
    md += ["## Win counts\n", wcaption, "", _md(wheader, wrows) if wrows else "No pruning states.", ""]
    dheader = ["model", "task", "width", "retained", "FM", "dense_small"]
    drows = [
        [
            r["model"],
            r["task"],
            str(r["width"]),
            f"{100 * r['retained']:.1f}%",
            _cell(r["full_mean"], None, 1),
            _cell(r["mean"], r["std"], r["n_seeds"]),
        ]
        for r in (dense_small.iter_rows(named=True) if dense_small is not None else [])
    ]
    dcaption = (
        "Dense small adapters: trained from scratch at bottleneck width r' (same data, steps, seeds and settings), "
        "at their exact retained share of the full adapter's parameters; test score ×100, mean ± std over seeds. "
        "Compare with the pruned states of similar retained share above."
    )
    if drows:
        md += ["## Dense small adapters\n", dcaption, "", _md(dheader, drows), ""]
    with atomic_path(out["md"]) as tmp:
        tmp.write_text("\n".join(md))
    with atomic_path(out["csv"]) as tmp:
        frame.write_csv(tmp)
    tex = []
    if rows:
        tex.append(_tex([_latex(h) for h in header], [[_latex(c) for c in r] for r in rows], _latex(caption)))
        tex.append(_tex([_latex(h) for h in wheader], [[_latex(c) for c in r] for r in wrows], _latex(wcaption)))
    if drows:
        tex.append(_tex([_latex(h) for h in dheader], [[_latex(c) for c in r] for r in drows], _latex(dcaption)))
    with atomic_path(out["tex"]) as tmp:
        tmp.write_text("\n".join(tex) if tex else "% no comparison results\n")
