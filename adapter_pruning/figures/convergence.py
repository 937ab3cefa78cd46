"""Training convergence: the full model's validation score by training step, per task."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .common import plt_module, save

__all__ = ["convergence_figure"]


def convergence_figure(curves_path, out: Mapping[str, str | Path]) -> None:
    """One panel per task: each seed's validation score (task metric, %) against the training step
    (thin lines, its best step marked), and the mean over seeds (bold). ``curves_path``: the CSV of
    :func:`adapter_pruning.convergence.read_curves` (``convergence_curves.csv``)."""
    import polars as pl

    curves = pl.read_csv(curves_path)
    tasks = sorted(curves["task"].unique().to_list())
    plt = plt_module()
    n = max(len(tasks), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        part = curves.filter(pl.col("task") == task)
        for seed, s in part.sort("step").group_by("seed", maintain_order=True):
            ax.plot(s["step"], 100 * s["score"], lw=0.7, alpha=0.5, color="C0")
            best = s.filter(pl.col("step") == pl.col("best_step"))
            ax.plot(best["step"], 100 * best["score"], "o", ms=3, color="C0", alpha=0.7)
        mean = part.group_by("step").agg(pl.col("score").mean()).sort("step")
        ax.plot(mean["step"], 100 * mean["score"], lw=2, color="C3", label="mean over seeds")
        ax.set_title(task)
        ax.set_xlabel("training step")
        ax.set_ylabel("validation score (%)")
        ax.legend(fontsize=6)
    if not tasks:
        axes[0, 0].text(0.5, 0.5, "no training curves (imported adapters only)", ha="center", va="center")
        axes[0, 0].axis("off")
    fig.tight_layout()
    save(fig, out)
