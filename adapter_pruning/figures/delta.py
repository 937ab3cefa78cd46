"""Comparison study: one task's Tropical − Standard vs retained share with its bootstrap CI, per λ."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .common import lam_label, plt_module, save

__all__ = ["delta_figure"]


def delta_figure(comparison_csv, task: str, out: Mapping[str, str | Path]) -> None:
    """Δ = target − reference (points, ×100; the ``diff`` column of
    :func:`adapter_pruning.comparison.comparison_frame`, read from its CSV) vs the target's mean
    retained share of adapter parameters, for one task, one panel per scope, one line per λ, with
    the bootstrap CI (``ci_lo`` .. ``ci_hi``) as a band and a line at 0."""
    import polars as pl

    df = pl.read_csv(comparison_csv, schema_overrides={"lam": pl.Float64, "scope": pl.String, "task": pl.String})
    df = df.filter(pl.col("task") == task)
    scopes = sorted(s for s in df["scope"].unique().to_list() if s is not None)
    lams = sorted(df["lam"].unique().to_list(), key=lambda x: (x is not None, x or 0.0))
    target = df["target"][0] if df.height else "tropical"
    reference = df["reference"][0] if df.height else "standard"
    plt = plt_module()
    n = max(len(scopes), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.5), squeeze=False)
    for ax, scope in zip(axes.flat, scopes):
        for j, lam in enumerate(lams):
            d = df.filter(pl.col("scope") == scope, pl.col("lam").eq_missing(lam)).sort(f"{target}_retained")
            if not d.height:
                continue
            x = 100 * d[f"{target}_retained"].to_numpy()
            color = f"C{j % 10}"
            ax.plot(x, 100 * d["diff"].to_numpy(), marker="o", ms=3, color=color, label=lam_label(lam))
            ax.fill_between(x, 100 * d["ci_lo"].to_numpy(), 100 * d["ci_hi"].to_numpy(), color=color, alpha=0.2, lw=0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{task}, {scope}")
        ax.set_xlabel(f"retained adapter parameters, {target} (%)")
        ax.set_ylabel(f"Δ {target} − {reference} (points)")
        ax.legend(fontsize=7)
    if not scopes:
        axes[0, 0].text(0.5, 0.5, f"no comparison rows for {task}", ha="center", va="center")
        axes[0, 0].axis("off")
    fig.tight_layout()
    save(fig, out)
