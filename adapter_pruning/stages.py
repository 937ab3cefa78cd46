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
    "tropical_solve",
    "load_optimized",
    "prune_evaluate",
    "verify_pruned",
    "RESULT_COLUMNS",
]

log = logging.getLogger("adapter_pruning")

#: Columns of every score file and of results/summary/results.parquet, in this order.
RESULT_COLUMNS = (
    "model", "task", "seed", "scope", "method", "p", "retained", "n_params", "n_pruned",
    "split", "metric", "score", "primary",
)


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
def _score_rows(ids: Mapping, scores: Mapping[str, Mapping[str, float]], *, scope, method, p, n_params,
                n_pruned, primary_metric):
    import polars as pl

    rows = []
    for split, metrics in scores.items():
        for metric, value in sorted(metrics.items()):
            rows.append({
                "model": ids["model"], "task": ids["task"], "seed": int(ids["seed"]), "scope": scope,
                "method": method, "p": float(p), "retained": 1.0 - n_pruned / n_params,
                "n_params": int(n_params), "n_pruned": int(n_pruned), "split": split, "metric": metric,
                "score": float(value), "primary": metric == primary_metric,
            })
    schema = {
        "model": pl.String, "task": pl.String, "seed": pl.Int64, "scope": pl.String, "method": pl.String,
        "p": pl.Float64, "retained": pl.Float64, "n_params": pl.Int64, "n_pruned": pl.Int64,
        "split": pl.String, "metric": pl.String, "score": pl.Float64, "primary": pl.Boolean,
    }
    return pl.DataFrame(rows, schema=schema)


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
    from . import data, masks, models
    from .io import write_parquet

    _threads(threads)
    dev = models.resolve_device(device)
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    n_params = sum(layer.n_params for layer in masks.extract_layers(model, name))
    scores = _score_splits(model, tokenizer, ids["task"], split_paths, max_length=spec["max_length"],
                           batch_size=batch_size, device=dev)
    frame = _score_rows(ids, scores, scope=None, method="full", p=0.0, n_params=n_params, n_pruned=0,
                        primary_metric=data.TASKS[ids["task"]].metric)
    write_parquet(frame, out_path)


# ----------------------------------------------------------------------------------------- tropical
def _adapter_state(adapter_dir) -> tuple[dict, str]:
    """The saved adapter's tensors and its name (from adapter_config.json)."""
    from safetensors.torch import load_file

    from .io import CorruptFileError, read_json

    adapter_dir = Path(adapter_dir)
    cfg = read_json(adapter_dir / "adapter_config.json")
    try:
        state = load_file(adapter_dir / "adapter.safetensors")
    except Exception as exc:
        raise CorruptFileError(f"{adapter_dir / 'adapter.safetensors'}: unreadable safetensors file ({exc})") from exc
    return state, cfg["name"]


def tropical_solve(spec: Mapping, adapter_dir, out_optimized, out_trace, out_info, *, device: str = "cpu",
                   threads: int | None = None) -> None:
    """Solve Eq. 2 for all adapter layers at once (float64) and save Â, B̂, the trace and a summary.

    ``device`` defaults to the CPU, which the workflow always uses: the solver's per-step tensors
    are small, so it is launch-bound on a GPU (0.6 s for 12 RoBERTa-base layers x 1000 steps on
    either, docs/benchmarks.md), and a CPU solve does not depend on the GPU model."""
    import polars as pl
    import torch
    from safetensors.torch import save_file

    from . import masks, models, tropical
    from .io import atomic_path, write_json, write_parquet

    _threads(threads)
    dev = models.resolve_device(device)
    state, name = _adapter_state(adapter_dir)
    layers = masks.extract_layers(state, name)
    A, B = masks.stack_layers(layers)
    A, B = A.to(dev, torch.float64), B.to(dev, torch.float64)
    lam1, lam2 = spec["lam1"], spec["lam2"]
    if spec.get("lam_relative"):
        scale = tropical.lambda_scale(A, B)  # (L,): rms(A) rms(B) per layer
        lam1, lam2 = lam1 * scale, lam2 * scale
        log.info("per-layer lambda scale %s", [f"{x:.3g}" for x in scale.tolist()])
    t0 = time.perf_counter()
    res = tropical.solve(A, B, lam1=lam1, lam2=lam2, method=spec["method"], steps=spec["steps"], lr=spec["lr"],
                         tol=spec["tol"])
    seconds = time.perf_counter() - t0
    trace = res.trace.detach().cpu().double()  # (n+1, L)
    log.info("solved %d layers in %.2f s, %d steps, converged=%s", len(layers), seconds, res.steps, res.converged)
    with atomic_path(out_optimized) as tmp:
        save_file(
            {"A_hat": res.A_hat.detach().cpu().float().contiguous(), "B_hat": res.B_hat.detach().cpu().float().contiguous()},
            # One metadata key only: safetensors keeps metadata in a hash map whose order varies
            # between processes, so two keys would make identical solves differ byte-wise.
            str(tmp), metadata={"prefixes": ",".join(l.prefix for l in layers)},
        )
    n, L = trace.shape
    write_parquet(
        pl.DataFrame({
            "step": [s for s in range(n) for _ in range(L)],
            "layer": [k for _ in range(n) for k in range(L)],
            "prefix": [layers[k].prefix for _ in range(n) for k in range(L)],
            "objective": trace.reshape(-1).tolist(),
        }),
        out_trace,
    )
    write_json({
        "adapter": name, "layers": [l.prefix for l in layers], "steps": res.steps, "converged": bool(res.converged),
        "seconds": seconds, "objective_initial": trace[0].tolist(), "objective_final": trace[-1].tolist(),
        "spec": dict(spec),
    }, out_info)


def load_optimized(path, layers) -> list:
    """Read ``optimized.safetensors`` back as ``[(A_hat, B_hat)]`` matching ``layers`` (checked; each
    layer's dtype, on the CPU: ``masks`` moves them to the layer's device)."""
    from safetensors import safe_open

    from .io import CorruptFileError

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            A_hat, B_hat = f.get_tensor("A_hat"), f.get_tensor("B_hat")
    except Exception as exc:
        raise CorruptFileError(f"{path}: unreadable optimized weights ({exc}); rerun tropical_solve") from exc
    prefixes = meta.get("prefixes", "").split(",")
    if prefixes != [l.prefix for l in layers] or A_hat.shape[0] != len(layers):
        raise CorruptFileError(f"{path}: optimized weights do not match the adapter's layers {[l.prefix for l in layers]}")
    return [(A_hat[k].to(l.A.dtype), B_hat[k].to(l.B.dtype)) for k, l in enumerate(layers)]


# ------------------------------------------------------------------------------------------ pruning
def prune_evaluate(ids: Mapping, p: float, spec: Mapping, adapter_dir, optimized_path, split_paths: Mapping,
                   out_dir, out_scores, *, device: str = "auto", batch_size: int = 128,
                   threads: int | None = None) -> dict:
    """Prune one (scope, method, p) state with real zeros, save it (AdapterHub format), score it."""
    import torch

    from . import data, masks, models
    from .io import atomic_dir, sha256_file, write_json, write_parquet

    _threads(threads)
    dev = models.resolve_device(device)
    model, tokenizer, name = models.load_trained(spec["model"], adapter_dir, device=dev)
    layers = masks.extract_layers(model, name)
    optimized = load_optimized(optimized_path, layers)
    chosen = masks.pruning_masks(layers, optimized, p, ids["scope"])[ids["method"]]
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
        "retained": 1.0 - n_pruned / n_params, "layers": per_layer,
    }
    with atomic_dir(out_dir) as tmp:
        model.save_adapter(str(tmp), name, use_safetensors=True)
        info["adapter_sha256"] = sha256_file(Path(tmp) / "adapter.safetensors")
        write_json(info, Path(tmp) / "prune.json")
    log.info("%s %s p=%s: pruned %d of %d adapter parameters (retained %.4f)", ids["scope"], ids["method"], p,
             n_pruned, n_params, info["retained"])
    scores = _score_splits(model, tokenizer, ids["task"], split_paths, max_length=spec["max_length"],
                           batch_size=batch_size, device=dev)
    frame = _score_rows(ids, scores, scope=ids["scope"], method=ids["method"], p=p, n_params=n_params,
                        n_pruned=n_pruned, primary_metric=data.TASKS[ids["task"]].metric)
    write_parquet(frame, out_scores)
    return info


def verify_pruned(pruned_dir) -> dict:
    """Check a saved pruned adapter against its ``prune.json``: checksum and number of zeros.

    Returns the prune info; raises :class:`~adapter_pruning.io.CorruptFileError` naming the file.
    """
    from . import masks
    from .io import CorruptFileError, read_json, sha256_file

    pruned_dir = Path(pruned_dir)
    info = read_json(pruned_dir / "prune.json")
    f = pruned_dir / "adapter.safetensors"
    if sha256_file(f) != info["adapter_sha256"]:
        raise CorruptFileError(f"{f}: checksum differs from prune.json; the file was truncated or modified")
    state, name = _adapter_state(pruned_dir)
    layers = masks.extract_layers(state, name)
    zeros = sum(int((t == 0).sum()) for l in layers for t in (l.A, l.B, l.up_bias))
    if zeros < info["n_pruned"]:
        raise CorruptFileError(f"{f}: holds {zeros} zeros but prune.json reports {info['n_pruned']} pruned")
    return info
