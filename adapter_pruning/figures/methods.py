"""Comparison study: one task's score vs retained share for every method, with bands over seeds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .common import LAM_STYLES, METHOD_COLORS, lam_label, plt_module, save

__all__ = ["method_comparison_figure"]


def method_comparison_figure(results_path, task: str, out: Mapping[str, str | Path], *, split: str = "test") -> None:
    """Score (primary metric, split ``split``) vs retained share of adapter parameters for one task,
    one panel per scope: one line per (pruned method, λ) at the mean over seeds of each pruning
    percentage p (x = mean retained share), with a band of ± the std over seeds (sample std; none
    with one seed); λ is told apart by line style when there are several; the full model's mean is
    a dashed horizontal line; dense small adapters (method ``dense_small``: trained at a smaller
    bottleneck width, no scope) are black diamonds with ± std error bars on every panel."""
    import polars as pl

    from ..aggregate import load_results

    df = load_results(results_path).filter(pl.col("primary"), pl.col("split") == split, pl.col("task") == task)
    pruned = df.filter(~pl.col("method").is_in(["full", "dense_small"]))
    small = (
        df.filter(pl.col("method") == "dense_small")
        .group_by("width")
        .agg(pl.col("retained").mean(), pl.col("score").mean().alias("mean"), pl.col("score").std())
        .sort("retained")
    )
    scopes = sorted(s for s in pruned["scope"].unique().to_list() if s is not None)
    lams = sorted(pruned["lam"].unique().to_list(), key=lambda x: (x is not None, x or 0.0))
    methods = [m for m in METHOD_COLORS if m in pruned["method"].unique().to_list()]
    methods += sorted(set(pruned["method"].unique().to_list()) - set(methods))
    plt = plt_module()
    n = max(len(scopes), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.5), squeeze=False)
    fm = df.filter(pl.col("method") == "full")
    metric = df["metric"][0] if df.height else ""
    for ax, scope in zip(axes.flat, scopes):
        for i, method in enumerate(methods):
            for j, lam in enumerate(lams):
                m = (
                    pruned.filter(pl.col("scope") == scope, pl.col("method") == method, pl.col("lam").eq_missing(lam))
                    .group_by("p")
                    .agg(pl.col("retained").mean(), pl.col("score").mean().alias("mean"), pl.col("score").std())
                    .sort("retained")
                )
                if not m.height:
                    continue
                x = 100 * m["retained"].to_numpy()
                y = 100 * m["mean"].to_numpy()
                sd = 100 * m["score"].fill_null(0.0).to_numpy()
                color = METHOD_COLORS.get(method, f"C{(4 + i) % 10}")
                label = method if len(lams) == 1 else f"{method}, {lam_label(lam)}"
                ax.plot(x, y, ls=LAM_STYLES[j % len(LAM_STYLES)], marker="o", ms=3, color=color, label=label)
                ax.fill_between(x, y - sd, y + sd, color=color, alpha=0.15, lw=0)
        if small.height:
            ax.errorbar(
                100 * small["retained"].to_numpy(),
                100 * small["mean"].to_numpy(),
                yerr=100 * small["score"].fill_null(0.0).to_numpy(),
                fmt="D",
                ms=4,
                color="k",
                capsize=2,
                label="dense small",
            )
        if fm.height:
            ax.axhline(100 * fm["score"].mean(), color="gray", ls="--", lw=1, label="full model")
        ax.set_title(f"{task} ({metric}, {scope}, {split})")
        ax.set_xlabel("retained adapter parameters (%)")
        ax.set_ylabel(f"{split} score (%)")
        ax.legend(fontsize=6)
    if not scopes:
        axes[0, 0].text(0.5, 0.5, f"no pruning results for {task}", ha="center", va="center")
        axes[0, 0].axis("off")
    fig.tight_layout()
    save(fig, out)
