"""Stage of rule ``train_adapter``: train one task's adapter and head."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..models import set_threads

log = logging.getLogger("adapter_pruning")


def train_adapter(
    task: str,
    spec: Mapping,
    train_path,
    validation_path,
    out_dir,
    *,
    device: str = "auto",
    eval_batch_size: int = 128,
    cores: int | None = None,
) -> dict:
    """Train the task's adapter (spec = the rule's canonical training params) into ``out_dir``.

    Training runs on ``spec["threads"]`` torch threads (config ``training.threads``), whatever
    ``cores`` the job was given: 1 and 2 threads give different weights (docs/benchmarks.md), so the
    thread count is part of what defines the adapter, not a property of the machine. Fewer cores
    (``--cores 1``) only make the job slower, which is logged.
    """
    from .. import data, training

    threads = spec["threads"]
    if cores is not None and cores < threads:
        log.warning(
            "training.threads = %d but this job was given %d core(s): training on %d threads anyway, so "
            "that the adapter does not depend on --cores (slower, same weights)",
            threads,
            cores,
            threads,
        )
    set_threads(threads)
    cfg = training.TrainConfig(
        steps=spec["steps"],
        batch_size=spec["batch_size"],
        lr=spec["lr"],
        eval_every=spec["eval_every"],
        max_length=spec["max_length"],
        seed=spec["seed"],
        eval_batch_size=eval_batch_size,
        device=device,
        threads=threads,
        reduction_factor=spec["reduction_factor"],
        non_linearity=spec["non_linearity"],
        precision=spec.get("precision", "fp32"),
    )
    return training.train_adapter(
        spec["model"],
        task,
        data.read_prepared(train_path, task),
        data.read_prepared(validation_path, task),
        out_dir,
        cfg,
    )
