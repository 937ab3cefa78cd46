"""Stage of rule ``evaluate_full``: score the unpruned model; ``score_splits`` is shared with pruning."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from ..models import set_threads

log = logging.getLogger("adapter_pruning")


def score_splits(model, tokenizer, task, splits: Mapping, *, max_length, batch_size, device) -> tuple[dict, dict]:
    """Score ``model`` on each split; ``splits`` maps a split name to a prepared Parquet file or to an
    already loaded prepared frame. Returns ``({split: {metric: score}}, {split: predictions})`` with
    ``predictions`` a frame of ``id``, ``prediction``, ``label`` in the split's row order."""
    import polars as pl

    from .. import data, evaluation

    scores, predictions = {}, {}
    for split, source in splits.items():
        df = source if hasattr(source, "height") else data.read_prepared(source, task)
        t0 = time.perf_counter()
        pred = evaluation.predict(model, tokenizer, df, batch_size=batch_size, max_length=max_length, device=device)
        scores[split] = evaluation.compute_metrics(pred, df["label"].to_numpy(), data.TASKS[task].num_labels)
        predictions[split] = pl.DataFrame({"id": df["id"], "prediction": pred, "label": df["label"]})
        log.info("%s %s: %s (%d examples, %.1f s)", task, split, scores[split], df.height, time.perf_counter() - t0)
    return scores, predictions


def evaluate_full(
    ids: Mapping,
    spec: Mapping,
    adapter_dir,
    split_paths: Mapping,
    out_path,
    out_predictions,
    *,
    device: str = "auto",
    batch_size: int = 128,
    threads: int | None = None,
) -> None:
    """Score the unpruned model (method ``full``, p = 0, retained = 1) on each split; write its
    scores to ``out_path`` and its per-example predictions to ``out_predictions``."""
    from .. import data, masks, models, results
    from ..io import write_parquet

    set_threads(threads)
    dev = models.resolve_device(device)
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    n_params = sum(layer.n_params for layer in masks.extract_layers(model, name))
    scores, predictions = score_splits(
        model, tokenizer, ids["task"], split_paths, max_length=spec["max_length"], batch_size=batch_size, device=dev
    )
    frame = results.score_frame(
        ids,
        scores,
        scope=None,
        method="full",
        p=0.0,
        n_params=n_params,
        n_pruned=0,
        primary_metric=data.TASKS[ids["task"]].metric,
        provenance=results.runtime_provenance(dev),
    )
    write_parquet(
        results.predictions_frame(ids, predictions, lam=None, scope=None, method="full", p=0.0), out_predictions
    )
    write_parquet(frame, out_path)
