"""Method comparisons with uncertainty: paired bootstraps over seeds and test examples, per pruning
state and pooled over the p grid, with multiplicity-adjusted p-values and equivalence verdicts.

The paper (Bhardwaj et al. 2023, Table 1) reports single runs; here every pruning state
``(model, task, scope, lam, p)`` is compared over all seeds of the run, using the per-example
predictions that each evaluated state saves beside its score file
(:data:`adapter_pruning.results.PREDICTIONS_SCHEMA`), for every configured pair
``(target, reference)`` of methods (``report.comparisons``; method names are plain strings).

**Statistic.** ``Δ = mean over seeds s of [metric(target, s) − metric(reference, s)]`` on the
task's primary metric (accuracy or macro-F1, as :func:`adapter_pruning.evaluation.compute_metrics`
defines them, macro-F1 with 0 for a class without tp + fp + fn), in 0..1 units.

**Resamples.** One draw per task (:func:`compare`): each of ``B`` resamples draws ``S`` seeds with
replacement (the variation between trained adapters) and ``n`` test examples with replacement (the
variation of the test sample), from ``numpy.random.default_rng(seed)`` started afresh for every
task; the same drawn examples serve every drawn seed, every pruning state of the task and both
methods of every pair (the test examples are the same for every seed: seeds and examples are
crossed factors, so one example draw for all seeds keeps the example-level variance that all seeds
share). Since the draw depends only on the generator seed, ``S`` and ``n``, a state's numbers do
not depend on which other states, pairs or tasks are present, and equal :func:`paired_bootstrap`'s.

**Per state.** Δ, the percentile CI of its resamples, a two-sided bootstrap p-value from the same
resamples (:func:`bootstrap_p_values`), and Holm and Benjamini–Hochberg adjusted p-values
(``statsmodels.stats.multitest.multipletests``) within each family ``model × task × pair`` (all of
its scopes, λ and p that are not floor states).

**Pooled.** Per ``model × task × scope × λ × pair`` and overall per pair: the mean of Δ over the
cell's p grid (its non-floor states), with the CI, p-value and TOST equivalence decision of the
same statistic recomputed on every resample (all p states of a resample share its draw: a
hierarchical bootstrap over seeds, then examples), the bootstrap standard error and the minimum
detectable effect (:func:`minimum_detectable_effect`), and the std over seeds of the paired
per-seed Δ beside the unpaired std. :func:`verdict` turns each into *better*, *worse*,
*equivalent* (within ``±margin``) or *inconclusive*.

**Floors.** A method sits at the task's floor in a state when every seed predicts a single class,
or its mean score over seeds is at most ``floor + floor_fraction · (FM − floor)``, where ``floor``
is the primary metric of always predicting the test set's majority class and ``FM`` the full
model's mean score over the same seeds (:func:`floor_score`). A state where both methods of a pair
sit at the floor is a *floor state* of that pair: it is reported, but left out of the multiplicity
families, of the pooled statistics and of the verdicts, and counted there.
"""

from __future__ import annotations

import gc
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from .aggregate import _cell, _md, _tex
from .io import atomic_path, read_parquet
from .results import PREDICTIONS_SCHEMA

__all__ = [
    "PAPER_WINS",
    "VERDICTS",
    "Comparison",
    "read_predictions",
    "metric_per_seed",
    "floor_score",
    "paired_bootstrap",
    "pooled_bootstrap",
    "bootstrap_p_values",
    "adjust_p_values",
    "minimum_detectable_effect",
    "verdict",
    "compare",
    "dense_small_frame",
    "win_counts",
    "write_comparison",
    "write_verdicts",
]

#: The paper's Table 1: in how many of its 9 retained fractions Tropical beats Standard, per task.
PAPER_WINS: dict[str, tuple[int, int]] = {
    "meld": (8, 9),
    "snli": (6, 9),
    "rotten_tomatoes": (8, 9),
    "imdb": (8, 9),
    "trec": (6, 9),
}
#: The verdicts of :func:`verdict`, in the order the tables explain them.
VERDICTS = ("better", "worse", "equivalent", "inconclusive")

_METRICS = ("accuracy", "macro_f1")
#: Column order of the methods in the tables: these first (when present), then the others sorted.
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
#: Upper bound on resamples × examples drawn at once (the example-weight matrix of one chunk).
_CHUNK_CELLS = 4_000_000
#: Power at which :func:`minimum_detectable_effect` is quoted in the tables.
POWER = 0.8


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


def metric_per_seed(labels, preds, *, num_labels: int, metric: str) -> np.ndarray:
    """``metric`` (``accuracy`` or ``macro_f1``) of each row of ``preds`` ``(S, n)`` against
    ``labels`` ``(n,)``; returns ``(S,)``, equal to ``compute_metrics(preds[s], labels, num_labels)[metric]``.
    Macro-F1 per class ``c``: ``2 tp / (#predicted c + #labelled c)`` from integer counts, 0 when
    that denominator is 0, averaged over all ``num_labels`` classes."""
    _check_metric(metric)
    labels = np.asarray(labels)
    preds = np.atleast_2d(np.asarray(preds))
    if metric == "accuracy":
        return (preds == labels[None]).sum(axis=1) / labels.size
    f1 = np.zeros((preds.shape[0], num_labels))
    for c in range(num_labels):
        pred_c = preds == c
        tp = (pred_c & (labels == c)[None]).sum(axis=1)
        denom = pred_c.sum(axis=1) + (labels == c).sum()
        f1[:, c] = np.divide(2 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
    return f1.mean(axis=1)


def floor_score(labels, *, num_labels: int, metric: str) -> float:
    """The primary metric of the constant predictor of the majority class of ``labels`` ``(n,)``:
    its share for accuracy, ``2q / (1 + q) / num_labels`` for macro-F1 (q = its share). The best
    score a predictor of one class reaches (ties between classes give the same score)."""
    labels = np.asarray(labels)
    majority = int(np.bincount(labels, minlength=num_labels).argmax())
    return float(metric_per_seed(labels, np.full((1, labels.size), majority), num_labels=num_labels, metric=metric)[0])


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


def _check_resampling(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


# --------------------------------------------------------------------------- the resampling engine


class _Resampled(NamedTuple):
    """Per-seed scores of ``K`` states of one task, observed and on every resample.

    ``observed``: ``(K, S)`` metric values; ``boot``: ``(B, K, S)`` per-seed scores on each
    resample's examples: for accuracy the *count* of correct drawn examples (an integer held in
    float64, so sums and differences stay exact), for macro-F1 the metric itself; ``seed_idx``:
    ``(B, S)`` the seeds each resample draws."""

    observed: np.ndarray
    boot: np.ndarray
    seed_idx: np.ndarray
    metric: str
    n: int


def _resample(labels: np.ndarray, preds: np.ndarray, *, num_labels: int, metric: str, resamples: int, seed: int):
    """The draw of one task: ``preds`` ``(K, S, n)`` class indices of ``K`` states (same seeds and
    examples), ``labels`` ``(n,)``. Draws ``seed_idx`` ``(B, S)`` from
    ``numpy.random.default_rng(seed)``, then the example indices ``(B, n)`` in chunks of at most
    :data:`_CHUNK_CELLS` cells (the order :func:`paired_bootstrap` has always drawn in) and turns
    them into multiplicities ``w``; every state's per-seed score is a product of ``w`` with 0/1
    indicator matrices in float32, exact because its values are integers below 2**24."""
    K, S, n = preds.shape
    if n >= 2**24:
        raise ValueError(f"{n} test examples: the float32 counts are exact only below 2**24")
    rng = np.random.default_rng(seed)
    seed_idx = rng.integers(0, S, size=(resamples, S))
    flat = preds.reshape(K * S, n).T  # (n, K·S)
    observed = metric_per_seed(labels, preds.reshape(K * S, n), num_labels=num_labels, metric=metric).reshape(K, S)
    boot = np.empty((resamples, K * S))
    if metric == "accuracy":
        right = (flat == labels[:, None]).astype(np.float32)  # (n, K·S)
    else:
        lab = (labels[:, None] == np.arange(num_labels)).astype(np.float32)  # (n, C)
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        ex = rng.integers(0, n, size=(b, n))
        # w[r, i] = how often example i is drawn in resample r
        w = np.bincount((ex + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        w = w.astype(np.float32)
        if metric == "accuracy":
            boot[start : start + b] = w @ right
            continue
        # macro-F1 per class c: F1 = 2 tp / (#predicted c + #labelled c), 0 when that is 0
        n_lab = (w @ lab).astype(np.float64)  # (b, C)
        f1_sum = np.zeros((b, K * S))
        for c in range(num_labels):
            pred_c = (flat == c).astype(np.float32)  # (n, K·S)
            n_pred = (w @ pred_c).astype(np.float64)
            tp = ((w * lab[:, c]) @ pred_c).astype(np.float64)
            denom = n_pred + n_lab[:, c : c + 1]
            f1_sum += np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        boot[start : start + b] = f1_sum / num_labels
    return _Resampled(observed, boot.reshape(resamples, K, S), seed_idx, metric, n)


def _pair_diffs(r: _Resampled, kt: np.ndarray, kr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``Q`` pairs of state indices (target ``kt``, reference ``kr``): the observed Δ ``(Q,)``,
    the per-seed observed differences ``(Q, S)`` and the resampled Δ ``(B, Q)`` (mean over the drawn
    seeds of the per-seed difference on the drawn examples)."""
    S = r.observed.shape[1]
    per_seed = r.observed[kt] - r.observed[kr]  # (Q, S)
    d = r.boot[:, kt, :] - r.boot[:, kr, :]  # (B, Q, S)
    drawn = np.take_along_axis(d, r.seed_idx[:, None, :], axis=2)
    if r.metric == "accuracy":
        # integer counts: Δ = (Σ_s #right_t − #right_r) / (S·n), one rounding
        counts = np.rint(r.observed * r.n)
        observed = (counts[kt] - counts[kr]).sum(axis=1) / (S * r.n)
        stats = drawn.sum(axis=2) / (S * r.n)
    else:
        observed = per_seed.mean(axis=1)
        stats = drawn.mean(axis=2)
    return observed, per_seed, stats


def bootstrap_p_values(stats: np.ndarray, null: float = 0.0) -> np.ndarray:
    """Two-sided bootstrap p-values of ``H0: Δ = null`` from resampled statistics ``stats``
    ``(B, ...)`` (one column per test): ``min(1, 2 · min(1 + #{Δ* ≤ null}, 1 + #{Δ* ≥ null}) / (B + 1))``.

    The p-value that inverts the percentile interval: it is below ``α`` when ``null`` lies outside
    the ``1 − α`` percentile interval of the same resamples (up to the ``+1`` that keeps a p-value
    of 0 from a finite number of resamples, and the quantile interpolation). Resamples all equal to
    ``null`` give 1."""
    stats = np.asarray(stats, dtype=np.float64)
    B = stats.shape[0]
    below = (stats <= null).sum(axis=0)
    above = (stats >= null).sum(axis=0)
    return np.minimum(1.0, 2.0 * (1.0 + np.minimum(below, above)) / (B + 1.0))


def adjust_p_values(p_values) -> tuple[np.ndarray, np.ndarray]:
    """Holm (family-wise error) and Benjamini–Hochberg (false discovery rate) adjusted p-values of
    one family, from ``statsmodels.stats.multitest.multipletests`` (methods ``holm``, ``fdr_bh``).
    An empty family gives two empty arrays."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p.copy(), p.copy()
    # multipletests' Holm branch calls gc.collect(), whose cost grows with every object the process
    # holds (0.5 s per call in the report); frozen objects are not scanned, and nothing here is garbage
    gc.freeze()
    try:
        return multipletests(p, method="holm")[1], multipletests(p, method="fdr_bh")[1]
    finally:
        gc.unfreeze()


def minimum_detectable_effect(se, *, level: float = 0.95, power: float = POWER):
    """The smallest true Δ a two-sided test at ``1 − level`` detects with probability ``power``,
    for an estimate with standard error ``se`` (normal approximation):
    ``(z_{(1 + level)/2} + z_{power}) · se`` (2.80 · se at the defaults)."""
    from scipy.stats import norm

    return (norm.ppf((1 + level) / 2) + norm.ppf(power)) * np.asarray(se, dtype=np.float64)


def verdict(ci_lo: float, ci_hi: float, ci90_lo: float, ci90_hi: float, margin: float) -> str:
    """One pooled cell's verdict, from its ``level`` CI (``ci_lo, ci_hi``, 95 % by default), its
    ``2·level − 1`` CI (``ci90_lo, ci90_hi``, 90 %) and the equivalence margin (same units):

    * ``equivalent``: the 90 % CI lies inside ``(−margin, +margin)`` (TOST: both one-sided tests
      at 5 % reject a difference of ``margin`` or more). It takes precedence, so a difference that
      is significant but smaller than the margin reads as equivalent (the p-value says the rest);
    * ``better``: otherwise, the 95 % CI lies above 0;
    * ``worse``: otherwise, the 95 % CI lies below 0;
    * ``inconclusive``: none of these (the CI holds 0 and reaches beyond the margin)."""
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if -margin < ci90_lo and ci90_hi < margin:
        return "equivalent"
    if ci_lo > 0:
        return "better"
    if ci_hi < 0:
        return "worse"
    return "inconclusive"


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
    ``(1 + level)/2`` quantiles (numpy's default linear interpolation) of the resampled ``Δ``;
    ``p_value`` is :func:`bootstrap_p_values` of the same resamples. Accuracy differences are summed
    in integers, so ``Δ`` is exact up to one rounding (``k/n`` when the target is right on ``k``
    more examples in every seed).

    Returns ``{"diff": Δ, "lo": lower bound, "hi": upper bound, "p_value": p, "resamples":
    resamples, "level": level}`` (floats in 0..1 metric units, except ``resamples``).
    Deterministic for a given ``seed``; the same numbers as the state's row of :func:`compare`."""
    _check_metric(metric)
    _check_resampling(resamples, level)
    labels, pt, pr = _validate(labels, pred_target, pred_reference, num_labels)
    r = _resample(labels, np.stack([pt, pr]), num_labels=num_labels, metric=metric, resamples=resamples, seed=seed)
    observed, _, stats = _pair_diffs(r, np.array([0]), np.array([1]))
    lo, hi = np.quantile(stats[:, 0], [(1 - level) / 2, (1 + level) / 2])
    return {
        "diff": float(observed[0]),
        "lo": float(lo),
        "hi": float(hi),
        "p_value": float(bootstrap_p_values(stats[:, 0])),
        "resamples": int(resamples),
        "level": float(level),
    }


def pooled_bootstrap(
    labels,
    pred_target,
    pred_reference,
    *,
    num_labels: int,
    metric: str,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    margin: float = 0.01,
) -> dict:
    """The pooled comparison of one cell: the mean over ``P`` pruning states of the per-state Δ of
    :func:`paired_bootstrap`, with a hierarchical paired bootstrap.

    ``labels`` ``(n,)``; ``pred_target``, ``pred_reference`` ``(P, S, n)``: state ``j``, seed
    ``s``, example ``i`` (the same seeds and examples in every state). Each resample draws ``S``
    seeds and ``n`` examples with replacement (``numpy.random.default_rng(seed)``, drawn as by
    :func:`paired_bootstrap`), and every state and both methods use that one draw; the statistic is
    the mean over the states of the resampled per-state Δ. Returns the row of :func:`compare`'s
    ``verdicts`` for such a cell: ``diff``, ``ci_lo``, ``ci_hi`` (``level``), ``ci90_lo``,
    ``ci90_hi`` (``2·level − 1``), ``p_value``, ``p_equivalence``, ``se``, ``mde``,
    ``seed_std_paired``, ``seed_std_unpaired`` and ``verdict`` against ``±margin`` (0..1 units)."""
    _check_metric(metric)
    _check_resampling(resamples, level)
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    pt, pr = np.asarray(pred_target), np.asarray(pred_reference)
    if pt.ndim != 3 or pt.shape != pr.shape:
        raise ValueError(f"pred_target and pred_reference must both be (P, S, n), got {pt.shape} and {pr.shape}")
    P, S, n = pt.shape
    labels, _, _ = _validate(labels, pt.reshape(P * S, n), pr.reshape(P * S, n), num_labels)
    r = _resample(
        labels, np.concatenate([pt, pr]), num_labels=num_labels, metric=metric, resamples=resamples, seed=seed
    )
    kt, kr = np.arange(P), P + np.arange(P)
    observed, per_seed, stats = _pair_diffs(r, kt, kr)
    return _pooled(stats, observed, per_seed, r.observed[kt], r.observed[kr], level=level, margin=margin)


# --------------------------------------------------------------------------- from results to frames


class Comparison(NamedTuple):
    """What :func:`compare` returns: ``states`` (one row per pruning state and pair) and
    ``verdicts`` (one row per pooled cell and pair, and one overall row per pair)."""

    states: pl.DataFrame
    verdicts: pl.DataFrame


def _state_name(model, task, seed, lam, scope, method, p, split) -> str:
    lam_s = "-" if lam is None else f"{lam:g}"
    return f"{model}/{task}/seed{seed}/lam={lam_s}/{scope}/{method}/p{p:g}/{split}"


def _methods(results: pl.DataFrame) -> list[str]:
    present = [m for m in results["method"].unique().to_list() if m not in ("full", "dense_small")]
    return [m for m in _METHOD_ORDER if m in present] + sorted(m for m in present if m not in _METHOD_ORDER)


def _num_labels(task: str, num_labels: Mapping[str, int] | None) -> int:
    if num_labels is not None and task in num_labels:
        return int(num_labels[task])
    from .data import TASKS

    if task not in TASKS:
        raise ValueError(f"task {task!r}: class count unknown (not in data.TASKS; pass num_labels)")
    return TASKS[task].num_labels


def _std(x: np.ndarray) -> float | None:
    """Sample std (ddof = 1) over the last axis; None with fewer than 2 values."""
    return float(np.std(x, ddof=1)) if x.shape[-1] > 1 else None


def _check_pairs(pairs) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"comparison pair {pair!r}: expected (target, reference), two different methods")
        out.append((str(pair[0]), str(pair[1])))
    if len(set(out)) != len(out):
        raise ValueError(f"comparison pairs {out}: a pair is listed twice")
    return out


class _Task(NamedTuple):
    """One task's aligned data: ``keys`` ``[(scope, lam, p, method)]`` of the ``K`` states that some
    pair compares, their ``preds`` ``(K, S, n)``, the ``labels`` ``(n,)``, the ``seeds``, the
    ``metric`` and class count, and the task's ``floor`` score and full-model mean ``fm``."""

    keys: list
    preds: np.ndarray
    labels: np.ndarray
    seeds: list
    metric: str
    num_labels: int
    floor: float
    fm: float | None


class _TaskPredictions:
    """The predictions of one ``(model, task)`` on one split, as integer arrays: the example ids of
    the first state added (sorted), its ``labels``, and per ``(scope, lam, method, p, seed)`` the
    predictions aligned with them. Every state added must cover the same ids with the same labels.

    States usually list their examples in one order (the evaluation's): a state whose ids come in
    the first state's order reuses its sorting permutation, so only the first one is sorted."""

    def __init__(self) -> None:
        self.ids = self.labels = self.first = self.raw_ids = self.order = None
        self.preds: dict[tuple, np.ndarray] = {}

    def add(self, key: tuple, state: str, ids: pl.Series, labels: np.ndarray, preds: np.ndarray) -> None:
        """One state: ``ids`` (a polars Series, compared without making Python strings), ``labels``,
        ``preds`` in the same (any) order."""
        if key in self.preds:
            raise ValueError(f"predictions of state {state} are given twice")
        if self.raw_ids is not None and ids.len() == self.raw_ids.len() and ids.equals(self.raw_ids):
            order = self.order  # the first state's order: the same permutation sorts it
        else:
            order = ids.arg_sort().to_numpy()
            ids = ids.gather(order)
            if self.ids is None:
                if ids.n_unique() != ids.len():
                    raise ValueError(f"predictions of state {state} repeat example ids")
                self.ids, self.labels, self.first = ids, labels[order].astype(np.int64), state
                self.raw_ids, self.order = ids.gather(np.argsort(order)), order
            elif ids.len() != self.ids.len() and ids.n_unique() != ids.len():
                raise ValueError(f"predictions of state {state} repeat example ids (is the state given twice?)")
            elif ids.len() != self.ids.len() or not ids.equals(self.ids):
                missing = sorted(set(self.ids.to_list()) - set(ids.to_list()))[:3]
                extra = sorted(set(ids.to_list()) - set(self.ids.to_list()))[:3]
                raise ValueError(
                    f"predictions of state {state} cover other examples than {self.first} "
                    f"(missing e.g. {missing}, extra e.g. {extra}); the comparison pairs examples"
                )
        if not np.array_equal(labels[order], self.labels):
            raise ValueError(f"predictions of state {state}: labels differ from those of {self.first}")
        preds = preds[order]
        self.preds[key] = preds.astype(np.int16 if preds.size and preds.max() < 2**15 else np.int64)


_KEYS = ["model", "task", "scope", "lam", "method", "p", "seed"]
_ONE_STATE = pl.all_horizontal([pl.col(k).eq_missing(pl.col(k).first()).all() for k in _KEYS])


def _add_frame(tasks: dict, df: pl.DataFrame, split: str) -> None:
    """Add the ``split`` rows of a frame with :data:`PREDICTIONS_SCHEMA` to ``tasks``
    (``{(model, task): _TaskPredictions}``), one state per distinct key."""
    df = df.filter(pl.col("split") == split)
    if not df.height:
        return
    if df.select(_ONE_STATE).item():  # one state: a pipeline's prediction file
        parts = {tuple(df.select(_KEYS).row(0)): df}
    else:
        parts = df.partition_by(_KEYS, as_dict=True, maintain_order=True)
    for key, part in parts.items():
        model, task, scope, lam, method, p, seed = key
        state = _state_name(model, task, seed, lam, scope, method, p, split)
        tasks.setdefault((model, task), _TaskPredictions()).add(
            (scope, lam, method, p, seed),
            state,
            part["id"],
            part["label"].to_numpy(),
            part["prediction"].to_numpy(),
        )


def _collect_predictions(predictions, split: str) -> dict:
    """``{(model, task): _TaskPredictions}`` from a frame with :data:`PREDICTIONS_SCHEMA`, or from a
    sequence of prediction files (read one at a time, checked as by :func:`read_predictions`; only
    integer arrays and one id column per task are kept, so memory grows with states × examples, not
    with the files' text)."""
    tasks: dict = {}
    if isinstance(predictions, pl.DataFrame):
        _add_frame(tasks, predictions, split)
        return tasks
    paths = list(predictions)
    if not paths:
        raise ValueError("no prediction files to read")
    schema = pl.Schema(PREDICTIONS_SCHEMA)
    for path in paths:
        try:  # the fast path: one thread per small file (polars' thread pool costs more than it saves)
            df = pl.read_parquet(path, columns=list(PREDICTIONS_SCHEMA), parallel="none")
            ok = df.schema == schema
        except Exception:  # noqa: BLE001 - read_predictions names the file and the problem
            ok = False
        if not ok:
            df = read_predictions([path])
        _add_frame(tasks, df, split)
    return tasks


def _load_task(model, task, pairs, pruned, full, preds: _TaskPredictions | None, split, n_labels):
    """Align the predictions of every state of one task that a pair compares; check them (seeds,
    example ids, labels, scores) and return the task's data and ``{pair: [(scope, lam, p)]}`` (None
    when no pair has a state in this task)."""
    present = {}
    for scope, lam, p, method in pruned.select("scope", "lam", "p", "method").unique().iter_rows():
        present.setdefault((scope, lam, p), set()).add(method)
    cells = sorted(present, key=lambda c: (c[0] or "", -math.inf if c[1] is None else c[1], c[2]))
    by_pair = {pair: [c for c in cells if set(pair) <= present[c]] for pair in pairs}
    needed = list(dict.fromkeys((*c, m) for pair, cs in by_pair.items() for c in cs for m in pair))
    if not needed:
        return None
    metrics = set(pruned["metric"].unique().to_list())
    if len(metrics) != 1:
        raise ValueError(f"task {task!r}: primary rows with several metrics {sorted(metrics)}")
    metric = metrics.pop()
    _check_metric(metric)
    scores = {
        (scope, lam, p, method, seed): score
        for scope, lam, p, method, seed, score in pruned.select(
            "scope", "lam", "p", "method", "seed", "score"
        ).iter_rows()
    }
    seeds = {}
    for scope, lam, p, method, seed in scores:
        seeds.setdefault((scope, lam, p, method), []).append(seed)
    seed_list = sorted(seeds[needed[0]])
    n = 0 if preds is None or preds.ids is None else preds.ids.len()
    arr = np.empty((len(needed), len(seed_list), n), dtype=np.int16 if n_labels < 2**15 else np.int64)
    for k, (scope, lam, p, method) in enumerate(needed):
        if sorted(seeds[(scope, lam, p, method)]) != seed_list:
            raise ValueError(
                f"{_state_name(model, task, '*', lam, scope, method, p, split)} has seeds "
                f"{sorted(seeds[(scope, lam, p, method)])}, other states of {task!r} have {seed_list}; the "
                f"comparison pairs seeds"
            )
        for j, s in enumerate(seed_list):
            got = None if preds is None else preds.preds.get((scope, lam, method, p, s))
            if got is None or got.size == 0:
                raise ValueError(
                    f"no predictions for state {_state_name(model, task, s, lam, scope, method, p, split)}"
                )
            arr[k, j] = got
    preds, labels0 = arr, preds.labels
    for name, arr in (("labels", labels0), ("predictions", preds)):
        if arr.min() < 0 or arr.max() >= n_labels:
            raise ValueError(f"task {task!r}: {name} outside 0..{n_labels - 1}")
    recomputed = metric_per_seed(labels0, preds.reshape(-1, preds.shape[2]), num_labels=n_labels, metric=metric)
    recomputed = recomputed.reshape(preds.shape[:2])
    for k, (scope, lam, p, method) in enumerate(needed):
        for j, s in enumerate(seed_list):
            score = scores[(scope, lam, p, method, s)]
            if abs(recomputed[k, j] - score) > 1e-9:
                raise ValueError(
                    f"state {_state_name(model, task, s, lam, scope, method, p, split)}: {metric} recomputed from "
                    f"the predictions is {recomputed[k, j]!r}, but results say {score!r}; the predictions are not "
                    f"those that were scored"
                )
    fm = full.filter(pl.col("seed").is_in(seed_list))["score"]
    data = _Task(
        needed,
        preds,
        labels0,
        seed_list,
        metric,
        n_labels,
        floor_score(labels0, num_labels=n_labels, metric=metric),
        float(fm.mean()) if fm.len() else None,
    )
    return data, by_pair


def _at_floor(data: _Task, scores: np.ndarray, floor_fraction: float) -> np.ndarray:
    """``(K,)``: state ``k`` sits at the task's floor (every seed predicts one class, or the mean of its
    per-seed ``scores`` ``(K, S)`` is at most ``floor + floor_fraction · max(FM − floor, 0)``)."""
    band = data.floor + floor_fraction * max((data.fm if data.fm is not None else data.floor) - data.floor, 0.0)
    one_class = (data.preds.min(axis=2) == data.preds.max(axis=2)).all(axis=1)
    return one_class | (scores.mean(axis=1) <= band + 1e-12)


def _pooled(stats, observed, per_seed, t_scores, r_scores, *, level, margin) -> dict:
    """The pooled statistics of one cell: ``stats`` ``(B, Q)`` resampled Δ of its ``Q`` included
    states, ``observed`` ``(Q,)``, ``per_seed`` ``(Q, S)`` observed per-seed Δ, ``t_scores``,
    ``r_scores`` ``(Q, S)`` the two methods' per-seed scores (None: seeds not comparable)."""
    pooled = stats.mean(axis=1)
    a = 1 - level
    lo, hi, lo90, hi90 = np.quantile(pooled, [a / 2, 1 - a / 2, a, 1 - a])
    se = float(np.std(pooled, ddof=1)) if pooled.size > 1 else 0.0
    p_eq = max((1 + (pooled <= -margin).sum()) / (pooled.size + 1), (1 + (pooled >= margin).sum()) / (pooled.size + 1))
    out = {
        "diff": float(observed.mean()),
        "ci_lo": float(lo),
        "ci_hi": float(hi),
        "ci90_lo": float(lo90),
        "ci90_hi": float(hi90),
        "p_value": float(bootstrap_p_values(pooled)),
        "p_equivalence": float(p_eq),
        "se": se,
        "mde": float(minimum_detectable_effect(se, level=level)),
        "seed_std_paired": None,
        "seed_std_unpaired": None,
    }
    if per_seed is not None:
        out["seed_std_paired"] = _std(per_seed.mean(axis=0))
        sd_t, sd_r = _std(t_scores.mean(axis=0)), _std(r_scores.mean(axis=0))
        out["seed_std_unpaired"] = None if sd_t is None else math.sqrt(sd_t**2 + sd_r**2)
    out["verdict"] = verdict(lo, hi, lo90, hi90, margin)
    return out


def _overall(parts, *, level: float, margin: float) -> dict:
    """The overall cell of one pair and model from its tasks' ``parts`` (task data, resampled Δ
    ``(B, Q)``, observed Δ, per-seed Δ and scores of the included states, number of states)."""
    n_states = sum(part[1].shape[1] for part in parts)
    seed_lists = {tuple(part[0].seeds) for part in parts}
    out = {
        "metric": "+".join(sorted({part[0].metric for part in parts})),
        "n_seeds": len(next(iter(seed_lists))) if len(seed_lists) == 1 else None,
        "n_examples": None,
        "n_states": n_states,
        "n_floor": sum(part[6] for part in parts) - n_states,
    }
    if n_states:
        same_seeds = len(seed_lists) == 1
        cat = [np.concatenate([part[i] for part in parts], axis=0) if same_seeds else None for i in (3, 4, 5)]
        stats = np.concatenate([part[1] for part in parts], axis=1)
        observed = np.concatenate([part[2] for part in parts])
        out.update(_pooled(stats, observed, *cat, level=level, margin=margin))
    return out


def compare(
    results: pl.DataFrame,
    predictions: pl.DataFrame | Sequence[str | Path],
    *,
    pairs: Sequence[tuple[str, str]] = (("tropical", "standard"),),
    split: str = "test",
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    margin: float = 0.01,
    floor_fraction: float = 0.15,
    num_labels: Mapping[str, int] | None = None,
) -> Comparison:
    """Every pair ``(target, reference)`` of ``pairs`` at every pruning state where both were
    evaluated, per state and pooled, on split ``split`` and the task's primary metric (``primary``
    rows of ``results``, a frame with :data:`~adapter_pruning.results.SCHEMA`; ``predictions``: a
    frame with :data:`~adapter_pruning.results.PREDICTIONS_SCHEMA`, or the prediction files, read one
    at a time and kept as integer arrays). ``margin`` (equivalence) and
    every score are in 0..1 metric units; ``level`` is the two-sided CI level (the equivalence test
    uses the ``2·level − 1`` interval).

    ``states``, one row per ``(model, task, scope, lam, p)`` and pair, pairs in the order given:
    ``model, task, scope, lam, p, target, reference, metric``; ``n_seeds``, ``n_examples``;
    ``full_mean`` (the full model's mean over the seeds, null if not evaluated); ``floor_score``
    (:func:`floor_score`); for every pruned method in ``results``: ``{method}_mean``,
    ``{method}_std`` (over seeds, ddof = 1; null with one seed) and ``{method}_retained``, null
    where that method is absent from the state; ``diff``, ``ci_lo``, ``ci_hi`` (the ``level``
    percentile CI), ``significant`` (the CI excludes 0); ``diff_std`` (std over seeds of the paired
    per-seed Δ); ``p_value`` (:func:`bootstrap_p_values`), ``p_holm``, ``p_bh`` (adjusted within
    the state's family ``model × task × pair``; null for floor states, which are not in it);
    ``floor`` (both methods sit at the floor) and ``floor_methods`` (those of the two that do,
    comma-separated, "" for none).

    ``verdicts``, one row per ``(model, task, scope, lam)`` and pair, then one overall row per pair
    (``task`` and ``scope`` "all", ``lam`` null, ``overall`` true): ``n_states`` (states pooled),
    ``n_floor`` (floor states left out); the mean Δ over the pooled states ``diff`` with its
    ``ci_lo, ci_hi`` (``level``) and ``ci90_lo, ci90_hi`` (``2·level − 1``); ``p_value``;
    ``p_equivalence`` (the larger of the two one-sided bootstrap p-values against ``±margin``);
    ``se`` (std of the resampled pooled Δ) and ``mde`` (:func:`minimum_detectable_effect`);
    ``seed_std_paired`` (std over seeds of the per-seed pooled Δ) and ``seed_std_unpaired``
    (``sqrt(sd_t² + sd_r²)``, the sds over seeds of each method's per-seed pooled score: what the
    std of Δ would be without the pairing; both null for an overall row whose tasks have other
    seeds); ``margin``; ``verdict`` (:func:`verdict`; null when every state is a floor state).

    The overall row pools every included state of every task, each with the same weight; its
    resample ``b`` is the mean of every task's resample ``b`` (the tasks' draws are independent
    of their predictions and share the seed indices, the seeds being the same training seeds).

    Checks, each a :class:`ValueError` naming the state: every state of a task that a pair
    compares has the same seeds, and every seed and state of a task (compared or not) the same
    example ids with the same labels; the metric recomputed from each state's predictions equals its ``score`` within
    1e-9 (so the predictions are the ones that were scored). ``num_labels`` maps a task to its
    class count (default :data:`adapter_pruning.data.TASKS`)."""
    _check_resampling(resamples, level)
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if not 0 <= floor_fraction <= 1:
        raise ValueError(f"floor_fraction must be in [0, 1], got {floor_fraction}")
    pairs = _check_pairs(pairs)
    prim = results.filter(pl.col("primary"), pl.col("split") == split)
    methods = _methods(prim)
    pruned_all = prim.filter(~pl.col("method").is_in(["full", "dense_small"]))
    by_task = _collect_predictions(predictions, split)
    stat_cols = (
        pruned_all.group_by(["model", "task", "scope", "lam", "p", "method"])
        .agg(
            pl.col("score").mean().alias("mean"),
            pl.col("score").std().alias("std"),
            pl.col("retained").mean().alias("retained"),
            pl.len().alias("n"),
            pl.col("slack").cast(pl.Float64).mean().alias("slack"),
        )
        .iter_rows()
    )
    method_stats = {row[:6]: row[6:] for row in stat_cols}

    state_rows: dict[tuple, list[dict]] = {pair: [] for pair in pairs}
    cells: dict[tuple, list] = {pair: [] for pair in pairs}  # per pair: (model, task, scope, lam, payload)
    overall: dict[tuple, dict] = {pair: {} for pair in pairs}  # per pair and model: the tasks' parts
    for (model, task), pruned in pruned_all.group_by(["model", "task"], maintain_order=True):
        n_labels = _num_labels(task, num_labels)
        full = prim.filter(pl.col("method") == "full", pl.col("model") == model, pl.col("task") == task)
        loaded = _load_task(model, task, pairs, pruned, full, by_task.get((model, task)), split, n_labels)
        if loaded is None:
            continue
        data, by_pair = loaded
        index = {key: k for k, key in enumerate(data.keys)}
        r = _resample(data.labels, data.preds, num_labels=n_labels, metric=data.metric, resamples=resamples, seed=seed)
        floor = _at_floor(data, r.observed, floor_fraction)
        S, n = len(data.seeds), data.labels.size
        for pair in pairs:
            target, reference = pair
            states = by_pair[pair]
            if not states:
                continue
            kt = np.array([index[(*c, target)] for c in states])
            kr = np.array([index[(*c, reference)] for c in states])
            observed, per_seed, stats = _pair_diffs(r, kt, kr)
            lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2], axis=0)
            p_values = bootstrap_p_values(stats)
            excluded = floor[kt] & floor[kr]
            p_holm = np.full(len(states), np.nan)
            p_bh = np.full(len(states), np.nan)
            p_holm[~excluded], p_bh[~excluded] = adjust_p_values(p_values[~excluded])
            for q, (scope, lam, p) in enumerate(states):
                row = {
                    "model": model,
                    "task": task,
                    "scope": scope,
                    "lam": lam,
                    "p": p,
                    "target": target,
                    "reference": reference,
                    "metric": data.metric,
                    "n_seeds": S,
                    "n_examples": n,
                    "full_mean": data.fm,
                    "floor_score": data.floor,
                }
                for m in methods:
                    mean, std, retained, count, slack = method_stats.get((model, task, scope, lam, p, m), (None,) * 5)
                    row[f"{m}_mean"] = mean
                    row[f"{m}_std"] = std if count and count > 1 else None
                    row[f"{m}_retained"] = retained
                    row[f"{m}_slack"] = slack
                row.update(
                    diff=float(observed[q]),
                    ci_lo=float(lo[q]),
                    ci_hi=float(hi[q]),
                    significant=bool(lo[q] > 0 or hi[q] < 0),
                    diff_std=_std(per_seed[q]),
                    p_value=float(p_values[q]),
                    p_holm=None if excluded[q] else float(p_holm[q]),
                    p_bh=None if excluded[q] else float(p_bh[q]),
                    floor=bool(excluded[q]),
                    floor_methods=",".join(m for m, k in ((target, kt[q]), (reference, kr[q])) if floor[k]),
                )
                state_rows[pair].append(row)
            scores_t, scores_r = r.observed[kt], r.observed[kr]
            for scope, lam in dict.fromkeys((c[0], c[1]) for c in states):
                q = np.array([i for i, c in enumerate(states) if (c[0], c[1]) == (scope, lam)])
                inc = q[~excluded[q]]
                payload = {
                    "metric": data.metric,
                    "n_seeds": S,
                    "n_examples": n,
                    "n_states": int(inc.size),
                    "n_floor": int(q.size - inc.size),
                }
                if inc.size:
                    payload.update(
                        _pooled(
                            stats[:, inc],
                            observed[inc],
                            per_seed[inc],
                            scores_t[inc],
                            scores_r[inc],
                            level=level,
                            margin=margin,
                        )
                    )
                cells[pair].append((model, task, scope, lam, payload))
            inc = np.flatnonzero(~excluded)
            # The overall row needs independent draws per task: the seeds and test examples of two tasks
            # are unrelated, but every task starts the same generator, so their resample b shares seed
            # (and, for equal n, example) indices. A seeded permutation of this task's resamples breaks
            # that link and leaves the task's own distribution as it is.
            unlinked = np.random.default_rng([seed, zlib.crc32(task.encode())]).permutation(stats.shape[0])
            overall[pair].setdefault(model, []).append(
                (data, stats[unlinked][:, inc], observed[inc], per_seed[inc], scores_t[inc], scores_r[inc], len(states))
            )

    verdict_rows = []
    for pair in pairs:
        target, reference = pair
        for model, task, scope, lam, payload in cells[pair]:
            verdict_rows.append(
                {
                    "model": model,
                    "task": task,
                    "scope": scope,
                    "lam": lam,
                    "overall": False,
                    "target": target,
                    "reference": reference,
                    **payload,
                    "margin": margin,
                }
            )
        for model, parts in overall[pair].items():
            verdict_rows.append(
                {
                    "model": model,
                    "task": "all",
                    "scope": "all",
                    "lam": None,
                    "overall": True,
                    "target": target,
                    "reference": reference,
                    **_overall(parts, level=level, margin=margin),
                    "margin": margin,
                }
            )

    state_schema = {
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
        "floor_score": pl.Float64,
        **{f"{m}_{k}": pl.Float64 for m in methods for k in ("mean", "std", "retained", "slack")},
        "diff": pl.Float64,
        "ci_lo": pl.Float64,
        "ci_hi": pl.Float64,
        "significant": pl.Boolean,
        "diff_std": pl.Float64,
        "p_value": pl.Float64,
        "p_holm": pl.Float64,
        "p_bh": pl.Float64,
        "floor": pl.Boolean,
        "floor_methods": pl.String,
    }
    verdict_schema = {
        "model": pl.String,
        "task": pl.String,
        "scope": pl.String,
        "lam": pl.Float64,
        "overall": pl.Boolean,
        "target": pl.String,
        "reference": pl.String,
        "metric": pl.String,
        "n_seeds": pl.Int64,
        "n_examples": pl.Int64,
        "n_states": pl.Int64,
        "n_floor": pl.Int64,
        "diff": pl.Float64,
        "ci_lo": pl.Float64,
        "ci_hi": pl.Float64,
        "ci90_lo": pl.Float64,
        "ci90_hi": pl.Float64,
        "p_value": pl.Float64,
        "p_equivalence": pl.Float64,
        "se": pl.Float64,
        "mde": pl.Float64,
        "seed_std_paired": pl.Float64,
        "seed_std_unpaired": pl.Float64,
        "margin": pl.Float64,
        "verdict": pl.String,
    }
    rows = [row for pair in pairs for row in state_rows[pair]]
    verdict_rows = [{k: row.get(k) for k in verdict_schema} for row in verdict_rows]
    return Comparison(pl.DataFrame(rows, schema=state_schema), pl.DataFrame(verdict_rows, schema=verdict_schema))


# --------------------------------------------------------------------------- tables


def win_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """Per ``(model, task, scope, lam, target, reference)`` of :func:`compare`'s ``states``:
    ``n_p`` (pruning states), ``wins`` (``diff > 0``), ``ties`` (``diff == 0``), ``losses``
    (``diff < 0``), ``significant_wins`` (``ci_lo > 0``), ``significant_losses`` (``ci_hi < 0``),
    ``holm_wins`` and ``holm_losses`` (``p_holm < 0.05`` with ``diff > 0``, ``diff < 0``),
    ``floor`` (floor states), and ``paper``: the paper's Table 1 count of Tropical-beats-Standard
    states for the task (e.g. ``"8/9"``, :data:`PAPER_WINS`), only for the pair tropical − standard
    under scope CU, which the paper's Table 1 uses (null otherwise)."""
    by = ["model", "task", "scope", "lam", "target", "reference"]
    paper = pl.col("task").replace_strict(
        {t: f"{w}/{n}" for t, (w, n) in PAPER_WINS.items()}, default=None, return_dtype=pl.String
    )
    holm = pl.col("p_holm").fill_null(1.0) < 0.05
    return (
        frame.group_by(by, maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("n_p"),
            (pl.col("diff") > 0).sum().cast(pl.Int64).alias("wins"),
            (pl.col("diff") == 0).sum().cast(pl.Int64).alias("ties"),
            (pl.col("diff") < 0).sum().cast(pl.Int64).alias("losses"),
            (pl.col("ci_lo") > 0).sum().cast(pl.Int64).alias("significant_wins"),
            (pl.col("ci_hi") < 0).sum().cast(pl.Int64).alias("significant_losses"),
            (holm & (pl.col("diff") > 0)).sum().cast(pl.Int64).alias("holm_wins"),
            (holm & (pl.col("diff") < 0)).sum().cast(pl.Int64).alias("holm_losses"),
            pl.col("floor").sum().cast(pl.Int64).alias("floor"),
        )
        .with_columns(
            pl.when((pl.col("scope") == "CU") & (pl.col("target") == "tropical") & (pl.col("reference") == "standard"))
            .then(paper)
            .otherwise(None)
            .alias("paper")
        )
    )


def _lam(lam) -> str:
    return "–" if lam is None or (isinstance(lam, float) and math.isnan(lam)) else f"{lam:g}"


def _latex(s: str) -> str:
    """Characters ``aggregate._tex`` does not escape, for pdflatex (it escapes _ % ± * –)."""
    for a, b in (("λ", r"$\lambda$"), ("Δ", r"$\Delta$"), ("−", "-"), ("×", "x"), ("`", ""), ("≤", r"$\le$")):
        s = s.replace(a, b)
    return s


def _pts(x, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def _p(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def _ci(r, lo="ci_lo", hi="ci_hi") -> str:
    return f"[{_pts(r[lo])}, {_pts(r[hi])}]"


def _delta(r) -> str:
    return f"{_pts(r['diff'])} {_ci(r)}" + ("*" if r["significant"] else "")


def _pairs_of(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(frame.select("target", "reference").iter_rows())) if frame.height else []


def _method_columns(frame: pl.DataFrame) -> list[str]:
    return [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean") and c != "full_mean"]


def _score(r, m) -> str:
    s = _cell(r[f"{m}_mean"], r[f"{m}_std"], r["n_seeds"])
    return s if r[f"{m}_retained"] is None else f"{s} ({100 * r[f'{m}_retained']:.1f}%)"


def _write_tables(out: Mapping[str, str | Path], md: list[str], tables: list[tuple[list, list, str]]) -> None:
    with atomic_path(out["md"]) as tmp:
        tmp.write_text("\n".join(md))
    if "tex" in out:
        tex = [
            _tex([_latex(h) for h in hd], [[_latex(c) for c in r] for r in rows], _latex(cap))
            for hd, rows, cap in tables
        ]
        with atomic_path(out["tex"]) as tmp:
            tmp.write_text("\n".join(tex) if tex else "% no comparison results\n")


def write_comparison(
    frame: pl.DataFrame,
    wins: pl.DataFrame,
    out: Mapping[str, str | Path],
    *,
    resamples: int,
    level: float = 0.95,
    floor_fraction: float = 0.15,
    dense_small: pl.DataFrame | None = None,
) -> None:
    """Write :func:`compare`'s ``states`` and their :func:`win_counts` as Markdown (``out["md"]``:
    a caption stating the method; the scores of every method per state; per pair the Δ table with
    its p-values, the target's slack, and the win counts beside the paper's), CSV (``out["csv"]``:
    ``frame`` as is) and LaTeX (``out["tex"]``: the same tables), atomically. Scores are printed ×100
    with 2 decimals (mean ± std over seeds, retained share in brackets), Δ in points with its CI.
    ``dense_small`` (:func:`dense_small_frame`), when it has rows, adds a table of the dense small
    adapters."""
    pct = f"{100 * level:g}"
    methods = _method_columns(frame)
    caption = (
        f"Δ = mean over seeds of (score of target − score of reference), ×100 (points), on each task's primary "
        f"metric (test split); [lo, hi] is a percentile {pct} % CI from a paired bootstrap over seeds and test "
        f"examples ({resamples} resamples per task; each draws the seeds and the test examples with replacement, the "
        f"same examples for every seed, state and method). `*` = the CI excludes 0. p = two-sided bootstrap p-value "
        f"from the same resamples (at least 2/(B + 1) = {2 / (resamples + 1):.2g}); Holm and BH = p adjusted "
        f"(Holm; Benjamini–Hochberg) within the family of one task "
        f"and pair: all its scopes, λ and p except floor states. sd = std over seeds of the paired per-seed Δ. floor = "
        f"both methods sit at the task's floor (each predicts one class in every seed, or scores at most the "
        f"majority-class score + {floor_fraction:g} × (FM − that score)); floor states are left out of the families "
        f"and of comparison_verdicts."
    )
    md = ["# Method comparisons per pruning state: paired bootstrap\n", caption, ""]
    tables = []
    scores = frame.unique(["model", "task", "scope", "lam", "p"], keep="first", maintain_order=True)
    sheader = ["model", "task", "scope", "λ", "p", "FM", "floor"] + methods
    srows = [
        [
            r["model"],
            r["task"],
            r["scope"] or "–",
            _lam(r["lam"]),
            f"{r['p']:g}",
            _cell(r["full_mean"], None, 1),
            _cell(r["floor_score"], None, 1),
            *(_score(r, m) for m in methods),
        ]
        for r in scores.iter_rows(named=True)
    ]
    scaption = (
        "Scores ×100 per pruning state, mean ± std over seeds (sample std), with the method's mean retained share of "
        "adapter parameters in brackets; FM = the full model; floor = the majority-class score."
    )
    md += ["## Scores\n", scaption, "", _md(sheader, srows) if srows else "No pruning state has a compared pair.", ""]
    if srows:
        tables.append((sheader, srows, scaption))
    wheader = ["model", "task", "scope", "λ", "states", "wins", "ties", "losses", "sig. wins", "sig. losses"]
    wheader += ["Holm wins", "Holm losses", "floor", "paper"]
    for target, reference in _pairs_of(frame):
        d = frame.filter(pl.col("target") == target, pl.col("reference") == reference)
        header = ["model", "task", "scope", "λ", "p", "retained", "slack", target, reference]
        header += [f"Δ {target} − {reference} [CI]"]
        header += ["sd", "p", "Holm", "BH", "floor"]
        rows = [
            [
                r["model"],
                r["task"],
                r["scope"] or "–",
                _lam(r["lam"]),
                f"{r['p']:g}",
                "–" if r[f"{target}_retained"] is None else f"{100 * r[f'{target}_retained']:.1f}%",
                "–" if r.get(f"{target}_slack") is None else f"{r[f'{target}_slack']:.0f}",
                _cell(r[f"{target}_mean"], r[f"{target}_std"], r["n_seeds"]),
                _cell(r[f"{reference}_mean"], r[f"{reference}_std"], r["n_seeds"]),
                _delta(r),
                _pts(r["diff_std"], signed=False),
                _p(r["p_value"]),
                _p(r["p_holm"]),
                _p(r["p_bh"]),
                "yes" if r["floor"] else (r["floor_methods"] or ""),
            ]
            for r in d.iter_rows(named=True)
        ]
        pcaption = (
            f"{target} − {reference} per pruning state: Δ in points with its {pct} % CI; retained = {target}'s mean "
            f"retained share; slack = {target}'s mean number of parameters that Standard with the same count keeps and "
            f"its rule allowed it to prune instead (the room it had to differ from Standard; docs/METHOD.md); "
            f"floor: yes = both at the floor (a floor state), else the method at the floor if any. "
            f"Multiplicity family: one task × this pair ({target} − {reference}), all scopes, λ and p but floor states."
        )
        w = wins.filter(pl.col("target") == target, pl.col("reference") == reference)
        wrows = [
            [
                r["model"],
                r["task"],
                r["scope"] or "–",
                _lam(r["lam"]),
                *(
                    str(r[k])
                    for k in (
                        "n_p",
                        "wins",
                        "ties",
                        "losses",
                        "significant_wins",
                        "significant_losses",
                        "holm_wins",
                        "holm_losses",
                        "floor",
                    )
                ),
                r["paper"] or "–",
            ]
            for r in w.iter_rows(named=True)
        ]
        wcaption = (
            f"Pruning states where {target} beats {reference} (Δ > 0), ties, loses; sig. = the {pct} % CI excludes 0; "
            f"Holm = Holm-adjusted p < 0.05 (per task × pair). paper = Bhardwaj et al. (2023), Table 1: states (of 9) "
            f"where Tropical beats Standard (tropical − standard, scope CU only)."
        )
        md += [f"## {target} − {reference}\n", pcaption, "", _md(header, rows), ""]
        md += [f"### Win counts, {target} − {reference}\n", wcaption, "", _md(wheader, wrows), ""]
        tables += [(header, rows, pcaption), (wheader, wrows, wcaption)]
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
    if drows:
        dcaption = (
            "Dense small adapters: trained from scratch at bottleneck width r' (same data, steps, seeds and "
            "settings), at their exact retained share of the full adapter's parameters; test score ×100, mean ± std "
            "over seeds. Compare with the pruned states of similar retained share above."
        )
        md += ["## Dense small adapters\n", dcaption, "", _md(dheader, drows), ""]
        tables.append((dheader, drows, dcaption))
    with atomic_path(out["csv"]) as tmp:
        frame.write_csv(tmp)
    _write_tables(out, md, tables)


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


def write_verdicts(
    verdicts: pl.DataFrame,
    out: Mapping[str, str | Path],
    *,
    resamples: int,
    level: float = 0.95,
    floor_fraction: float = 0.15,
    power: float = POWER,
) -> None:
    """Write :func:`compare`'s ``verdicts`` as Markdown (``out["md"]``: a caption with the method,
    the margin, the verdict rules and the floor rule; per pair a table of its pooled cells and the
    overall row, then the per-task sensitivity) and CSV (``out["csv"]``: ``verdicts`` as is),
    atomically (``out["tex"]``, when given: the same tables in LaTeX)."""
    pct = f"{100 * level:g}"
    pct_eq = f"{100 * (2 * level - 1):g}"
    margin = f"{100 * verdicts['margin'][0]:g}" if verdicts.height else "–"
    n_floor = int(verdicts.filter(~pl.col("overall"))["n_floor"].sum()) if verdicts.height else 0
    n_all = n_floor + (int(verdicts.filter(~pl.col("overall"))["n_states"].sum()) if verdicts.height else 0)
    caption = " ".join(
        [
            "Pooled comparisons, per task × scope × λ and overall, per pair target − reference: Δ = the mean over the",
            "cell's pruning states (its p grid; overall: every state of every task) of the per-state Δ (mean over",
            "seeds of target − reference, test split, primary metric), ×100 (points). CIs from a hierarchical paired",
            f"bootstrap ({resamples} resamples per task: seeds, then test examples, one example draw shared by every",
            f"seed, state and method, so the p states of a resample share it): {pct} % percentile CI, p = two-sided",
            f"bootstrap p-value (at least 2/(B + 1) = {2 / (resamples + 1):.2g}), {pct_eq} % CI for equivalence.",
            f"Verdict: **equivalent within ±{margin}** when the",
            f"{pct_eq} % CI lies inside ±{margin} points (TOST at {100 * (1 - level):g} %; report.equivalence_margin),",
            f"else **better** / **worse** when the {pct} % CI lies above / below 0, else **inconclusive**. An",
            f"equivalent cell may still have p < {1 - level:g}: a difference smaller than the margin. sd paired = std",
            "over seeds of the per-seed pooled Δ (the noise of the paired comparison); sd unpaired = sqrt(sd² target +",
            "sd² reference), the std of Δ without the pairing. MDE = the smallest Δ detectable with",
            f"{100 * power:g} % power at {100 * (1 - level):g} % (two-sided), (z + z_power) × the bootstrap SE:",
            f"equivalence within ±{margin} is informative where the MDE is well below {margin}. states = pruning",
            "states pooled; floor = floor states excluded (both methods at the task's floor: one predicted class in",
            f"every seed, or a mean score at most the majority-class score + {floor_fraction:g} × (FM − that score));",
            f"{n_floor} of {n_all} states were excluded.",
        ]
    )
    md = ["# Verdicts: pooled paired comparisons\n", caption, ""]
    header = ["task", "scope", "λ", "states", "floor", "Δ [CI]", f"{pct_eq} % CI", "p", "sd paired", "sd unpaired"]
    header += ["MDE", "verdict"]
    tables = []
    if not verdicts.height:
        md.append("No pruning state has a compared pair.")
    for target, reference in _pairs_of(verdicts):
        d = verdicts.filter(pl.col("target") == target, pl.col("reference") == reference)
        rows = []
        for r in d.iter_rows(named=True):
            name = (
                "–"
                if r["verdict"] is None
                else (f"equivalent within ±{100 * r['margin']:g}" if r["verdict"] == "equivalent" else r["verdict"])
            )
            rows.append(
                [
                    (f"all ({r['model']})" if d["model"].n_unique() > 1 else "all") if r["overall"] else r["task"],
                    "all" if r["overall"] else (r["scope"] or "–"),
                    "all" if r["overall"] else _lam(r["lam"]),
                    str(r["n_states"]),
                    str(r["n_floor"]),
                    "–" if r["diff"] is None else f"{_pts(r['diff'])} {_ci(r)}",
                    "–" if r["diff"] is None else _ci(r, "ci90_lo", "ci90_hi"),
                    _p(r["p_value"]),
                    _pts(r["seed_std_paired"], signed=False),
                    _pts(r["seed_std_unpaired"], signed=False),
                    _pts(r["mde"], signed=False),
                    name,
                ]
            )
        sens = (
            d.filter(~pl.col("overall"), pl.col("mde").is_not_null())
            .group_by("task", maintain_order=True)
            .agg(pl.col("mde").median().alias("med"), pl.col("mde").min().alias("lo"), pl.col("mde").max().alias("hi"))
        )
        lines = [
            f"- {r['task']}: {_pts(r['med'], signed=False)} points (median over its cells; "
            f"{_pts(r['lo'], signed=False)}–{_pts(r['hi'], signed=False)})"
            for r in sens.iter_rows(named=True)
        ]
        pcaption = f"{target} − {reference}, pooled over p per task × scope × λ, and over everything (all)."
        md += [f"## {target} − {reference}\n", pcaption, "", _md(header, rows), ""]
        md += [f"Sensitivity of {target} − {reference} (MDE, smallest Δ detectable, per task):", "", *lines, ""]
        tables.append((header, rows, pcaption))
    with atomic_path(out["csv"]) as tmp:
        verdicts.write_csv(tmp)
    _write_tables(out, md, tables)
