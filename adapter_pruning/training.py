"""Adapter training with best-checkpoint selection (paper section 4).

The paper trains each task adapter with batch size 32, learning rate 1e-3 for 1000 steps and
evaluates on the development set every 100 steps, keeping the best checkpoint. Here:

* optimiser AdamW (lr 1e-3, weight decay 0 by default), constant learning rate after an optional
  linear warm-up (none by default), gradient-norm clipping at 1.0; cross-entropy loss;
* the backbone is frozen, the adapter and the classification head (both named after the task)
  are trained;
* batches are drawn from a seeded stream of permutations of the training rows (an epoch boundary
  does not shorten a batch), padded to the batch's longest sequence;
* validation every ``eval_every`` steps and after the last step; the task metric (``macro_f1`` for
  MELD, ``accuracy`` otherwise) picks the best step, the earliest one on ties;
* the best adapter + head are saved in AdapterHub format with safetensors, together with
  ``metrics.json``, into ``out_dir`` atomically (a crash leaves no partial directory).

Everything random (adapter/head initialisation, dropout, data order) follows ``cfg.seed``: two runs
with the same configuration on the same machine and thread count give identical weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from . import io, precision
from .data import TASKS, DataError, TaskSpec, validate_prepared
from .devices import describe
from .evaluation import collate, encode, evaluate
from .models import ADAPTER_FILES, build_adapter_model, load_tokenizer, resolve_device, resolve_model

__all__ = ["TrainConfig", "train_adapter", "METRICS_FILE"]

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_adapter` (defaults = the paper's setting)."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    eval_every: int = 100
    max_length: int = 128
    seed: int = 0
    eval_batch_size: int = 128
    device: str = "auto"
    threads: int | None = None  # torch.set_num_threads; None leaves torch's default
    reduction_factor: int = 16
    non_linearity: str = "relu"
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    precision: str = "fp32"  # adapter_pruning.precision: fp32 | bf16 | tf32 (CUDA); training and its validations
    progress: bool = True  # tqdm bar on stderr

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "eval_every", "eval_batch_size", "reduction_factor")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.max_length, int) or self.max_length < 8:
            raise ValueError(f"TrainConfig.max_length must be an integer >= 8, got {self.max_length!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"TrainConfig.threads must be a positive integer or None, got {self.threads!r}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("TrainConfig.warmup_steps and weight_decay must be >= 0")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"TrainConfig.max_grad_norm must be positive or None, got {self.max_grad_norm!r}")
        if self.precision not in precision.PRECISIONS:
            raise ValueError(
                f"TrainConfig.precision must be one of {list(precision.PRECISIONS)}, got {self.precision!r}"
            )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _batch_stream(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless batches of row indices from consecutive seeded permutations of ``range(n)``."""
    rng = np.random.default_rng(seed)
    buffer = np.empty(0, dtype=np.int64)
    while True:
        while buffer.size < batch_size:
            buffer = np.concatenate([buffer, rng.permutation(n)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def _trainable_state(model) -> dict[str, torch.Tensor]:
    """A detached copy of every trainable tensor of ``model`` (adapter and head), by parameter name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@dataclass
class _BestCheckpoint:
    """The validation step with the highest task metric so far (the earliest on ties) and a copy of
    its trainable tensors."""

    metric: str
    score: float = -math.inf
    step: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None

    def offer(self, model, step: int, scores: dict[str, float]) -> bool:
        """Keep ``model``'s trainable tensors if ``scores`` beat the best so far; return whether they did."""
        if not scores[self.metric] > self.score:
            return False
        self.score, self.step, self.scores = scores[self.metric], step, scores
        self.state = _trainable_state(model)
        return True

    def restore(self, model) -> None:
        """Copy the kept tensors back into ``model`` (only trainable tensors change during training)."""
        with torch.no_grad():
            named = dict(model.named_parameters())
            for name, value in self.state.items():
                named[name].copy_(value)


@dataclass
class _History:
    """What the training loop records: per-step loss, validation scores and wall times."""

    loss_curve: list[float] = field(default_factory=list)
    val_curve: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0


def _check_inputs(task: str, train_df: pl.DataFrame, val_df: pl.DataFrame) -> TaskSpec:
    """Validate the task name and both tables before anything is built; return the task's registry entry."""
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
    validate_prepared(train_df, "train_df", task)
    validate_prepared(val_df, "val_df", task)
    if train_df.height == 0 or val_df.height == 0:
        raise DataError(f"train_df ({train_df.height} rows) and val_df ({val_df.height} rows) must not be empty")
    return TASKS[task]


def _build_model(model_name: str, task_spec: TaskSpec, cfg: TrainConfig, device: torch.device):
    """Seed every RNG, then build the backbone with a fresh adapter + head named after the task on
    ``device``; return ``(model, tokenizer)``."""
    _seed_everything(cfg.seed)
    model = build_adapter_model(
        model_name,
        task_spec.name,
        task_spec.num_labels,
        reduction_factor=cfg.reduction_factor,
        non_linearity=cfg.non_linearity,
        seed=cfg.seed,
        label_names=task_spec.label_names,
    )
    tokenizer = load_tokenizer(model_name)
    model.to(device)
    return model, tokenizer


def _make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig):
    """AdamW over ``params`` with a linear warm-up over ``cfg.warmup_steps`` steps, then a constant rate;
    return ``(optimizer, scheduler)``."""
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    )
    return optimizer, scheduler


def _training_batches(
    tokenizer, train_df: pl.DataFrame, cfg: TrainConfig, device: torch.device
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Endless ``(model inputs, target labels)`` batches on ``device``: rows drawn by :func:`_batch_stream`,
    tokenized and padded to the batch's longest sequence."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    labels = train_df["label"].to_numpy()
    for rows in _batch_stream(train_df.height, cfg.batch_size, cfg.seed):
        inputs = collate(
            encode(tokenizer, train_df[rows], cfg.max_length),
            range(len(rows)),
            pad_id,
            padding_side=tokenizer.padding_side,
        )
        yield {k: v.to(device) for k, v in inputs.items()}, torch.as_tensor(labels[rows], device=device)


def _train_step(
    model,
    inputs: dict[str, torch.Tensor],
    target: torch.Tensor,
    params: list[torch.nn.Parameter],
    optimizer,
    scheduler,
    cfg: TrainConfig,
    task: str,
    step: int,
) -> float:
    """One optimisation step on one batch (cross-entropy, optional gradient clipping); return its loss.
    The forward pass and the loss run in ``cfg.precision`` (:func:`adapter_pruning.precision.autocast`),
    the backward pass outside autocast with the same float32 matmul setting; parameters, gradients
    and the optimizer state stay float32."""
    model.train()
    device = target.device
    with precision.autocast(cfg.precision, device):
        logits = model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
    if not torch.isfinite(loss):
        raise RuntimeError(f"training {task} adapter: loss became {loss.item()} at step {step}; lower lr")
    with precision.float32_matmul(cfg.precision):
        loss.backward()
    if cfg.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.item())


def _validate(
    model, tokenizer, val_df: pl.DataFrame, val_encodings, task: str, cfg: TrainConfig, device: torch.device
) -> tuple[dict[str, float], float]:
    """Score ``model`` on the validation table (tokenized beforehand: ``val_encodings``); return
    ``(scores, wall seconds)``."""
    t0 = time.perf_counter()
    scores = evaluate(
        model,
        tokenizer,
        val_df,
        task,
        batch_size=cfg.eval_batch_size,
        max_length=cfg.max_length,
        device=device,
        encodings=val_encodings,
        precision=cfg.precision,
    )
    return scores, time.perf_counter() - t0


def _train_loop(
    model,
    tokenizer,
    task_spec: TaskSpec,
    train_df: pl.DataFrame,
    val_df: pl.DataFrame,
    cfg: TrainConfig,
    device: torch.device,
) -> tuple[_History, _BestCheckpoint]:
    """Run ``cfg.steps`` training steps, validating every ``cfg.eval_every`` steps and after the last
    one; return the recorded history and the best validation step with its weights."""
    from tqdm.auto import tqdm

    task = task_spec.name
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = _make_optimizer(params, cfg)
    batches = _training_batches(tokenizer, train_df, cfg, device)
    val_encodings = encode(tokenizer, val_df, cfg.max_length)  # once, not at every validation
    history = _History()
    best = _BestCheckpoint(task_spec.metric)
    bar = tqdm(range(1, cfg.steps + 1), desc=f"train {task}", unit="step", disable=not cfg.progress, mininterval=5.0)
    for step in bar:
        t0 = time.perf_counter()
        inputs, target = next(batches)
        history.loss_curve.append(_train_step(model, inputs, target, params, optimizer, scheduler, cfg, task, step))
        history.train_seconds += time.perf_counter() - t0
        bar.set_postfix(loss=f"{history.loss_curve[-1]:.3f}", refresh=False)

        if step % cfg.eval_every == 0 or step == cfg.steps:
            scores, seconds = _validate(model, tokenizer, val_df, val_encodings, task, cfg, device)
            history.eval_seconds += seconds
            history.val_curve.append({"step": step, **scores, "seconds": seconds})
            improved = best.offer(model, step, scores)
            recent = float(np.mean(history.loss_curve[-cfg.eval_every :]))
            log.info(
                "%s step %d/%d: train loss %.4f (mean of last %d), validation %s %.4f%s (best %.4f at step %d)",
                task,
                step,
                cfg.steps,
                recent,
                min(cfg.eval_every, len(history.loss_curve)),
                task_spec.metric,
                scores[task_spec.metric],
                " *" if improved else "",
                best.score,
                best.step,
            )
    bar.close()
    return history, best


def _save_best(model, task: str, metrics: dict[str, Any], out_dir: Path) -> None:
    """Write the adapter + head (AdapterHub format, safetensors) and ``metrics.json`` into ``out_dir``
    atomically: a crash leaves any previous ``out_dir`` untouched."""
    import adapters

    with io.atomic_dir(out_dir) as tmp:
        model.save_adapter(str(tmp), task, with_head=True, use_safetensors=True)
        missing = [f for f in ADAPTER_FILES if not (tmp / f).is_file()]
        if missing:
            raise RuntimeError(f"save_adapter did not write {missing} (adapters {adapters.__version__})")
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def train_adapter(
    model_name: str,
    task: str,
    train_df: pl.DataFrame,
    val_df: pl.DataFrame,
    out_dir: str | os.PathLike,
    cfg: TrainConfig | None = None,
) -> dict[str, Any]:
    """Train an adapter + head for ``task`` on ``train_df``, select the best step on ``val_df`` and
    save it to ``out_dir`` (AdapterHub files + ``metrics.json``). Returns the metrics dict.

    ``metrics.json`` keys: ``task, model, model_path, adapter_name, metric, best_step, best_score,
    best_scores`` (all metrics at the best step), ``loss_curve`` (training loss of step i+1 at
    index i), ``val_curve`` (list of ``{step, accuracy, macro_f1, seconds}``), ``seconds_per_step``
    (mean wall time of a training step, validation excluded), ``eval_seconds``, ``total_seconds``,
    ``n_train, n_val, num_trainable_params, device`` (``cpu`` or ``cuda``), ``device_name`` (the GPU's or
    CPU's model, :func:`adapter_pruning.devices.describe`), ``threads, precision, config, versions``.
    """
    cfg = cfg or TrainConfig()
    task_spec = _check_inputs(task, train_df, val_df)
    out_dir = Path(out_dir)
    model_path = resolve_model(model_name)
    device = resolve_device(cfg.device)
    precision.check_precision(cfg.precision, device, what="training precision")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)

    t_start = time.perf_counter()
    model, tokenizer = _build_model(model_name, task_spec, cfg, device)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "training %s adapter on %s: %d train / %d validation rows, %d steps of %d, lr %g, %d trainable "
        "parameters, device %s, %d threads, precision %s",
        task,
        model_name,
        train_df.height,
        val_df.height,
        cfg.steps,
        cfg.batch_size,
        cfg.lr,
        n_trainable,
        device,
        torch.get_num_threads(),
        cfg.precision,
    )
    history, best = _train_loop(model, tokenizer, task_spec, train_df, val_df, cfg, device)
    best.restore(model)

    import adapters
    import transformers

    metrics = {
        "task": task,
        "model": model_name,
        "model_path": model_path,
        "adapter_name": task,
        "metric": task_spec.metric,
        "best_step": best.step,
        "best_score": best.score,
        "best_scores": best.scores,
        "loss_curve": history.loss_curve,
        "val_curve": history.val_curve,
        "seconds_per_step": history.train_seconds / cfg.steps,
        "eval_seconds": history.eval_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "n_train": train_df.height,
        "n_val": val_df.height,
        "num_trainable_params": n_trainable,
        **describe(device),
        "threads": torch.get_num_threads(),
        "precision": cfg.precision,
        "config": dataclasses.asdict(cfg),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "adapters": adapters.__version__,
        },
    }
    _save_best(model, task, metrics, out_dir)
    log.info(
        "%s: saved best adapter (step %d, %s %.4f) to %s in %.0f s",
        task,
        best.step,
        task_spec.metric,
        best.score,
        out_dir,
        metrics["total_seconds"],
    )
    return metrics
