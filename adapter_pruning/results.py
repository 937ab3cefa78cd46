"""The results schema, defined once: every per-state score file and ``results.parquet`` have these
columns, in this order, with these types (polars). Torch-free.

One row per evaluated state (the full model, or one pruned ``(scope, method, p)`` state of a
``(model, task, seed)``), split and metric:

* ``model, task, seed``: what was trained; ``lam``: the tropical λ (``tropical.lam``, or ``lam1``)
  of the solve whose ``Â, B̂`` and Tropical count this state's method uses (null for the full model
  and the dense small adapters); ``scope`` (null for both), ``method`` (``full``, ``dense_small`` or a
  mask method of :mod:`adapter_pruning.methods`), ``p`` (requested pruning percentage; 0 for
  ``full``; for ``dense_small`` ``100 · n_pruned / n_params``, the share of the full adapter's
  parameters the small one lacks);
* ``retained = 1 − n_pruned / n_params``; ``n_params`` counts every adapter weight and bias (the
  head is never pruned and not counted); ``n_pruned`` the parameters set to zero. A dense small
  adapter counts against the full-width adapter: ``n_params`` is the full adapter's count and
  ``n_pruned`` the parameters it does not have, so ``retained`` is its exact share;
* ``dense_bytes``: size of the state's ``adapter.safetensors`` (what ``load_adapter`` reads);
  ``compact_bytes``: size of its ``adapter.compact.safetensors`` (:mod:`adapter_pruning.compact`;
  null for ``full`` and ``dense_small``, which have no compact file); ``structured_bytes``: size of
  the weight file of its ``structured/`` adapter, the smaller standard adapter of a unit-pruned state
  (scope ``UN``, :mod:`adapter_pruning.structured`; null for every other state);
* ``split, metric, score`` (0..1) and ``primary`` (the task's own metric, used by the tables);
* ``jaccard_standard``: retained-set Jaccard of this state's mask with the count-matched Standard
  mask of the same scope groups (1 for Standard; null for ``full``); ``pruned_outside_standard``:
  share of this state's pruned parameters that Standard keeps (0 for Standard; null for ``full``);
  both against Standard's mask with the same count in every scope group (``masks.MethodMasks``);
* ``slack``: the room the method had to differ from that Standard mask: the most entries in which its
  pruned set can differ from Standard's, summed over the scope groups (``masks.MethodMasks``: Tropical
  ``min(k_T, |P_S| − k_T)``, a free ranking of ``c`` entries ``min(c, n − c)`` with ``c = k_T`` when
  count-matched and ``k`` at p, magnitude pruning 0; under ``UN`` the same rule in units,
  ``min(k_l, r_l − k_l) (2d + 1)``; null for ``full`` and ``dense_small``); ``width``: the bottleneck
  width ``r`` of the evaluated adapter (the full adapter's for pruned states, ``UN`` included: the
  structured adapter's widths are in ``prune.json``);
* ``precision``: the precision the state was scored in (``evaluation.precision``: ``fp32``, ``bf16``,
  ``tf32``); ``train_precision``: the one its adapter was trained in (``training.precision``, from the
  adapter's ``metrics.json``; null for an adapter imported from elsewhere). Both define the score
  (:mod:`adapter_pruning.precision`);
* ``device`` (``cpu`` or ``cuda``) and ``device_name`` (the GPU's model, or the CPU's): where the
  state was scored; ``train_device`` and ``train_device_name``: where its adapter was trained (from the
  adapter's ``metrics.json``; null for an adapter imported from elsewhere); ``torch``, ``transformers``,
  ``adapters``: the versions that scored the state (provenance). Which of these may differ between
  the rows of one results file: :data:`adapter_pruning.aggregate.POLICY`.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

__all__ = [
    "SCHEMA",
    "COLUMNS",
    "KEY",
    "STATE",
    "PREDICTIONS_SCHEMA",
    "score_frame",
    "predictions_frame",
    "runtime_provenance",
]

SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String,
    "task": pl.String,
    "seed": pl.Int64,
    "lam": pl.Float64,
    "scope": pl.String,
    "method": pl.String,
    "p": pl.Float64,
    "retained": pl.Float64,
    "n_params": pl.Int64,
    "n_pruned": pl.Int64,
    "dense_bytes": pl.Int64,
    "compact_bytes": pl.Int64,
    "structured_bytes": pl.Int64,
    "split": pl.String,
    "metric": pl.String,
    "score": pl.Float64,
    "primary": pl.Boolean,
    "jaccard_standard": pl.Float64,
    "pruned_outside_standard": pl.Float64,
    "slack": pl.Int64,
    "width": pl.Int64,
    "precision": pl.String,
    "train_precision": pl.String,
    "device": pl.String,
    "device_name": pl.String,
    "train_device": pl.String,
    "train_device_name": pl.String,
    "torch": pl.String,
    "transformers": pl.String,
    "adapters": pl.String,
}
#: Column order of every results file.
COLUMNS: tuple[str, ...] = tuple(SCHEMA)
#: The columns that name an evaluated state (the full model or one pruned state).
STATE: tuple[str, ...] = ("model", "task", "seed", "lam", "scope", "method", "p")
#: Columns that identify a row (unique in results.parquet).
KEY: list[str] = [*STATE, "split", "metric"]

#: Per-example predictions of one evaluated state (one file beside each score file): the state's
#: identity (as in :data:`SCHEMA`), then one row per example of each split: its ``id`` (the prepared
#: data's), the predicted class index and the gold label.
PREDICTIONS_SCHEMA: dict[str, pl.DataType] = {
    **{k: SCHEMA[k] for k in STATE},
    "split": pl.String,
    "id": pl.String,
    "prediction": pl.Int64,
    "label": pl.Int64,
}


def runtime_provenance(device) -> dict[str, str]:
    """``device`` (``cpu`` or ``cuda``), ``device_name`` (:func:`adapter_pruning.devices.describe`) and
    the versions of torch, transformers, adapters."""
    import adapters
    import torch
    import transformers

    from .devices import describe

    return {
        **describe(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "adapters": adapters.__version__,
    }


def _state(ids: Mapping, *, lam, scope, method, p) -> dict:
    """The :data:`STATE` columns of one evaluated state."""
    return {
        "model": ids["model"],
        "task": ids["task"],
        "seed": int(ids["seed"]),
        "lam": None if lam is None else float(lam),
        "scope": scope,
        "method": method,
        "p": float(p),
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
    slack: int | None = None,
    width: int | None = None,
    lam: float | None = None,
    dense_bytes: int | None = None,
    compact_bytes: int | None = None,
    structured_bytes: int | None = None,
) -> pl.DataFrame:
    """The rows of one evaluated state: one per split and metric of ``scores`` (``{split: {metric: value}}``).
    ``provenance``: ``device``, ``torch``, ``transformers``, ``adapters`` (:func:`runtime_provenance`),
    and optionally ``precision`` (default ``fp32``) and ``train_precision`` (default null)."""
    state = _state(ids, lam=lam, scope=scope, method=method, p=p)
    rows = [
        {
            **state,
            "retained": 1.0 - n_pruned / n_params,
            "n_params": int(n_params),
            "n_pruned": int(n_pruned),
            "dense_bytes": dense_bytes,
            "compact_bytes": compact_bytes,
            "structured_bytes": structured_bytes,
            "split": split,
            "metric": metric,
            "score": float(value),
            "primary": metric == primary_metric,
            "jaccard_standard": jaccard_standard,
            "pruned_outside_standard": pruned_outside_standard,
            "slack": slack,
            "width": width,
            "precision": provenance.get("precision", "fp32"),
            "train_precision": provenance.get("train_precision"),
            **{k: provenance[k] for k in ("device", "torch", "transformers", "adapters")},
            **{k: provenance.get(k) for k in ("device_name", "train_device", "train_device_name")},
        }
        for split, metrics in scores.items()
        for metric, value in sorted(metrics.items())
    ]
    return pl.DataFrame(rows, schema=SCHEMA)


def predictions_frame(ids: Mapping, predictions: Mapping[str, pl.DataFrame], *, lam, scope, method, p) -> pl.DataFrame:
    """The per-example rows of one evaluated state; ``predictions`` maps a split to a frame with
    columns ``id``, ``prediction``, ``label`` (in the prepared data's row order)."""
    state = _state(ids, lam=lam, scope=scope, method=method, p=p)
    frames = [
        df.select("id", "prediction", "label").with_columns(
            *(pl.lit(v, dtype=PREDICTIONS_SCHEMA[k]).alias(k) for k, v in state.items()),
            pl.lit(split, dtype=pl.String).alias("split"),
        )
        for split, df in predictions.items()
    ]
    return pl.concat(frames).select(*(pl.col(k).cast(t) for k, t in PREDICTIONS_SCHEMA.items()))
