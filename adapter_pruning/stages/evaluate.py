"""Stage of rules ``evaluate`` and ``evaluate_sweep``: score adapter states, the one evaluation path.

A *state* is an adapter folder: the trained adapter (the full model, FM), a dense small adapter
written by rule ``train_dense_small`` (an adapter folder plus ``dense_small.json``) or a pruned one
written by rule ``prune`` (the trained adapter's folder plus ``prune.json``). :func:`evaluate_states`
loads the backbone once and scores every state it is given by loading that state's adapter tensors
into the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..models import set_threads

log = logging.getLogger("adapter_pruning")


def score_splits(
    model,
    tokenizer,
    task,
    splits: Mapping,
    *,
    max_length,
    batch_size,
    device,
    batch_tokens="auto",
    encodings=None,
    precision="fp32",
) -> tuple[dict, dict]:
    """Score ``model`` on each split; ``splits`` maps a split name to a prepared Parquet file or to an
    already loaded prepared frame, ``encodings`` (optional) a split name to its ``evaluation.encode``
    at ``max_length`` (the split is then not tokenized again), ``precision`` that of the forward passes
    (:mod:`adapter_pruning.precision`). Returns ``({split: {metric: score}},
    {split: predictions})`` with ``predictions`` a frame of ``id``, ``prediction``, ``label`` in the
    split's row order."""
    import polars as pl

    from .. import data, evaluation

    scores, predictions = {}, {}
    for split, source in splits.items():
        df = source if hasattr(source, "height") else data.read_prepared(source, task)
        t0 = time.perf_counter()
        pred = evaluation.predict(
            model,
            tokenizer,
            df,
            batch_size=batch_size,
            max_length=max_length,
            device=device,
            batch_tokens=batch_tokens,
            encodings=(encodings or {}).get(split),
            precision=precision,
        )
        scores[split] = evaluation.compute_metrics(pred, df["label"].to_numpy(), data.TASKS[task].num_labels)
        predictions[split] = pl.DataFrame({"id": df["id"], "prediction": pred, "label": df["label"]})
        log.info("%s %s: %s (%d examples, %.1f s)", task, split, scores[split], df.height, time.perf_counter() - t0)
    return scores, predictions


def _state_of(ids: Mapping, state_dir, layers) -> dict:
    """What the score rows say about one state: the full model (no ``prune.json``: method ``full``,
    p = 0, no scope or λ, every adapter parameter kept, no compact file), a dense small adapter (its
    ``dense_small.json``: counted against the full-width adapter, no compact file) or a pruned one
    (its ``prune.json``). ``width`` is the evaluated adapter's bottleneck width."""
    from .. import artifacts

    width = int(layers[0].A.shape[0])
    small = artifacts.read_dense_small_info(state_dir)
    info = artifacts.read_pruned_info(state_dir)
    if small is not None:
        info = small
    elif info is None:
        n_params = sum(layer.n_params for layer in layers)
        dense_bytes = (Path(state_dir) / "adapter.safetensors").stat().st_size
        return {
            "lam": None,
            "scope": None,
            "method": "full",
            "p": 0.0,
            "n_params": n_params,
            "n_pruned": 0,
            "width": width,
            "dense_bytes": dense_bytes,
        }
    for key in ("model", "task", "seed"):
        if str(info[key]) != str(ids[key]):
            name = "dense_small.json" if small is not None else "prune.json"
            raise ValueError(f"{state_dir}/{name}: {key} = {info[key]!r}, but this job scores {key} {ids[key]!r}")
    if small is not None:
        n_params = sum(layer.n_params for layer in layers)
        if n_params != small["n_params"] or width != small["width"]:
            raise ValueError(
                f"{state_dir}/dense_small.json: {small['n_params']} parameters of width {small['width']}, but the "
                f"adapter holds {n_params} of width {width}; rerun train_dense_small"
            )
        return {
            "lam": None,
            "scope": None,
            "method": "dense_small",
            "p": small["p"],
            "n_params": small["n_params_full"],
            "n_pruned": small["n_params_full"] - small["n_params"],
            "width": width,
            "dense_bytes": (Path(state_dir) / "adapter.safetensors").stat().st_size,
        }
    return {
        "lam": info["lam"],
        "scope": info["scope"],
        "method": info["method"],
        "p": float(info["p"]),
        "n_params": info["n_params"],
        "n_pruned": info["n_pruned"],
        "jaccard_standard": info["jaccard_standard"],
        "pruned_outside_standard": info["pruned_outside_standard"],
        "slack": info["slack"],
        "width": width,
        "dense_bytes": info.get("dense_bytes"),
        "compact_bytes": info.get("compact_bytes"),
        "structured_bytes": info.get("structured_bytes"),
    }


def evaluate_states(
    ids: Mapping,
    spec: Mapping,
    state_dirs: Sequence,
    split_paths: Mapping,
    out_scores: Sequence,
    out_predictions: Sequence,
    *,
    device: str = "auto",
    batch_size: int = 128,
    batch_tokens: int | str | None = "auto",
    threads: int | None = None,
) -> None:
    """Score every adapter state of ``state_dirs`` (one task and seed) on each split of
    ``split_paths``; write state ``k``'s score rows to ``out_scores[k]`` and its per-example
    predictions to ``out_predictions[k]``.

    ``ids`` holds ``model, task, seed``; ``spec`` holds ``model`` (the backbone), ``max_length`` and
    ``precision`` (of the forward passes; ``fp32`` when absent); ``device`` as
    :func:`adapter_pruning.devices.resolve` (the workflow passes its planned ``cpu`` or ``cuda``).
    Every score row records the precision (``precision``), where it was scored (``device``,
    ``device_name``) and how and where its adapter was trained (``train_precision``, ``train_device``,
    ``train_device_name``, from its ``metrics.json``).
    The backbone, the first state's adapter and head, the tokenizer and the data are loaded, and the
    data tokenized, once; each state's adapter tensors are then loaded into that model
    (``masks.load_into_model``). Every state must carry the same adapter (name, layers) and a
    byte-identical ``model_head.safetensors`` (pruning never touches the head); otherwise a
    ``ValueError`` names the folder.
    """
    from .. import artifacts, data, evaluation, masks, models, precision, results
    from ..io import write_parquet

    if not (len(state_dirs) == len(out_scores) == len(out_predictions)):
        raise ValueError(
            f"{len(state_dirs)} states but {len(out_scores)} score files and {len(out_predictions)} prediction files"
        )
    if not state_dirs:
        return
    set_threads(threads)
    dev = models.resolve_device(device)
    prec = precision.check_precision(spec.get("precision", "fp32"), dev, what="evaluation.precision")
    first = Path(state_dirs[0])
    model, tokenizer, name = models.load_trained(spec["model"], first, device=dev)
    head = first / "model_head.safetensors"
    head_bytes = head.read_bytes()
    frames = {split: data.read_prepared(path, ids["task"]) for split, path in split_paths.items()}
    t0 = time.perf_counter()
    encodings = {split: evaluation.encode(tokenizer, df, spec["max_length"]) for split, df in frames.items()}
    log.info(
        "tokenized %s in %.1f s", ", ".join(f"{s} ({df.height})" for s, df in frames.items()), time.perf_counter() - t0
    )
    provenance = {
        **results.runtime_provenance(dev),
        **artifacts.read_train_device(first),
        "precision": prec,
        "train_precision": artifacts.read_train_precision(first),
    }
    for state_dir, out_score, out_pred in zip(state_dirs, out_scores, out_predictions):
        state_dir = Path(state_dir)
        if (state_dir / "model_head.safetensors").read_bytes() != head_bytes:
            raise ValueError(
                f"{state_dir / 'model_head.safetensors'} differs from {head}: the states of one evaluation "
                "job must share the classification head (pruning never changes it); rerun rule prune"
            )
        state, state_name = artifacts.read_adapter_state(state_dir)
        if state_name != name:
            raise ValueError(f"{state_dir}: adapter {state_name!r}, but {first} holds adapter {name!r}")
        layers = masks.extract_layers(state, name)
        masks.load_into_model(model, layers)
        st = _state_of(ids, state_dir, layers)
        scores, predictions = score_splits(
            model,
            tokenizer,
            ids["task"],
            frames,
            max_length=spec["max_length"],
            batch_size=batch_size,
            device=dev,
            batch_tokens=batch_tokens,
            encodings=encodings,
            precision=prec,
        )
        frame = results.score_frame(
            ids,
            scores,
            scope=st["scope"],
            method=st["method"],
            p=st["p"],
            n_params=st["n_params"],
            n_pruned=st["n_pruned"],
            primary_metric=data.TASKS[ids["task"]].metric,
            provenance=provenance,
            jaccard_standard=st.get("jaccard_standard"),
            pruned_outside_standard=st.get("pruned_outside_standard"),
            slack=st.get("slack"),
            width=st["width"],
            lam=st["lam"],
            dense_bytes=st["dense_bytes"],
            compact_bytes=st.get("compact_bytes"),
            structured_bytes=st.get("structured_bytes"),
        )
        write_parquet(
            results.predictions_frame(
                ids, predictions, lam=st["lam"], scope=st["scope"], method=st["method"], p=st["p"]
            ),
            out_pred,
        )
        write_parquet(frame, out_score)
        log.info("%s: %s %s p=%s scored", state_dir, st["scope"] or "-", st["method"], st["p"])
