"""Comparison study: one task's Δ = target − reference (one method pair) vs retained share with its
bootstrap CI, per λ."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .common import lam_label, plt_module, save

__all__ = ["delta_figure"]


def delta_figure(
    comparison_csv, task: str, out: Mapping[str, str | Path], *, target: str = "tropical", reference: str = "standard"
) -> None:
    """Δ = target − reference (points, ×100; the ``diff`` column of the ``states`` of
    :func:`adapter_pruning.comparison.compare`, read from ``comparison.csv``) vs the target's mean
    retained share of adapter parameters, for one task and one pair, one panel per scope, one line
    per λ, with the bootstrap CI (``ci_lo`` .. ``ci_hi``) as a band, a line at 0, and floor states
    (both methods at the task's floor) drawn as open markers. A pair without rows for the task gives
    a figure that says so."""
    import polars as pl

    df = pl.read_csv(
        comparison_csv,
        schema_overrides={"lam": pl.Float64, "scope": pl.String, "task": pl.String, "floor_methods": pl.String},
    )
    if df.height:
        df = df.filter(pl.col("task") == task, pl.col("target") == target, pl.col("reference") == reference)
    scopes = sorted(s for s in df["scope"].unique().to_list() if s is not None) if df.height else []
    lams = sorted(df["lam"].unique().to_list(), key=lambda x: (x is not None, x or 0.0)) if df.height else []
    plt = plt_module()
    n = max(len(scopes), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.5), squeeze=False)
    for ax, scope in zip(axes.flat, scopes):
        for j, lam in enumerate(lams):
            d = df.filter(pl.col("scope") == scope, pl.col("lam").eq_missing(lam)).sort(f"{target}_retained")
            if not d.height:
                continue
            x = 100 * d[f"{target}_retained"].to_numpy()
            y = 100 * d["diff"].to_numpy()
            color = f"C{j % 10}"
            ax.plot(x, y, color=color, label=lam_label(lam))
            floor = d["floor"].to_numpy().astype(bool)
            ax.scatter(x[~floor], y[~floor], s=9, color=color)
            if floor.any():
                ax.scatter(x[floor], y[floor], s=12, facecolors="none", edgecolors=color)
            ax.fill_between(x, 100 * d["ci_lo"].to_numpy(), 100 * d["ci_hi"].to_numpy(), color=color, alpha=0.2, lw=0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{task}, {scope}")
        ax.set_xlabel(f"retained adapter parameters, {target} (%)")
        ax.set_ylabel(f"Δ {target} − {reference} (points)")
        ax.legend(fontsize=7, title="open: floor state" if df["floor"].any() else None, title_fontsize=6)
    if not scopes:
        axes[0, 0].text(0.5, 0.5, f"no {target} − {reference} rows for {task}", ha="center", va="center")
        axes[0, 0].axis("off")
    fig.tight_layout()
    save(fig, out)
