"""Score vs retained share of adapter parameters per task, Standard and Tropical (Table 1's scope), with
the dense small adapters at their retained shares."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .common import save, task_panels

__all__ = ["score_vs_retained_figure"]


def score_vs_retained_figure(
    results_path, out: Mapping[str, str | Path], *, scope: str = "CU", lam: float | None = None
) -> None:
    """Test score (primary metric) vs retained share of adapter parameters, per task; pruned states
    of tropical λ ``lam`` only (all when None); dense small adapters (method ``dense_small``, no scope
    or λ) as black diamonds, one per width (means over seeds)."""
    import polars as pl

    from ..aggregate import load_results, select_lam

    df = select_lam(load_results(results_path), lam).filter(pl.col("primary"), pl.col("split") == "test")
    tasks = list(dict.fromkeys(df["task"].to_list()))
    fig, axes = task_panels(len(tasks), 4.2, 3.3)
    for ax, task in zip(axes.flat, tasks):
        d = df.filter(pl.col("task") == task)
        for method, style in (("standard", "o-"), ("tropical", "s-")):
            m = (
                d.filter(pl.col("method") == method, pl.col("scope") == scope)
                .group_by("p")
                .agg(pl.col("retained").mean(), pl.col("score").mean())
                .sort("retained")
            )
            if m.height:
                ax.plot(100 * m["retained"].to_numpy(), 100 * m["score"].to_numpy(), style, ms=3, label=method)
        small = (
            d.filter(pl.col("method") == "dense_small")
            .group_by("width")
            .agg(pl.col("retained").mean(), pl.col("score").mean())
            .sort("retained")
        )
        if small.height:
            ax.plot(
                100 * small["retained"].to_numpy(), 100 * small["score"].to_numpy(), "kD", ms=4, label="dense small"
            )
        fm = d.filter(pl.col("method") == "full")
        if fm.height:
            ax.axhline(100 * fm["score"].mean(), color="gray", ls="--", label="full model")
        ax.set_title(f"{task} ({d['metric'][0] if d.height else ''}, {scope})")
        ax.set_xlabel("retained adapter parameters (%)")
        ax.set_ylabel("test score (%)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    save(fig, out)
