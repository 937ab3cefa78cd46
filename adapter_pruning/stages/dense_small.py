"""Stage of rule ``train_dense_small``: a dense small adapter, trained from scratch at a smaller
bottleneck width with the training stage's code and settings, and its ``dense_small.json``
(``docs/METHOD.md``, "Beyond the paper"). A module of its own, so that what only it imports
(``artifacts``) is not in ``train_adapter``'s code hash. The training stage is imported inside
:func:`train_dense_small`, so the configuration checks read :func:`dense_small_widths` without torch."""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger("adapter_pruning")


def adapter_parameter_count(d: int, r: int, n_layers: int) -> int:
    """Parameters of a bottleneck adapter of width ``r`` on ``n_layers`` layers of width ``d``: per layer
    ``A (r, d+1)``, ``B (d, r)`` and the up bias ``(d,)``, i.e. ``r (2d + 1) + d`` (18,840 for
    MiniLM's d = 384, r = 24)."""
    return n_layers * (r * (2 * d + 1) + d)


def dense_small_widths(d: int, width: int, reduction_factor: int) -> tuple[int, int]:
    """``(reduction factor of the dense small adapter, width of the full adapter)`` for bottleneck width
    ``width`` on a model of hidden size ``d`` whose full adapter has ``reduction_factor``; a
    ``ValueError`` naming the configuration keys when ``width`` does not divide ``d`` or is not below
    the full adapter's width."""
    if d % reduction_factor:
        raise ValueError(f"training.reduction_factor = {reduction_factor} does not divide the hidden size {d}")
    full = d // reduction_factor
    if width < 1 or d % width:
        raise ValueError(f"pruning.dense_small: width {width} does not divide the model's hidden size {d}")
    if width >= full:
        raise ValueError(
            f"pruning.dense_small: width {width} is not below the full adapter's width {full} "
            f"(hidden size {d} / training.reduction_factor {reduction_factor})"
        )
    return d // width, full


def train_dense_small(
    ids: Mapping,
    spec: Mapping,
    train_path,
    validation_path,
    out_dir,
    *,
    device: str = "auto",
    eval_batch_size: int = 128,
    cores: int | None = None,
) -> dict:
    """Train a dense small adapter of bottleneck width ``spec["width"]`` from scratch into ``out_dir``:
    :func:`train_adapter` with the same settings (``spec`` = the rule's canonical training params plus
    ``width``) except ``reduction_factor = d / width``, plus ``dense_small.json``: ``model, task, seed``
    (``ids``: the model's label in result paths, the task, the seed), ``model_path`` (``spec["model"]``),
    ``width, reduction_factor, n_params`` (the small adapter's), ``width_full, n_params_full`` (the
    adapter of ``training.reduction_factor`` on the same model), ``retained = n_params /
    n_params_full`` and ``p = 100 · (n_params_full − n_params) / n_params_full``. Written atomically
    as one folder. Returns the info."""
    import shutil
    from pathlib import Path

    from transformers import AutoConfig

    from .. import artifacts
    from ..io import atomic_dir, write_json
    from ..models import lean_transformers, resolve_model
    from .train import train_adapter

    task = ids["task"]
    if int(ids["seed"]) != int(spec["seed"]):
        raise ValueError(f"seed {ids['seed']} of the job but {spec['seed']} in its training settings")
    lean_transformers()
    config = AutoConfig.from_pretrained(resolve_model(spec["model"]))
    d, n_layers = int(config.hidden_size), int(config.num_hidden_layers)
    width = int(spec["width"])
    reduction_factor, width_full = dense_small_widths(d, width, int(spec["reduction_factor"]))
    with atomic_dir(out_dir) as tmp:
        inner = Path(tmp) / "adapter"
        train_adapter(
            task,
            {**{k: v for k, v in spec.items() if k != "width"}, "reduction_factor": reduction_factor},
            train_path,
            validation_path,
            inner,
            device=device,
            eval_batch_size=eval_batch_size,
            cores=cores,
        )
        for f in sorted(inner.iterdir()):
            shutil.move(str(f), str(Path(tmp) / f.name))
        inner.rmdir()
        layers = artifacts.read_adapter_layers(tmp)
        n_params = sum(layer.n_params for layer in layers)
        n_full = adapter_parameter_count(d, width_full, len(layers))
        if {layer.A.shape[0] for layer in layers} != {width} or len(layers) != n_layers:
            raise RuntimeError(f"the trained adapter has widths {sorted({l.A.shape[0] for l in layers})}, not {width}")
        info = {
            "model": ids["model"],
            "model_path": spec["model"],
            "task": task,
            "seed": int(spec["seed"]),
            "width": width,
            "reduction_factor": reduction_factor,
            "n_params": n_params,
            "width_full": width_full,
            "n_params_full": n_full,
            "retained": n_params / n_full,
            "p": 100.0 * (n_full - n_params) / n_full,
        }
        write_json(info, Path(tmp) / artifacts.DENSE_SMALL_INFO)
    log.info(
        "%s: dense small adapter of width %d (%d of %d parameters, %.2f %% retained) in %s",
        task,
        width,
        n_params,
        n_full,
        100 * info["retained"],
        out_dir,
    )
    return info
