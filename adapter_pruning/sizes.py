"""Score against real bytes on disk (issue 28): for every evaluated state of a run, its primary test
score (mean over seeds) beside the size of the file a user would ship, per task.

Which file (the ``output`` column of :func:`score_vs_bytes`):

* ``compact``: a pruned state of an element scope (CN, CU, CB): its ``adapter.compact.safetensors``
  (``compact_bytes``, :mod:`adapter_pruning.compact`);
* ``structured``: a pruned state of the unit scope ``UN``: the weight file of its smaller standard
  adapter ``structured/`` (``structured_bytes``, :mod:`adapter_pruning.structured`);
* ``full``: the full model, at the size of its dense ``adapter.safetensors`` (``dense_bytes``), which
  is also the size of every pruned state's dense file (the reference a pruned file is measured
  against);
* ``dense_small``: a dense small adapter trained at a smaller width, at its dense file's size.

Torch-free (polars only)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from .aggregate import _cell, _md, select_lam
from .io import atomic_path

__all__ = ["OUTPUTS", "UNIT_SCOPE", "score_vs_bytes", "write_score_vs_bytes"]

#: The kinds of file of :func:`score_vs_bytes`, in the order of its rows.
OUTPUTS = ("full", "dense_small", "compact", "structured")
#: The structured unit scope (:data:`adapter_pruning.methods.UNIT_SCOPE`; repeated to stay torch-free).
UNIT_SCOPE = "UN"

_KEYS = ["model", "task", "output", "scope", "method", "lam", "p", "width"]


def score_vs_bytes(results: pl.DataFrame, *, lam: float | None = None) -> pl.DataFrame:
    """One row per ``(model, task, output, scope, method, λ, p, width)``: the primary test score's mean
    and sample std over seeds (``mean``, ``std``, ``n_seeds``), the mean retained share, the mean size in
    bytes of the state's file of kind ``output`` (``bytes``, see the module's docstring) and of its
    dense ``adapter.safetensors`` (``dense_bytes``), and ``share = bytes / dense_bytes``.

    ``results``: rows of :data:`adapter_pruning.results.SCHEMA`; only the primary metric on the test
    split counts. Pruned states of tropical λ ``lam`` only (:func:`adapter_pruning.aggregate.select_lam`;
    every λ when None). A state without the file of its kind (null bytes, e.g. a state pruned
    without a compact file) is left out. Rows are ordered by model, task, :data:`OUTPUTS`, scope,
    method, λ, p and width."""
    df = select_lam(results, lam).filter(pl.col("primary"), pl.col("split") == "test")
    method = pl.col("method")
    output = (
        pl.when(method == "full")
        .then(pl.lit("full"))
        .when(method == "dense_small")
        .then(pl.lit("dense_small"))
        .when(pl.col("scope") == UNIT_SCOPE)
        .then(pl.lit("structured"))
        .otherwise(pl.lit("compact"))
    )
    size = (
        pl.when(pl.col("output").is_in(["full", "dense_small"]))
        .then(pl.col("dense_bytes"))
        .when(pl.col("output") == "structured")
        .then(pl.col("structured_bytes"))
        .otherwise(pl.col("compact_bytes"))
    )
    df = df.with_columns(output.alias("output")).with_columns(size.alias("bytes")).filter(pl.col("bytes").is_not_null())
    out = (
        df.group_by(_KEYS)
        .agg(
            pl.col("metric").first(),
            pl.col("score").mean().alias("mean"),
            pl.col("score").std().alias("std"),
            pl.len().alias("n_seeds"),
            pl.col("retained").mean(),
            pl.col("bytes").mean(),
            pl.col("dense_bytes").mean(),
        )
        .with_columns(
            (pl.col("bytes") / pl.col("dense_bytes")).alias("share"),
            pl.col("output").replace_strict({o: i for i, o in enumerate(OUTPUTS)}, return_dtype=pl.Int64).alias("_o"),
        )
        .sort(["model", "task", "_o", "scope", "method", "lam", "p", "width"], nulls_last=False)
        .drop("_o")
    )
    return out.select(
        *_KEYS[:2], "metric", *_KEYS[2:], "n_seeds", "mean", "std", "retained", "bytes", "dense_bytes", "share"
    )


def _kib(x) -> str:
    return "–" if x is None else f"{x / 1024:.1f}"


def write_score_vs_bytes(frame: pl.DataFrame, out: Mapping[str, str | Path], *, lam: float | None = None) -> None:
    """Write :func:`score_vs_bytes`'s frame as CSV (``out["csv"]``, every column, bytes as they are)
    and Markdown (``out["md"]``: sizes in KiB, scores ×100 as mean ± std over seeds)."""
    lam_text = "every λ" if lam is None else f"tropical λ = {lam:g}"
    caption = (
        "Test score (primary metric, ×100, mean ± std over seeds) against the bytes on disk of the file a user "
        "would ship (KiB, mean over seeds): `compact` = a pruned state's adapter.compact.safetensors (element "
        "scopes), `structured` = the smaller standard adapter of a unit-pruned state (scope UN, plain "
        "load_adapter loads it), `full` = the full model's dense adapter.safetensors (every pruned state's dense "
        "file has this size), `dense_small` = a dense small adapter's file. share = bytes / the state's dense "
        f"file; retained = share of adapter parameters kept. Pruned states of {lam_text}."
    )
    header = ["model", "task", "output", "scope", "method", "λ", "p", "width", "retained", "KiB", "share", "score"]
    rows = [
        [
            r["model"],
            r["task"],
            r["output"],
            r["scope"] or "–",
            r["method"],
            "–" if r["lam"] is None else f"{r['lam']:g}",
            f"{r['p']:g}",
            "–" if r["width"] is None else str(r["width"]),
            f"{100 * r['retained']:.1f}%",
            _kib(r["bytes"]),
            f"{100 * r['share']:.1f}%",
            _cell(r["mean"], r["std"], r["n_seeds"]),
        ]
        for r in frame.iter_rows(named=True)
    ]
    md = ["# Score against bytes on disk\n", caption, "", _md(header, rows) if rows else "No evaluated state.", ""]
    with atomic_path(out["md"]) as tmp:
        Path(tmp).write_text("\n".join(md))
    with atomic_path(out["csv"]) as tmp:
        frame.write_csv(tmp)
