"""Stage of rule ``prune_evaluate``: prune (scope, method, p) states, save each, score each.

Two entry points with identical outputs per state (one pruned adapter folder and one score file):

* :func:`prune_evaluate`: one state per job (``evaluation.mode: per_state``, the default);
* :func:`prune_evaluate_sweep`: every ``p`` of one (task, seed, scope, method) in one job
  (``evaluation.mode: per_sweep``): the model, tokenizer and data are loaded once, so the fixed cost
  of a job (starting Python, importing torch/transformers, loading the model) is paid once per sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ..models import set_threads
from .evaluate import score_splits

log = logging.getLogger("adapter_pruning")


def baseline_scores(method: str, layers, *, seed: int, input_rms=None) -> dict:
    """``{method: per-layer scores}`` for a baseline method (``random``: seeded by the run's ``seed``;
    ``activation``: from the calibration norms), ``{}`` for ``standard`` and ``tropical``."""
    from .. import masks

    if method == "random":
        return {"random": masks.random_scores(layers, seed)}
    if method == "activation":
        if input_rms is None:
            raise ValueError("method 'activation' needs the calibration norms (rule calibrate)")
        return {"activation": masks.activation_scores(layers, input_rms)}
    return {}


def _prune_one(model, name, layers, optimized, ids: Mapping, p: float, values: str, scores: Mapping) -> dict:
    """Load the pruned state of ``(ids['scope'], ids['method'], p)`` into ``model`` (every adapter tensor
    is rewritten from the original ``layers``, so states do not leak into each other) and return its
    ``prune.json`` info (counts, retained share, mask diagnostics). ``scores``: :func:`baseline_scores`."""
    import torch

    from .. import masks

    both = masks.pruning_masks(layers, optimized, p, ids["scope"], scores=scores)
    chosen = both[ids["method"]]
    agreement = masks.mask_agreement(chosen, both["standard"])
    pruned = masks.apply_masks(layers, chosen, values=values, optimized=optimized if values == "optimized" else None)
    masks.load_into_model(model, pruned)
    per_layer = masks.mask_report(chosen)
    n_params = sum(r["n_params"] for r in per_layer)
    n_pruned = sum(r["n_pruned"] for r in per_layer)
    # The model now holds real zeros exactly where the mask says so.
    for lay, m in zip(masks.extract_layers(model, name), chosen):
        for t, mk in ((lay.A, m.A), (lay.B, m.B), (lay.up_bias, m.up_bias)):
            if not torch.all(t[mk] == 0):
                raise RuntimeError(f"{lay.prefix}: pruned entries are not zero after applying the mask")
    return {
        **{k: ids[k] for k in ("model", "task", "seed", "lam", "scope", "method")},
        "p": float(p),
        "values": values,
        "n_params": n_params,
        "n_pruned": n_pruned,
        "retained": 1.0 - n_pruned / n_params,
        "jaccard_standard": agreement["jaccard_retained"],
        "pruned_outside_standard": agreement["pruned_outside"],
        "layers": per_layer,
    }


def prune_evaluate_sweep(
    ids: Mapping,
    ps: Sequence[float],
    spec: Mapping,
    adapter_dir,
    optimized_path,
    split_paths: Mapping,
    out_dirs: Sequence,
    out_scores: Sequence,
    out_predictions: Sequence,
    *,
    calibration_path=None,
    device: str = "auto",
    batch_size: int = 128,
    threads: int | None = None,
) -> list[dict]:
    """Prune, save and score every ``p`` of ``ps`` for one (scope, method) in one process.

    ``out_dirs[k]``, ``out_scores[k]``, ``out_predictions[k]`` receive state ``ps[k]``, exactly as
    :func:`prune_evaluate` would write them. ``ids`` holds ``model, task, seed, lam, scope, method``;
    ``calibration_path``: the calibration norms, needed by method ``activation``. ``prune.json`` and
    the score rows carry the mask diagnostics of
    :func:`masks.mask_agreement` against the count-matched Standard mask of the same scope groups
    (``jaccard_standard``, ``pruned_outside_standard``; 1 and 0 for Standard itself)."""
    from .. import artifacts, data, masks, models, results
    from ..io import write_parquet

    if not (len(ps) == len(out_dirs) == len(out_scores) == len(out_predictions)):
        raise ValueError(
            f"{len(ps)} percentages but {len(out_dirs)} output folders, {len(out_scores)} score files and "
            f"{len(out_predictions)} prediction files"
        )
    set_threads(threads)
    dev = models.resolve_device(device)
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    layers = masks.extract_layers(model, name)
    optimized = artifacts.read_optimized(optimized_path, layers)
    input_rms = artifacts.read_input_rms(calibration_path, layers) if calibration_path else None
    scores_by_method = baseline_scores(ids["method"], layers, seed=int(ids["seed"]), input_rms=input_rms)
    frames = {split: data.read_prepared(path, ids["task"]) for split, path in split_paths.items()}
    provenance = results.runtime_provenance(dev)
    infos = []
    for p, out_dir, out_score, out_pred in zip(ps, out_dirs, out_scores, out_predictions):
        info = _prune_one(model, name, layers, optimized, ids, p, spec["values"], scores_by_method)
        info = artifacts.write_pruned(
            out_dir, lambda tmp: model.save_adapter(str(tmp), name, use_safetensors=True), info
        )
        artifacts.verify_pruned(out_dir)  # the saved file holds the zeros prune.json reports
        log.info(
            "%s %s p=%s: pruned %d of %d adapter parameters (retained %.4f; Jaccard with Standard %.4f)",
            ids["scope"],
            ids["method"],
            p,
            info["n_pruned"],
            info["n_params"],
            info["retained"],
            info["jaccard_standard"],
        )
        scores, predictions = score_splits(
            model, tokenizer, ids["task"], frames, max_length=spec["max_length"], batch_size=batch_size, device=dev
        )
        frame = results.score_frame(
            ids,
            scores,
            scope=ids["scope"],
            method=ids["method"],
            p=p,
            n_params=info["n_params"],
            n_pruned=info["n_pruned"],
            primary_metric=data.TASKS[ids["task"]].metric,
            provenance=provenance,
            jaccard_standard=info["jaccard_standard"],
            pruned_outside_standard=info["pruned_outside_standard"],
            lam=ids["lam"],
        )
        write_parquet(
            results.predictions_frame(ids, predictions, lam=ids["lam"], scope=ids["scope"], method=ids["method"], p=p),
            out_pred,
        )
        write_parquet(frame, out_score)
        infos.append(info)
    return infos


def prune_evaluate(
    ids: Mapping,
    p: float,
    spec: Mapping,
    adapter_dir,
    optimized_path,
    split_paths: Mapping,
    out_dir,
    out_scores,
    out_predictions,
    *,
    calibration_path=None,
    device: str = "auto",
    batch_size: int = 128,
    threads: int | None = None,
) -> dict:
    """Prune one (scope, method, p) state with real zeros, save it (AdapterHub format), score it
    (:func:`prune_evaluate_sweep` with one ``p``)."""
    return prune_evaluate_sweep(
        ids,
        [p],
        spec,
        adapter_dir,
        optimized_path,
        split_paths,
        [out_dir],
        [out_scores],
        [out_predictions],
        calibration_path=calibration_path,
        device=device,
        batch_size=batch_size,
        threads=threads,
    )[0]
