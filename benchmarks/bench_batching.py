#!/usr/bin/env python
"""Benchmark: evaluation batches by rows (``evaluation.batch_size``) vs by a token budget
(``evaluation.batch_tokens``), on the real packaged MiniLM with trained adapters, over the test sets
the default run scores (its prepared, capped splits). Reports examples per second and the number of
predictions that differ from the 128-row baseline (the target is 0).

    .venv/bin/python benchmarks/bench_batching.py --results results --tasks rotten_tomatoes trec snli
    .venv/bin/python benchmarks/bench_batching.py --budgets 2048 4096 8192 --repeats 3 --device cuda

Each configuration is timed ``--repeats`` times, interleaved with the others (so load changes on a
shared machine hit every configuration alike); the best time counts. Output: a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapter_pruning.data import read_prepared  # noqa: E402
from adapter_pruning.evaluation import encode, predict  # noqa: E402
from adapter_pruning.models import load_trained, resolve_device  # noqa: E402

MAX_LENGTH = {"meld": 96, "imdb": 96}  # the default config's; 64 for the others


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results", help="a default run's results folder")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--tasks", nargs="+", default=["rotten_tomatoes", "trec", "snli"])
    ap.add_argument("--rows", nargs="+", type=int, default=[128, 32], help="row batch sizes")
    ap.add_argument("--budgets", nargs="+", type=int, default=[1024, 2048, 4096, 8192], help="token budgets")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    configs = [("rows", r) for r in args.rows] + [("tokens", b) for b in args.budgets]
    print(f"device {dev}, torch {torch.__version__}, {args.threads} thread(s), best of {args.repeats}\n")
    print("| task | examples | mean tokens | batching | ex/s | vs 128 rows | predictions differing |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        root = Path(args.results)
        model, tok, _ = load_trained(args.model, root / args.model / task / "seed0" / "adapter", device=dev)
        df = read_prepared(root / "data" / task / "test.parquet", task)
        ml = MAX_LENGTH.get(task, 64)
        mean_tokens = float(np.mean([len(s) for s in encode(tok, df, ml)["input_ids"]]))
        best = {c: float("inf") for c in configs}
        preds = {}
        for _ in range(args.repeats):
            for kind, value in configs:
                kw = (
                    {"batch_size": value, "batch_tokens": None}
                    if kind == "rows"
                    else {"batch_size": 100_000, "batch_tokens": value}
                )
                t0 = time.perf_counter()
                preds[kind, value] = predict(model, tok, df, max_length=ml, device=dev, **kw)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                best[kind, value] = min(best[kind, value], time.perf_counter() - t0)
        base = best["rows", 128] if ("rows", 128) in best else None
        for kind, value in configs:
            rate = df.height / best[kind, value]
            rel = f"{base / best[kind, value]:.2f}×" if base else "–"
            diff = int((preds[kind, value] != preds[configs[0]]).sum())
            label = f"{value} rows" if kind == "rows" else f"{value} tokens"
            print(f"| {task} | {df.height} | {mean_tokens:.1f} | {label} | {rate:.0f} | {rel} | {diff} |")


if __name__ == "__main__":
    main()
