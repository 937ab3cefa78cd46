#!/usr/bin/env python
"""Benchmark: evaluation with dynamic (length-bucketed) padding vs padding to max_length, and
training seconds per step, for a trained MiniLM adapter on the rotten_tomatoes and trec test sets.

Without ``--adapter-dir TASK=DIR`` a short adapter is trained per task first (``--train-steps``,
batch 32, lr 1e-3, max_length 128); its mean training step time is the training figure.
Evaluation throughput does not depend on the adapter weights, only on the model and the inputs.

    .venv/bin/python benchmarks/bench_eval.py --threads 2
    .venv/bin/python benchmarks/bench_eval.py --adapter-dir rotten_tomatoes=results/minilm/rotten_tomatoes/seed0/adapter

Results go to stdout (a Markdown table) and, with ``--json``, to a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapter_pruning.data import load_split  # noqa: E402
from adapter_pruning.evaluation import predict  # noqa: E402
from adapter_pruning.models import load_trained, resolve_device  # noqa: E402
from adapter_pruning.training import TrainConfig, train_adapter  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--tasks", nargs="+", default=["rotten_tomatoes", "trec"])
    p.add_argument("--mirror", default=str(REPO.parent / "shared" / "data"))
    p.add_argument(
        "--adapter-dir",
        action="append",
        default=[],
        metavar="TASK=DIR",
        help="use this trained adapter for TASK instead of training a short one",
    )
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128, help="evaluation batch size")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=1, help="timed repetitions per mode (best is reported)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def timed_predict(model, tok, df, *, repeats, **kw):
    best, preds = float("inf"), None
    for _ in range(repeats):
        if kw["device"].type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        preds = predict(model, tok, df, **kw)
        if kw["device"].type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, preds


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    given = dict(item.split("=", 1) for item in args.adapter_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        for task in args.tasks:
            train_s_per_step = None
            adapter_dir = given.get(task)
            if adapter_dir is None:
                train = load_split(task, "train", mirror=args.mirror)
                val = load_split(task, "validation", mirror=args.mirror, caps=100)
                cfg = TrainConfig(
                    steps=args.train_steps,
                    eval_every=args.train_steps,
                    max_length=args.max_length,
                    threads=args.threads,
                    device=str(device),
                    progress=False,
                )
                adapter_dir = Path(tmp) / task
                metrics = train_adapter(args.model, task, train, val, adapter_dir, cfg)
                train_s_per_step = metrics["seconds_per_step"]
            model, tok, _ = load_trained(args.model, adapter_dir, device=device)
            test = load_split(task, "test", mirror=args.mirror)
            kw = dict(batch_size=args.batch_size, max_length=args.max_length, device=device)
            predict(model, tok, test.head(64), **kw)  # warm-up (allocator, kernels)
            t_dyn, p_dyn = timed_predict(model, tok, test, repeats=args.repeats, **kw)
            t_fix, p_fix = timed_predict(model, tok, test, repeats=args.repeats, dynamic_padding=False, **kw)
            encoded = tok(test["text"].to_list(), truncation=True, max_length=args.max_length)
            lengths = [len(x) for x in encoded["input_ids"]]
            rows.append(
                {
                    "task": task,
                    "n": test.height,
                    "mean_tokens": float(np.mean(lengths)),
                    "dynamic_ex_per_s": test.height / t_dyn,
                    "fixed_ex_per_s": test.height / t_fix,
                    "speedup": t_fix / t_dyn,
                    "prediction_mismatches": int((p_dyn != p_fix).sum()),
                    "accuracy": float((p_dyn == test["label"].to_numpy()).mean()),
                    "train_s_per_step": train_s_per_step,
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    env = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "max_length": args.max_length,
        "eval_batch_size": args.batch_size,
        "train_steps": args.train_steps,
    }
    print(
        f"\n{args.model}, {env['device']}, {env['threads']} threads, eval batch {args.batch_size}, "
        f"fixed padding to {args.max_length}\n"
    )
    print(
        f"| task | test rows | mean tokens | dynamic ex/s | fixed-{args.max_length} ex/s | speed-up | mismatches "
        "| train s/step (batch 32) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ts = f"{r['train_s_per_step']:.2f}" if r["train_s_per_step"] is not None else "-"
        print(
            f"| {r['task']} | {r['n']} | {r['mean_tokens']:.1f} | {r['dynamic_ex_per_s']:.0f} | "
            f"{r['fixed_ex_per_s']:.0f} | {r['speedup']:.1f}x | {r['prediction_mismatches']} | {ts} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
