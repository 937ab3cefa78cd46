"""One function per Snakemake rule: read the rule's inputs, call the package, write its outputs.

The scripts in ``scripts/`` only unpack Snakemake's object and call these; everything here is
usable without Snakemake. Every output is written atomically (``adapter_pruning.io``).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Iterator, Mapping

__all__ = [
    "logged",
    "prepare_data",
    "train_adapter",
    "evaluate_full",
    "solve_lambdas",
    "tropical_solve",
    "prune_evaluate",
]

log = logging.getLogger("adapter_pruning")

@contextlib.contextmanager
def logged(log_path: str | Path) -> Iterator[logging.Logger]:
    """Send logging, warnings, stdout and stderr of a job to ``log_path``; log any traceback there.

    The exception still propagates, so Snakemake marks the job failed and names this log.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_path, "a", buffering=1)
    handler = logging.StreamHandler(fh)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = fh
    start = time.perf_counter()
    try:
        yield log
        log.info("done in %.1f s", time.perf_counter() - start)
    except BaseException:
        fh.write(traceback.format_exc())
        raise
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        root.removeHandler(handler)
        root.setLevel(old_level)
        fh.close()


def _threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(int(threads))


# --------------------------------------------------------------------------------------------- data
def prepare_data(spec: Mapping, outputs: Mapping[str, str | Path]) -> None:
    """Normalise every split of ``spec['task']`` and write one Parquet file per split.

    All splits are loaded and validated before the first file is written.
    """
    from . import data

    task = spec["task"]
    mirror = Path(spec["mirror"]) if spec.get("mirror") else None
    if mirror is not None and spec.get("verify_checksums", True):
        data.verify_mirror(mirror, task)
    frames = {}
    for split in outputs:
        frames[split] = data.load_split(
            task, split, mirror=mirror, caps=spec.get("caps"), seed=spec.get("seed", 0),
            imdb_validation_size=spec.get("imdb_validation_size"),
        )
        log.info("%s/%s: %d examples", task, split, frames[split].height)
    for split, path in outputs.items():
        data.write_prepared(frames[split], path, task)


# ----------------------------------------------------------------------------------------- training
def train_adapter(task: str, spec: Mapping, train_path, validation_path, out_dir, *, device: str = "auto",
                  eval_batch_size: int = 128, threads: int | None = None) -> dict:
    """Train the task's adapter (spec = the rule's canonical training params) into ``out_dir``."""
    from . import data, training

    _threads(threads)
    cfg = training.TrainConfig(
        steps=spec["steps"], batch_size=spec["batch_size"], lr=spec["lr"], eval_every=spec["eval_every"],
        max_length=spec["max_length"], seed=spec["seed"], eval_batch_size=eval_batch_size, device=device,
        threads=threads, reduction_factor=spec["reduction_factor"], non_linearity=spec["non_linearity"],
    )
    return training.train_adapter(
        spec["model"], task, data.read_prepared(train_path, task), data.read_prepared(validation_path, task), out_dir,
        cfg,
    )


# ------------------------------------------------------------------------------------- evaluation
def _score_splits(model, tokenizer, task, split_paths, *, max_length, batch_size, device):
    from . import data, evaluation

    out = {}
    for split, path in split_paths.items():
        df = data.read_prepared(path, task)
        t0 = time.perf_counter()
        out[split] = evaluation.evaluate(
            model, tokenizer, df, task, batch_size=batch_size, max_length=max_length, device=device
        )
        log.info("%s %s: %s (%d examples, %.1f s)", task, split, out[split], df.height, time.perf_counter() - t0)
    return out


def evaluate_full(ids: Mapping, spec: Mapping, adapter_dir, split_paths: Mapping, out_path, *,
                  device: str = "auto", batch_size: int = 128, threads: int | None = None) -> None:
    """Score the unpruned model (method ``full``, p = 0, retained = 1) on each split."""
    from . import data, masks, models, results
    from .io import write_parquet

    _threads(threads)
    dev = models.resolve_device(device)
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    n_params = sum(layer.n_params for layer in masks.extract_layers(model, name))
    scores = _score_splits(model, tokenizer, ids["task"], split_paths, max_length=spec["max_length"],
                           batch_size=batch_size, device=dev)
    frame = results.score_frame(ids, scores, scope=None, method="full", p=0.0, n_params=n_params, n_pruned=0,
                                primary_metric=data.TASKS[ids["task"]].metric,
                                provenance=results.runtime_provenance(dev))
    write_parquet(frame, out_path)


# ----------------------------------------------------------------------------------------- tropical
def solve_lambdas(spec: Mapping, A, B):
    """Per-layer ``(λ1, λ2)`` tensors ``(L,)``: ``spec['lam1'] · lambda_scale(A, B)`` when
    ``spec['lam_relative']`` (the default), else the absolute values."""
    import torch

    from . import tropical

    L = A.shape[0]
    scale = tropical.lambda_scale(A, B) if spec.get("lam_relative", True) else torch.ones(L, dtype=torch.float64)
    return spec["lam1"] * scale, spec["lam2"] * scale


def tropical_solve(spec: Mapping, adapter_dir, out_optimized, out_trace, out_info, *, device: str = "cpu",
                   threads: int | None = None) -> None:
    """Solve Eq. 2 for all adapter layers at once (float64), put the result in the conserved gauge,
    check it did not collapse, and save Â, B̂, the trace and a per-layer summary (``solve.json``).

    ``device`` defaults to the CPU, which the workflow always uses: the solver's per-step tensors
    are small, so it is launch-bound on a GPU (docs/benchmarks.md), and a CPU solve does not depend
    on the GPU model."""
    import polars as pl
    import torch

    from . import artifacts, masks, models, tropical
    from .io import write_json, write_parquet

    _threads(threads)
    dev = models.resolve_device(device)
    state, name = artifacts.read_adapter_state(adapter_dir)
    layers = masks.extract_layers(state, name)
    prefixes = [layer.prefix for layer in layers]
    A, B = masks.stack_layers(layers)
    A, B = A.to(dev, torch.float64), B.to(dev, torch.float64)
    lam1, lam2 = solve_lambdas(spec, A, B)
    t0 = time.perf_counter()
    res = tropical.solve(A, B, lam1=lam1, lam2=lam2, method=spec["method"], steps=spec["steps"], lr=spec["lr"],
                         tol=spec["tol"], layer_names=prefixes)
    seconds = time.perf_counter() - t0
    trace = res.trace.detach().cpu().double()  # (n+1, L)
    zA, zB = (z.cpu() for z in tropical.zero_shares(res.A_hat, res.B_hat))
    log.info("solved %d layers in %.2f s, %d steps, converged=%s; zeros in A_hat %s, B_hat %s", len(layers),
             seconds, res.steps, res.converged, [f"{z:.3f}" for z in zA.tolist()], [f"{z:.3f}" for z in zB.tolist()])
    if not spec.get("allow_collapse", False):
        tropical.check_not_collapsed(res.A_hat, res.B_hat, lam1, lam2, prefixes)
    artifacts.write_optimized(out_optimized, res.A_hat, res.B_hat, prefixes)
    n, L = trace.shape
    write_parquet(
        pl.DataFrame({
            "step": [s for s in range(n) for _ in range(L)],
            "layer": [k for _ in range(n) for k in range(L)],
            "prefix": [prefixes[k] for _ in range(n) for k in range(L)],
            "objective": trace.reshape(-1).tolist(),
        }),
        out_trace,
    )
    per_layer = [
        {
            "layer": prefixes[k], "lam1": float(lam1[k]), "lam2": float(lam2[k]),
            "lambda_scale": float(tropical.lambda_scale(A[k], B[k])), "steps": int(res.layer_steps[k]),
            "objective_start": float(trace[0, k]), "objective_end": float(trace[-1, k]),
            "zeros_A_hat": float(zA[k]), "zeros_B_hat": float(zB[k]),
        }
        for k in range(L)
    ]
    write_json({
        "adapter": name, "method": spec["method"], "gauge": "conserved", "steps": res.steps,
        "converged": bool(res.converged), "seconds": seconds, "layers": per_layer, "spec": dict(spec),
    }, out_info)


# ------------------------------------------------------------------------------------------ pruning
def prune_evaluate(ids: Mapping, p: float, spec: Mapping, adapter_dir, optimized_path, split_paths: Mapping,
                   out_dir, out_scores, *, device: str = "auto", batch_size: int = 128,
                   threads: int | None = None) -> dict:
    """Prune one (scope, method, p) state with real zeros, save it (AdapterHub format), score it.

    ``prune.json`` and the score rows carry the mask diagnostics of :func:`masks.mask_agreement`
    against the count-matched Standard mask of the same scope groups (``jaccard_standard``,
    ``pruned_outside_standard``; 1 and 0 for Standard itself)."""
    import torch

    from . import artifacts, data, masks, models, results
    from .io import write_parquet

    _threads(threads)
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
    scores = _score_splits(model, tokenizer, ids["task"], split_paths, max_length=spec["max_length"],
                           batch_size=batch_size, device=dev)
    frame = results.score_frame(ids, scores, scope=ids["scope"], method=ids["method"], p=p, n_params=n_params,
                                n_pruned=n_pruned, primary_metric=data.TASKS[ids["task"]].metric,
                                provenance=results.runtime_provenance(dev),
                                jaccard_standard=agreement["jaccard_retained"],
                                pruned_outside_standard=agreement["pruned_outside"])
    write_parquet(frame, out_scores)
    return info
