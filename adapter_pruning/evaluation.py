"""Metrics and fast batched prediction.

Prediction sorts the examples by tokenized length and pads each batch only to its own longest
sequence ("dynamic padding"), then restores the original order. Padded positions are masked out
of attention, so the predictions equal those of padding everything to ``max_length``
(``dynamic_padding=False``, kept for the benchmark and as a reference) at a fraction of the cost.

Macro-F1 is the unweighted mean of the per-class F1 over **all** ``num_labels`` classes; a class
with no true and no predicted example counts as F1 = 0. This is scikit-learn's
``f1_score(labels, preds, average="macro", labels=range(num_labels), zero_division=0)``. (The
scikit-learn default would average only over the classes present, which changes the number when a
small or capped split misses a class.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from .precision import autocast

__all__ = [
    "compute_metrics",
    "encode",
    "collate",
    "CPU_BATCH_TOKENS",
    "batches",
    "resolve_batch_tokens",
    "predict",
    "predict_logits",
    "evaluate",
]

log = logging.getLogger(__name__)

#: Token budget of an evaluation batch on the CPU (``batch_tokens="auto"``): the fastest of the
#: budgets measured by ``benchmarks/bench_batching.py`` (docs/benchmarks.md), 1.14-1.46x faster
#: than 128-row batches on the default run's test sets with identical predictions. On CUDA "auto"
#: keeps ``batch_size`` rows, which large batches suit.
CPU_BATCH_TOKENS = 1024


def resolve_batch_tokens(batch_tokens: int | str | None, device) -> int | None:
    """The token budget to use: ``"auto"`` -> :data:`CPU_BATCH_TOKENS` on the CPU, None (row
    batches) elsewhere; an int or None as given."""
    if batch_tokens == "auto":
        return CPU_BATCH_TOKENS if torch.device(device).type == "cpu" else None
    if batch_tokens is not None and (isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int)):
        raise ValueError(f"batch_tokens must be 'auto', None or a positive integer, got {batch_tokens!r}")
    return batch_tokens


def compute_metrics(preds, labels, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (over all ``num_labels`` classes, zero_division=0)."""
    preds = np.asarray(preds)
    labels = np.asarray(labels)
    if preds.shape != labels.shape or preds.ndim != 1:
        raise ValueError(f"preds and labels must be 1-D of equal length, got shapes {preds.shape} and {labels.shape}")
    if preds.size == 0:
        raise ValueError("cannot compute metrics on zero examples")
    for name, arr in (("preds", preds), ("labels", labels)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be integer class indices, got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= num_labels:
            raise ValueError(f"{name} contain values outside 0..{num_labels - 1}")
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    tp = np.diag(confusion).astype(float)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"accuracy": float(tp.sum() / preds.size), "macro_f1": float(f1.mean())}


def _columns(df: pl.DataFrame) -> tuple[list[str], list[str] | None]:
    missing = [c for c in ("text", "text_pair") if c not in df.columns]
    if missing:
        raise ValueError(f"data frame lacks column(s) {missing}; expected the normalised schema (data.load_split)")
    texts = df["text"].to_list()
    n_pair = df.height - df["text_pair"].null_count()
    if n_pair == 0:
        return texts, None
    if n_pair != df.height:
        raise ValueError(f"text_pair is set for {n_pair} of {df.height} rows; it must be set for all or none")
    return texts, df["text_pair"].to_list()


def encode(tokenizer, df: pl.DataFrame, max_length: int) -> dict[str, list[list[int]]]:
    """Tokenize ``text`` (and ``text_pair`` when set) without padding, truncated to ``max_length``.

    Pairs are truncated longest-first, so for MELD the oldest context utterances go first.
    """
    texts, pairs = _columns(df)
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
    return {k: enc[k] for k in tokenizer.model_input_names if k in enc}


def collate(
    encodings: Mapping[str, Sequence[Sequence[int]]],
    idx,
    pad_id: int,
    *,
    pad_to: int | None = None,
    padding_side: str = "right",
) -> dict[str, torch.Tensor]:
    """Pad the rows ``idx`` of ``encodings`` to their longest length (or ``pad_to``) as tensors."""
    idx = list(idx)
    lengths = [len(encodings["input_ids"][i]) for i in idx]
    width = pad_to if pad_to is not None else max(lengths)
    batch = {}
    for key, rows in encodings.items():
        fill = pad_id if key == "input_ids" else 0
        arr = np.full((len(idx), width), fill, dtype=np.int64)
        for r, i in enumerate(idx):
            seq = rows[i]
            if padding_side == "left":
                arr[r, width - len(seq) :] = seq
            else:
                arr[r, : len(seq)] = seq
        batch[key] = torch.from_numpy(arr)
    return batch


def batches(lengths: np.ndarray, order: np.ndarray, *, batch_size: int, batch_tokens: int | None = None) -> list:
    """Split ``order`` (row indices, longest row first) into consecutive batches.

    Without ``batch_tokens``: ``batch_size`` rows each. With it: each batch takes rows while
    ``rows × longest length in the batch ≤ batch_tokens`` (the padded size of the batch; as
    ``order`` is longest-first, the longest is the batch's first row) and ``rows ≤ batch_size``,
    and at least one row. Returns a list of index arrays covering ``order`` once, in order."""
    if batch_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    out, start, n = [], 0, len(order)
    while start < n:
        longest = max(int(lengths[order[start]]), 1)
        rows = max(1, min(batch_size, batch_tokens // longest, n - start))
        out.append(order[start : start + rows])
        start += rows
    return out


def predict_logits(
    model,
    tokenizer,
    df: pl.DataFrame,
    *,
    batch_size: int = 128,
    max_length: int = 128,
    device: str | torch.device = "cpu",
    dynamic_padding: bool = True,
    batch_tokens: int | str | None = "auto",
    encodings: Mapping[str, Sequence[Sequence[int]]] | None = None,
    progress: bool = False,
    precision: str = "fp32",
) -> np.ndarray:
    """Logits ``(len(df), num_labels)`` (float32) in the original row order.

    Rows are sorted longest first and padded per batch (``dynamic_padding``); batches hold
    ``batch_size`` rows, or with a token budget at most that many padded tokens (and at most
    ``batch_size`` rows; :func:`batches`). ``batch_tokens``: ``"auto"`` (default;
    :func:`resolve_batch_tokens`), None (rows only) or a budget. ``encodings``: ``encode(tokenizer,
    df, max_length)`` computed beforehand, so that scoring several adapter states (or validating
    during training) on the same rows tokenizes them once; None tokenizes ``df`` here. The result is
    the same either way. ``precision``: the forward passes' precision
    (:func:`adapter_pruning.precision.autocast`: ``fp32``, ``bf16``, ``tf32`` on CUDA); the logits are
    returned as float32 whatever it is."""
    if batch_size < 1 or max_length < 2:
        raise ValueError(f"batch_size must be >= 1 and max_length >= 2, got {batch_size}, {max_length}")
    if df.height == 0:
        raise ValueError("cannot predict on an empty data frame")
    enc = encode(tokenizer, df, max_length) if encodings is None else encodings
    n = df.height
    if len(enc["input_ids"]) != n:
        raise ValueError(f"encodings hold {len(enc['input_ids'])} rows but the data frame has {n}")
    lengths = np.fromiter((len(s) for s in enc["input_ids"]), dtype=np.int64, count=n)
    if lengths.max() > max_length:
        raise ValueError(f"encodings hold rows of {lengths.max()} tokens, more than max_length {max_length}")
    if dynamic_padding:
        order = np.argsort(-lengths, kind="stable")  # longest first: the peak memory shows up at once
        pad_to = None
    else:
        order = np.arange(n)
        pad_to = max_length
        lengths = np.full(n, max_length, dtype=np.int64)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = None
    budget = resolve_batch_tokens(batch_tokens, device) if dynamic_padding else None
    todo = batches(lengths, order, batch_size=batch_size, batch_tokens=budget)
    if progress:
        from tqdm.auto import tqdm

        todo = tqdm(todo, desc="predict", unit="batch", leave=False)
    try:
        with torch.inference_mode(), autocast(precision, device):
            for idx in todo:
                batch = collate(enc, idx, pad_id, pad_to=pad_to, padding_side=tokenizer.padding_side)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                logits = model(**batch).logits.float().cpu().numpy()
                if out is None:
                    out = np.empty((n, logits.shape[1]), dtype=np.float32)
                out[idx] = logits
    finally:
        model.train(was_training)
    return out


def predict(
    model,
    tokenizer,
    df: pl.DataFrame,
    *,
    batch_size: int = 128,
    max_length: int = 128,
    device: str | torch.device = "cpu",
    dynamic_padding: bool = True,
    batch_tokens: int | str | None = "auto",
    encodings: Mapping[str, Sequence[Sequence[int]]] | None = None,
    progress: bool = False,
    precision: str = "fp32",
) -> np.ndarray:
    """Predicted class indices (int64) for every row of ``df``, in the original order (arguments
    as :func:`predict_logits`)."""
    logits = predict_logits(
        model,
        tokenizer,
        df,
        batch_size=batch_size,
        max_length=max_length,
        device=device,
        dynamic_padding=dynamic_padding,
        batch_tokens=batch_tokens,
        encodings=encodings,
        progress=progress,
        precision=precision,
    )
    return logits.argmax(axis=1).astype(np.int64)


def evaluate(model, tokenizer, df: pl.DataFrame, task: str, **kw: Any) -> dict[str, float]:
    """``compute_metrics`` of :func:`predict` on ``df`` (keywords go to :func:`predict`)."""
    from .data import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
    if "label" not in df.columns:
        raise ValueError("data frame lacks column 'label'")
    t0 = time.perf_counter()
    preds = predict(model, tokenizer, df, **kw)
    scores = compute_metrics(preds, df["label"].to_numpy(), TASKS[task].num_labels)
    log.debug("evaluated %d %s examples in %.1f s: %s", df.height, task, time.perf_counter() - t0, scores)
    return scores
