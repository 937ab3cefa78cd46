"""Paper Fig. 1: the objective of Eq. 2 against the solver iteration, per adapter layer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from .common import plt_module, save

__all__ = ["objective_figure"]


def objective_figure(trace_paths: Iterable[str | Path], out: Mapping[str, str | Path]) -> None:
    """Fig. 1: objective (summed over layers, relative to its start) vs solver iteration, per run;
    a second panel shows every layer of the first run."""
    import polars as pl

    plt = plt_module()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    first = None
    for path in trace_paths:
        df = pl.read_parquet(path)
        parts = Path(path).parts
        label = f"{parts[-4]} {parts[-3]}" if len(parts) >= 4 else str(path)
        tot = df.group_by("step").agg(pl.col("objective").sum()).sort("step")
        y = tot["objective"].to_numpy()
        ax.plot(tot["step"].to_numpy(), y / y[0], label=label)
        if first is None:
            first = (label, df)
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective / initial objective")
    ax.set_title("Tropical objective (Eq. 2), all layers")
    ax.legend(fontsize=7)
    if first is not None:
        label, df = first
        for layer, sub in df.sort("step").group_by("layer", maintain_order=True):
            ax2.plot(sub["step"].to_numpy(), sub["objective"].to_numpy(), label=f"layer {layer[0]}")
        ax2.set_yscale("log")
        ax2.set_title(f"per layer: {label}")
        ax2.set_xlabel("iteration")
        ax2.set_ylabel("objective")
        ax2.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save(fig, out)
