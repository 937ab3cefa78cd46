"""Stage of rule ``train_adapter``: train one task's adapter and head."""

from __future__ import annotations

from collections.abc import Mapping

from ..models import set_threads


def train_adapter(
    task: str,
    spec: Mapping,
    train_path,
    validation_path,
    out_dir,
    *,
    device: str = "auto",
    eval_batch_size: int = 128,
    threads: int | None = None,
) -> dict:
    """Train the task's adapter (spec = the rule's canonical training params) into ``out_dir``."""
    from .. import data, training

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
    )
    return training.train_adapter(
        spec["model"],
        task,
        data.read_prepared(train_path, task),
        data.read_prepared(validation_path, task),
        out_dir,
        cfg,
    )
