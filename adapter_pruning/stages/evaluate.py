"""Stage of rule ``evaluate_full``: score the unpruned model; ``score_splits`` is shared with pruning."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from ..models import set_threads

log = logging.getLogger("adapter_pruning")


def score_splits(model, tokenizer, task, splits: Mapping, *, max_length, batch_size, device) -> dict:
    """``{split: {metric: score}}`` of ``model`` on each split; ``splits`` maps a split name to a
    prepared Parquet file or to an already loaded prepared frame."""
    from .. import data, evaluation

    out = {}
    for split, source in splits.items():
        df = source if hasattr(source, "height") else data.read_prepared(source, task)
        t0 = time.perf_counter()
        out[split] = evaluation.evaluate(
            model, tokenizer, df, task, batch_size=batch_size, max_length=max_length, device=device
        )
        log.info("%s %s: %s (%d examples, %.1f s)", task, split, out[split], df.height, time.perf_counter() - t0)
    return out


def evaluate_full(
    ids: Mapping,
    spec: Mapping,
    adapter_dir,
    split_paths: Mapping,
    out_path,
    *,
    device: str = "auto",
    batch_size: int = 128,
    threads: int | None = None,
) -> None:
    """Score the unpruned model (method ``full``, p = 0, retained = 1) on each split."""
    from .. import data, masks, models, results
    from ..io import write_parquet

    set_threads(threads)
    dev = models.resolve_device(device)
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    n_params = sum(layer.n_params for layer in masks.extract_layers(model, name))
    scores = score_splits(
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
    write_parquet(frame, out_path)
