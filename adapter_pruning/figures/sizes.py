"""Score against real bytes on disk per task: the compact files of unstructured pruning and the
structured (smaller standard) adapters side by side, with the full model's dense file and the dense
small adapters as references (the table of :mod:`adapter_pruning.sizes`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .common import METHOD_COLORS, save, task_panels

__all__ = ["score_vs_bytes_figure"]

_TYPES = {"scope": "str", "method": "str", "output": "str", "lam": "f", "p": "f", "bytes": "f", "mean": "f"}


def _minor_label(value, _pos) -> str:
    """Label the minor ticks of a log axis at 2 and 5 times a power of ten only."""
    mantissa = f"{value:.0e}"[0]
    return f"{value:g}" if value > 0 and mantissa in "25" else ""


def score_vs_bytes_figure(table_path, out: Mapping[str, str | Path], *, scope: str = "CU") -> None:
    """Test score (%) vs file size (KiB, log scale) per task, from ``score_vs_bytes.csv``: one solid
    line per method over p for the compact files of element scope ``scope``, one dashed line per
    method for the structured adapters (scope UN), each point a mean over seeds; the full model as a
    grey star at its dense file's size (with a dashed line at its score and a dotted one at that
    size), the dense small adapters as black diamonds. When the run has structured states, the
    compact lines are drawn for the same methods only."""
    import polars as pl
    from matplotlib.ticker import FuncFormatter

    types = {"str": pl.String, "f": pl.Float64}
    df = pl.read_csv(table_path, schema_overrides={k: types[v] for k, v in _TYPES.items()})
    tasks = list(dict.fromkeys(df["task"].to_list())) if df.height else []
    structured = df.filter(pl.col("output") == "structured")
    compact = df.filter(pl.col("output") == "compact", pl.col("scope") == scope)
    if structured.height:
        compact = compact.filter(pl.col("method").is_in(structured["method"].unique().to_list()))
    present = set(compact["method"].to_list()) | set(structured["method"].to_list())
    methods = [m for m in METHOD_COLORS if m in present] + sorted(present - set(METHOD_COLORS))
    fig, axes = task_panels(len(tasks), 4.6, 3.6)
    for ax, task in zip(axes.flat, tasks):
        d = df.filter(pl.col("task") == task)
        for i, method in enumerate(methods):
            color = METHOD_COLORS.get(method, f"C{(4 + i) % 10}")
            for part, style, label in (
                (compact, "o-", f"{method}, compact ({scope})"),
                (structured, "s--", f"{method}, structured (UN)"),
            ):
                m = (
                    part.filter(pl.col("task") == task, pl.col("method") == method)
                    .group_by("p")
                    .agg(pl.col("bytes").mean(), pl.col("mean").mean())
                    .sort("bytes")
                )
                if m.height:
                    ax.plot(
                        m["bytes"].to_numpy() / 1024, 100 * m["mean"].to_numpy(), style, ms=3, color=color, label=label
                    )
        small = d.filter(pl.col("output") == "dense_small").sort("bytes")
        if small.height:
            ax.plot(small["bytes"].to_numpy() / 1024, 100 * small["mean"].to_numpy(), "kD", ms=4, label="dense small")
        fm = d.filter(pl.col("output") == "full")
        if fm.height:
            kib, score = fm["bytes"].mean() / 1024, 100 * fm["mean"].mean()
            ax.axhline(score, color="gray", ls="--", lw=1)
            ax.axvline(kib, color="gray", ls=":", lw=1)
            ax.plot([kib], [score], "*", color="gray", ms=9, label="full model (dense file)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
        ax.set_title(f"{task} ({d['metric'][0] if d.height else ''}, test)")
        ax.set_xlabel("file size on disk (KiB)")
        ax.set_ylabel("test score (%)")
    if not tasks:
        axes[0, 0].text(0.5, 0.5, "no evaluated state", ha="center", va="center")
        axes[0, 0].axis("off")
    for ax in list(axes.flat)[max(len(tasks), 1) :]:
        ax.axis("off")
    fig.tight_layout()
    legend = {}  # one legend for every panel, below them
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7)
    save(fig, out)
