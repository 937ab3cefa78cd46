"""The results schema, defined once: every per-state score file and ``results.parquet`` have these
columns, in this order, with these types (polars). Torch-free.

One row per evaluated state (the full model, or one pruned ``(scope, method, p)`` state of a
``(model, task, seed)``), split and metric:

* ``model, task, seed``: what was trained; ``scope`` (null for the full model), ``method``
  (``full``, ``standard``, ``tropical``), ``p`` (requested pruning percentage; 0 for ``full``);
* ``retained = 1 − n_pruned / n_params``; ``n_params`` counts every adapter weight and bias (the
  head is never pruned and not counted); ``n_pruned`` the parameters set to zero;
* ``split, metric, score`` (0..1) and ``primary`` (the task's own metric, used by the tables);
* ``jaccard_standard``: retained-set Jaccard of this state's mask with the count-matched Standard
  mask of the same scope groups (1 for Standard; null for ``full``); ``pruned_outside_standard``:
  share of this state's pruned parameters that Standard keeps (0 for Standard; null for ``full``);
* ``device`` (``cpu`` or ``cuda:<GPU name>``) and ``torch``, ``transformers``, ``adapters``: the
  versions that evaluated the state (provenance).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

__all__ = ["SCHEMA", "COLUMNS", "KEY", "score_frame", "runtime_provenance"]

SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String,
    "task": pl.String,
    "seed": pl.Int64,
    "scope": pl.String,
    "method": pl.String,
    "p": pl.Float64,
    "retained": pl.Float64,
    "n_params": pl.Int64,
    "n_pruned": pl.Int64,
    "split": pl.String,
    "metric": pl.String,
    "score": pl.Float64,
    "primary": pl.Boolean,
    "jaccard_standard": pl.Float64,
    "pruned_outside_standard": pl.Float64,
    "device": pl.String,
    "torch": pl.String,
    "transformers": pl.String,
    "adapters": pl.String,
}
#: Column order of every results file.
COLUMNS: tuple[str, ...] = tuple(SCHEMA)
#: Columns that identify a row (unique in results.parquet).
KEY: list[str] = ["model", "task", "seed", "scope", "method", "p", "split", "metric"]


def runtime_provenance(device) -> dict[str, str]:
    """``device`` (``cpu`` or ``cuda:<GPU name>``) and the versions of torch, transformers, adapters."""
    import adapters
    import torch
    import transformers

    dev = str(device)
    if dev.startswith("cuda"):
        dev = f"cuda:{torch.cuda.get_device_name(torch.device(dev))}"
    return {
        "device": dev,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "adapters": adapters.__version__,
    }


def score_frame(
    ids: Mapping,
    scores: Mapping[str, Mapping[str, float]],
    *,
    scope,
    method,
    p,
    n_params: int,
    n_pruned: int,
    primary_metric: str,
    provenance: Mapping[str, str],
    jaccard_standard: float | None = None,
    pruned_outside_standard: float | None = None,
) -> pl.DataFrame:
    """The rows of one evaluated state: one per split and metric of ``scores`` (``{split: {metric: value}}``)."""
    rows = [
        {
            "model": ids["model"],
            "task": ids["task"],
            "seed": int(ids["seed"]),
            "scope": scope,
            "method": method,
            "p": float(p),
            "retained": 1.0 - n_pruned / n_params,
            "n_params": int(n_params),
            "n_pruned": int(n_pruned),
            "split": split,
            "metric": metric,
            "score": float(value),
            "primary": metric == primary_metric,
            "jaccard_standard": jaccard_standard,
            "pruned_outside_standard": pruned_outside_standard,
            **{k: provenance[k] for k in ("device", "torch", "transformers", "adapters")},
        }
        for split, metrics in scores.items()
        for metric, value in sorted(metrics.items())
    ]
    return pl.DataFrame(rows, schema=SCHEMA)
