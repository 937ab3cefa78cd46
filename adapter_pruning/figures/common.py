"""Shared by the figure modules: matplotlib without a display, atomic PNG/SVG writing, and the
colours and line styles that keep a method and a λ recognisable across figures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..io import atomic_path


def plt_module():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def task_panels(n_tasks: int, width: float, height: float):
    """``(fig, axes)``: one panel per task, at most three per row, each ``width`` × ``height``
    inches (``axes`` 2-D, ``squeeze=False``; at least one panel)."""
    plt = plt_module()
    n = max(n_tasks, 1)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)


def save(fig, out: Mapping[str, str | Path]) -> None:
    for ext, path in out.items():
        with atomic_path(path) as tmp:
            fig.savefig(
                tmp, format=ext, dpi=150, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None
            )
    plt_module().close(fig)


METHOD_COLORS = {
    "standard": "C0",
    "tropical": "C3",
    "random": "C7",
    "activation": "C2",
    "standard_ps": "C9",
    "tropical_pt": "C1",
    "tropical_opt": "C6",
    "taylor": "C4",
    "sparsegpt": "C8",
    "dense_small": "k",
}
LAM_STYLES = ("-", "--", ":", "-.")


def lam_label(lam) -> str:
    return "λ –" if lam is None else f"λ={lam:g}"
