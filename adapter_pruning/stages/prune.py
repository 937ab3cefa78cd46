"""Stage of rule ``prune_evaluate``: prune one (scope, method, p) state, save it, score it."""

from __future__ import annotations

import logging
from typing import Mapping

log = logging.getLogger("adapter_pruning")

from ..models import set_threads
from .evaluate import score_splits


def prune_evaluate(ids: Mapping, p: float, spec: Mapping, adapter_dir, optimized_path, split_paths: Mapping,
                   out_dir, out_scores, *, device: str = "auto", batch_size: int = 128,
                   threads: int | None = None) -> dict:
    """Prune one (scope, method, p) state with real zeros, save it (AdapterHub format), score it.

    ``prune.json`` and the score rows carry the mask diagnostics of :func:`masks.mask_agreement`
    against the count-matched Standard mask of the same scope groups (``jaccard_standard``,
    ``pruned_outside_standard``; 1 and 0 for Standard itself)."""
    import torch

    from .. import artifacts, data, masks, models, results
    from ..io import write_parquet

    set_threads(threads)
    dev = models.resolve_device(device)
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    layers = masks.extract_layers(model, name)
    optimized = artifacts.read_optimized(optimized_path, layers)
    both = masks.pruning_masks(layers, optimized, p, ids["scope"])
    chosen = both[ids["method"]]
    agreement = masks.mask_agreement(chosen, both["standard"])
    pruned = masks.apply_masks(layers, chosen, values=spec["values"],
                               optimized=optimized if spec["values"] == "optimized" else None)
    masks.load_into_model(model, pruned)
    per_layer = masks.mask_report(chosen)
    n_params = sum(r["n_params"] for r in per_layer)
    n_pruned = sum(r["n_pruned"] for r in per_layer)
    # The model now holds real zeros exactly where the mask says so.
    check = masks.extract_layers(model, name)
    for lay, m in zip(check, chosen):
        for t, mk in ((lay.A, m.A), (lay.B, m.B), (lay.up_bias, m.up_bias)):
            if not torch.all(t[mk] == 0):
                raise RuntimeError(f"{lay.prefix}: pruned entries are not zero after applying the mask")
    info = {
        **{k: ids[k] for k in ("model", "task", "seed", "scope", "method")}, "p": float(p),
        "values": spec["values"], "n_params": n_params, "n_pruned": n_pruned,
        "retained": 1.0 - n_pruned / n_params,
        "jaccard_standard": agreement["jaccard_retained"],
        "pruned_outside_standard": agreement["pruned_outside"],
        "layers": per_layer,
    }
    info = artifacts.write_pruned(out_dir, lambda tmp: model.save_adapter(str(tmp), name, use_safetensors=True), info)
    log.info("%s %s p=%s: pruned %d of %d adapter parameters (retained %.4f; Jaccard with Standard %.4f)",
             ids["scope"], ids["method"], p, n_pruned, n_params, info["retained"], info["jaccard_standard"])
    scores = score_splits(model, tokenizer, ids["task"], split_paths, max_length=spec["max_length"],
                           batch_size=batch_size, device=dev)
    frame = results.score_frame(ids, scores, scope=ids["scope"], method=ids["method"], p=p, n_params=n_params,
                                n_pruned=n_pruned, primary_metric=data.TASKS[ids["task"]].metric,
                                provenance=results.runtime_provenance(dev),
                                jaccard_standard=agreement["jaccard_retained"],
                                pruned_outside_standard=agreement["pruned_outside"])
    write_parquet(frame, out_scores)
    return info
