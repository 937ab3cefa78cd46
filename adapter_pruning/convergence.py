"""Did training converge? The full model's validation curve per task (mean over seeds) and its test
score beside the paper's and the majority class. Torch-free.

Training validates every ``training.eval_every`` steps and keeps the best step (``metrics.json``:
``val_curve``, ``best_step``). A seed whose best step is its **last** validation was still improving
when training stopped, so more steps could have helped: the table counts such seeds per task and
calls the task *converged* only when none of its seeds peaked at the last validation (the paper's
recipe validates every 100 of 1000 steps: a best step of 1000 means "not yet converged").

Majority class: always predicting the training split's most frequent label, scored on the test split
in the task's metric (accuracy, or macro-F1 over all labels with absent classes at F1 = 0, as
:func:`adapter_pruning.evaluation.compute_metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from .io import atomic_path, read_json

__all__ = [
    "PAPER_FULL_MODEL",
    "read_curves",
    "majority_score",
    "convergence_table",
    "write_convergence",
    "report_convergence",
]

#: The paper's full-model test scores (RoBERTa-base, 1000 steps; METHOD.md), in points of each task's metric.
PAPER_FULL_MODEL: dict[str, float] = {
    "meld": 60.71,
    "snli": 86.45,
    "rotten_tomatoes": 87.99,
    "imdb": 87.61,
    "trec": 97.2,
}


def read_curves(adapter_dirs: Mapping[tuple[str, int], str | Path]) -> pl.DataFrame:
    """The validation curves of trained adapters, ``{(task, seed): adapter folder}`` -> one row per
    validation: ``task, seed, step, score`` (the task's metric, 0..1), ``best_step``, ``last_step``.
    An imported adapter (no ``val_curve`` in its ``metrics.json``) contributes no rows."""
    rows = []
    for (task, seed), folder in adapter_dirs.items():
        metrics = read_json(Path(folder) / "metrics.json")
        curve = metrics.get("val_curve")
        if not curve:
            continue
        metric = metrics["metric"]
        last = max(int(v["step"]) for v in curve)
        for v in curve:
            rows.append(
                {
                    "task": task,
                    "seed": int(seed),
                    "step": int(v["step"]),
                    "score": float(v[metric]),
                    "best_step": int(metrics["best_step"]),
                    "last_step": last,
                }
            )
    schema = {"task": pl.String, "seed": pl.Int64, "step": pl.Int64, "score": pl.Float64}
    return pl.DataFrame(rows, schema={**schema, "best_step": pl.Int64, "last_step": pl.Int64})


def majority_score(train_labels: Sequence[int], test_labels: Sequence[int], num_labels: int, metric: str) -> float:
    """The test score (0..1) of always predicting the most frequent training label (ties: the smallest)."""
    train = np.asarray(train_labels)
    test = np.asarray(test_labels)
    majority = int(np.bincount(train, minlength=num_labels).argmax())
    q = float(np.mean(test == majority))
    if metric == "accuracy":
        return q
    if metric == "macro_f1":  # F1 of the predicted class 2q/(q+1) (precision q, recall 1), 0 for the others
        return (2 * q / (q + 1) if q > 0 else 0.0) / num_labels
    raise ValueError(f"unknown metric {metric!r}")


def convergence_table(curves: pl.DataFrame, results: pl.DataFrame, majority: Mapping[str, float]) -> pl.DataFrame:
    """Per task: seeds, steps, the mean validation score at the first and last validation and at the
    mean best step, how many seeds peaked at their last validation, ``converged``, the full model's
    test score (mean and std over seeds, points) beside the paper's and the majority class's.

    ``results``: ``results.parquet`` (its ``method == "full"`` rows on the test split, primary metric);
    ``majority``: task -> majority-class test score (0..1)."""
    fm = (
        results.filter(pl.col("method") == "full", pl.col("split") == "test", pl.col("primary"))
        .group_by("task")
        .agg(
            (100 * pl.col("score").mean()).alias("fm_test"),
            (100 * pl.col("score").std()).alias("fm_test_std"),
            pl.col("seed").n_unique().alias("fm_seeds"),
        )
    )
    per_seed = curves.group_by("task", "seed").agg(
        pl.col("best_step").first(),
        pl.col("last_step").first(),
        pl.col("score").sort_by("step").first().alias("first_score"),
        pl.col("score").sort_by("step").last().alias("last_score"),
        pl.col("score").max().alias("best_score"),
    )
    table = (
        per_seed.group_by("task")
        .agg(
            pl.len().alias("seeds"),
            pl.col("last_step").max().alias("steps"),
            (100 * pl.col("first_score").mean()).alias("val_first"),
            (100 * pl.col("best_score").mean()).alias("val_best"),
            (100 * pl.col("last_score").mean()).alias("val_last"),
            pl.col("best_step").mean().alias("mean_best_step"),
            (pl.col("best_step") == pl.col("last_step")).sum().alias("seeds_best_at_last"),
        )
        .with_columns(converged=pl.col("seeds_best_at_last") == 0)
        .join(fm, on="task", how="full", coalesce=True)
        .with_columns(
            paper_fm=pl.col("task").replace_strict(PAPER_FULL_MODEL, default=None, return_dtype=pl.Float64),
            majority=pl.col("task").replace_strict(
                {t: 100 * v for t, v in majority.items()}, default=None, return_dtype=pl.Float64
            ),
        )
        .sort("task")
    )
    return table


def _fmt(v, digits=1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def write_convergence(table: pl.DataFrame, curves: pl.DataFrame, out: Mapping[str, str | Path]) -> None:
    """``out['md']``: the table and, per task, the mean validation score by step; ``out['csv']``: the
    table; ``out['curves']``: the curves (:func:`read_curves`, for the figure). Atomic."""
    lines = [
        "# Training convergence (full model)",
        "",
        "Validation score of the task's metric (points, mean over seeds) at the first validation, at "
        "its best and at the last one; the mean best step; seeds whose best step is the last validation "
        "(still improving when training stopped: *not yet converged*); the full model's test score "
        "(mean ± std over seeds) beside the paper's RoBERTa-base and the majority class.",
        "",
        "| task | seeds | steps | val first | val best | val last | mean best step | best at last step | "
        "converged | FM test | paper FM | majority |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.iter_rows(named=True):
        fm = "–" if r["fm_test"] is None else f"{r['fm_test']:.1f} ± {_fmt(r['fm_test_std'])}"
        at_last = "–" if r["seeds_best_at_last"] is None else f"{r['seeds_best_at_last']} of {r['seeds']}"
        converged = "–" if r["converged"] is None else ("yes" if r["converged"] else "no")
        lines.append(
            f"| {r['task']} | {r['seeds'] or '–'} | {r['steps'] or '–'} | {_fmt(r['val_first'])} | "
            f"{_fmt(r['val_best'])} | {_fmt(r['val_last'])} | {_fmt(r['mean_best_step'], 0)} | {at_last} | "
            f"{converged} | {fm} | {_fmt(r['paper_fm'], 2)} | {_fmt(r['majority'])} |"
        )
    by_step = curves.group_by("task", "step").agg((100 * pl.col("score").mean()).alias("mean")).sort("task", "step")
    for task, part in by_step.group_by("task", maintain_order=True):
        steps = " · ".join(f"{s}: {m:.1f}" for s, m in part.select("step", "mean").iter_rows())
        lines += ["", f"{task[0]}, validation by step (mean over seeds): {steps}"]
    with atomic_path(out["md"]) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    with atomic_path(out["csv"]) as tmp:
        table.write_csv(tmp)
    with atomic_path(out["curves"]) as tmp:
        curves.sort("task", "seed", "step").write_csv(tmp)


def report_convergence(
    adapter_dirs: Mapping[tuple[str, int], str | Path],
    results_path,
    data_paths: Mapping[str, tuple[str | Path, str | Path]],
    out: Mapping[str, str | Path],
) -> pl.DataFrame:
    """The rule ``report_convergence``: curves of ``adapter_dirs`` (``{(task, seed): folder}``), the full
    model's test scores from ``results_path``, the majority class from ``data_paths`` (task ->
    prepared train and test files); writes :func:`write_convergence`'s files and returns the table."""
    from .data import TASKS, read_prepared

    majority = {}
    for task, (train, test) in data_paths.items():
        spec = TASKS[task]
        majority[task] = majority_score(
            read_prepared(train, task)["label"].to_numpy(),
            read_prepared(test, task)["label"].to_numpy(),
            spec.num_labels,
            spec.metric,
        )
    curves = read_curves(adapter_dirs)
    table = convergence_table(curves, pl.read_parquet(results_path), majority)
    write_convergence(table, curves, out)
    return table
