#!/usr/bin/env python
"""Benchmark: fp32 vs bf16 (vs tf32 on CUDA) compute: the matmul peak of each, scoring throughput and
training step time of all-MiniLM-L6-v2 with a bottleneck adapter, per task, at 1 and 2 threads.

What it measures (docs/benchmarks.md, "bf16 compute"):

* **matmul peak**: ``F.linear`` at MiniLM's linear shapes (2048 tokens; 384 → 1536, 1536 → 384,
  384 → 384), fp32 and under ``precision.autocast("bf16")``, GFLOP/s (the best shape and timing);
* **scoring**: ``evaluation.predict_logits`` on each task's test split (capped at ``--test-rows``,
  the default run's 500) at the task's ``max_length`` (``--config``'s), token batching as the
  workflow does; examples/s, tokens/s, GFLOP/s (2 FLOP per weight of every linear layer per token, plus
  attention's ``4·layers·d·L`` per token at the batch's padded length L) and that as a share of the
  measured peak of the same precision; prediction flips of bf16 against fp32;
* **training**: the mean wall time of one training step (``training._train_step``: batch 32 at the
  task's ``max_length``, forward, backward, AdamW on adapter and head) after one warm-up step.

Modes are interleaved within each repeat and the best time is kept, so a machine that is busy with
something else biases both precisions alike. Scoring and training use an adapter trained for
``--train-steps`` (throughput does not depend on the weights); ``--random-weights`` builds MiniLM's
architecture with random weights instead of loading the packaged ones (for a machine the weights
cannot reach, e.g. the GPU check).

    .venv/bin/python benchmarks/bench_precision.py --threads 1 2 [--tasks trec rotten_tomatoes] [--json out.json]
    .venv/bin/python benchmarks/bench_precision.py --device cuda --precisions fp32 bf16 tf32
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapter_pruning import precision as P  # noqa: E402
from adapter_pruning.data import TASKS, load_split  # noqa: E402
from adapter_pruning.evaluation import encode, predict_logits  # noqa: E402
from adapter_pruning.models import build_adapter_model, load_tokenizer, resolve_device  # noqa: E402
from adapter_pruning.training import TrainConfig, _make_optimizer, _train_step, _training_batches  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--random-weights", action="store_true", help="MiniLM's architecture with random weights")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--mirror", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml", help="max_length per task")
    p.add_argument("--test-rows", type=int, default=500, help="test examples scored per task (0: all)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=P.PRECISIONS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128, help="evaluation batch size (rows)")
    p.add_argument("--train-steps", type=int, default=3, help="timed training steps per precision")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats (best kept)")
    p.add_argument("--skip", nargs="*", default=[], choices=["matmul", "scoring", "training"])
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


#: (tokens, in, out) of MiniLM's linear layers: the FFN's up and down projections, attention's Q/K/V/O
PEAK_SHAPES = ((2048, 384, 1536), (2048, 1536, 384), (2048, 384, 384))


def matmul_peak(precision: str, device, repeats: int) -> float:
    """GFLOP/s of ``F.linear`` in ``precision``: the best over MiniLM's linear shapes
    (:data:`PEAK_SHAPES`) and ``repeats + 2`` timed loops each (a loop: 200 calls on CUDA, 20 on the
    CPU, after one untimed call), so that a busy moment of the machine does not set the peak."""
    g = torch.Generator().manual_seed(0)
    n = 200 if torch.device(device).type == "cuda" else 20
    best_rate = 0.0
    for tokens, d_in, d_out in PEAK_SHAPES:
        x = torch.randn(tokens, d_in, generator=g).to(device)
        w = torch.randn(d_out, d_in, generator=g).to(device)
        with torch.inference_mode(), P.autocast(precision, device):
            torch.nn.functional.linear(x, w)
            for _ in range(repeats + 2):
                sync(device)
                t0 = time.perf_counter()
                for _ in range(n):
                    torch.nn.functional.linear(x, w)
                sync(device)
                best_rate = max(best_rate, 2 * tokens * d_in * d_out * n / (time.perf_counter() - t0) / 1e9)
    return best_rate


def model_flops_per_token(model, mean_padded_len: float) -> float:
    """2 FLOP per weight of every linear layer (encoder, adapters, head) plus attention's QKᵀ and AV."""
    n_linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.config
    return 2 * n_linear + 4 * cfg.num_hidden_layers * cfg.hidden_size * mean_padded_len


def build(args, task: str, device):
    """MiniLM (or its architecture with random weights) with a fresh adapter and head for ``task``."""
    model = build_adapter_model(args.model_path, task, TASKS[task].num_labels, seed=0)
    return model.to(device)


def scoring(args, max_length, device, tok, model, test, enc):
    lengths = np.array([len(s) for s in enc["input_ids"]])
    out = {}
    best = {prec: float("inf") for prec in args.precisions}
    logits = {}
    for prec in args.precisions:  # warm-up
        predict_logits(
            model, tok, test.head(64), batch_size=args.batch_size, max_length=max_length, device=device, precision=prec
        )
    for _ in range(args.repeats):
        for prec in args.precisions:
            sync(device)
            t0 = time.perf_counter()
            logits[prec] = predict_logits(
                model,
                tok,
                test,
                batch_size=args.batch_size,
                max_length=max_length,
                device=device,
                encodings=enc,
                precision=prec,
            )
            sync(device)
            best[prec] = min(best[prec], time.perf_counter() - t0)
    # padded tokens as evaluation batches them (sorted by length, each batch padded to its longest)
    from adapter_pruning.evaluation import batches, resolve_batch_tokens

    order = np.argsort(-lengths, kind="stable")
    padded = sum(
        len(b) * lengths[b].max()
        for b in batches(lengths, order, batch_size=args.batch_size, batch_tokens=resolve_batch_tokens("auto", device))
    )
    flops = model_flops_per_token(model, padded / len(lengths)) * padded
    for prec in args.precisions:
        out[prec] = {
            "seconds": best[prec],
            "ex_per_s": test.height / best[prec],
            "tokens_per_s": float(lengths.sum()) / best[prec],
            "gflop_per_s": flops / best[prec] / 1e9,
            "flips_vs_fp32": int((logits[prec].argmax(1) != logits["fp32"].argmax(1)).sum())
            if "fp32" in logits
            else None,
        }
    return {"n": test.height, "mean_tokens": float(lengths.mean()), "padded_tokens": int(padded), **out}


def training(args, task, max_length, device, tok):
    """Mean seconds per training step per precision (interleaved, best of repeats, one warm-up step)."""
    train = load_split(task, "train", mirror=args.mirror, caps=2000)
    out = {}
    states = {}
    for prec in args.precisions:
        cfg = TrainConfig(max_length=max_length, device=str(device), precision=prec, progress=False, seed=0)
        model = build(args, task, device)
        params = [p for p in model.parameters() if p.requires_grad]
        opt, sched = _make_optimizer(params, cfg)
        batches = _training_batches(tok, train, cfg, device)
        inputs, target = next(batches)
        _train_step(model, inputs, target, params, opt, sched, cfg, task, 0)  # warm-up
        states[prec] = (model, params, opt, sched, cfg, batches)
        out[prec] = float("inf")
    for _ in range(args.repeats):
        for prec in args.precisions:
            model, params, opt, sched, cfg, batches = states[prec]
            prepared = [next(batches) for _ in range(args.train_steps)]
            sync(device)
            t0 = time.perf_counter()
            for step, (inputs, target) in enumerate(prepared, 1):
                _train_step(model, inputs, target, params, opt, sched, cfg, task, step)
            sync(device)
            out[prec] = min(out[prec], (time.perf_counter() - t0) / args.train_steps)
    return {prec: {"s_per_step": s} for prec, s in out.items()}


def random_minilm(tmp: Path) -> str:
    """A folder with MiniLM's config and tokenizer and randomly initialised weights (seed 0)."""
    import shutil

    from transformers import AutoConfig, AutoModel

    from adapter_pruning.models import resolve_model

    src = Path(resolve_model("minilm"))
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(src)).save_pretrained(tmp)
    for f in src.iterdir():
        if f.is_file() and ("token" in f.name or f.name in ("vocab.txt", "special_tokens_map.json")):
            shutil.copy(f, tmp / f.name)
    return str(tmp)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(args.device)
    for prec in args.precisions:
        P.check_precision(prec, device, what="--precisions")
    if "fp32" not in args.precisions:
        args.precisions = ["fp32", *args.precisions]
    cfg = yaml.safe_load(args.config.read_text())
    lengths = cfg.get("max_length", {})
    import tempfile

    tmp = tempfile.TemporaryDirectory(prefix="bench-precision-")
    args.model_path = random_minilm(Path(tmp.name)) if args.random_weights else args.model
    tok = load_tokenizer(args.model_path)
    report = {
        "env": {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": P.native_bf16(device),
            "torch": torch.__version__,
            "cores": os.cpu_count(),
            "model": args.model,
            "random_weights": args.random_weights,
            "config": str(args.config),
        },
        "runs": [],
    }
    print(json.dumps(report["env"]), flush=True)
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        run = {"threads": n_threads, "peak": {}, "tasks": {}}
        if "matmul" not in args.skip:
            run["peak"] = {prec: matmul_peak(prec, device, args.repeats) for prec in args.precisions}
            print(json.dumps({"threads": n_threads, "peak_gflop_per_s": run["peak"]}), flush=True)
        for task in args.tasks:
            max_length = int(lengths.get(task, lengths.get("default", 128)))
            row = {"max_length": max_length}
            if "scoring" not in args.skip:
                model = build(args, task, device).eval()
                test = load_split(task, "test", mirror=args.mirror, caps=args.test_rows or None)
                enc = encode(tok, test, max_length)
                row["scoring"] = scoring(args, max_length, device, tok, model, test, enc)
                for prec in args.precisions:
                    if run["peak"]:
                        row["scoring"][prec]["share_of_peak"] = row["scoring"][prec]["gflop_per_s"] / run["peak"][prec]
                del model
            if "training" not in args.skip:
                row["training"] = training(args, task, max_length, device, tok)
            run["tasks"][task] = row
            print(json.dumps({"threads": n_threads, "task": task, **row}), flush=True)
        report["runs"].append(run)

    env = report["env"]
    print(
        f"\n{env['device']} ({env['device_name']}, {env['cpu_capability']}, native bf16: {env['native_bf16']}), "
        f"torch {env['torch']}\n"
    )
    others = [p for p in args.precisions if p != "fp32"]
    for run in report["runs"]:
        t = run["threads"]
        if run["peak"]:
            peaks = ", ".join(f"{p} {v:.1f}" for p, v in run["peak"].items())
            print(f"{t} thread(s): matmul peak (GFLOP/s) {peaks}\n")
        head = "| task | max_length | test rows | mean tokens | fp32 ex/s |"
        head += "".join(f" {p} ex/s | {p}/fp32 | {p} flips | {p} share of its peak |" for p in others)
        head += " fp32 train s/step |" + "".join(f" {p} train s/step | {p}/fp32 |" for p in others)
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for task, row in run["tasks"].items():
            sc, tr = row.get("scoring"), row.get("training")
            line = f"| {task} | {row['max_length']} |"
            line += f" {sc['n']} | {sc['mean_tokens']:.1f} | {sc['fp32']['ex_per_s']:.0f} |" if sc else " - | - | - |"
            for p in others:
                if sc:
                    share = sc[p].get("share_of_peak")
                    line += (
                        f" {sc[p]['ex_per_s']:.0f} | {sc[p]['ex_per_s'] / sc['fp32']['ex_per_s']:.2f}x |"
                        f" {sc[p]['flips_vs_fp32']} | {'-' if share is None else f'{100 * share:.0f} %'} |"
                    )
                else:
                    line += " - | - | - | - |"
            line += f" {tr['fp32']['s_per_step']:.3f} |" if tr else " - |"
            for p in others:
                line += (
                    f" {tr[p]['s_per_step']:.3f} | {tr['fp32']['s_per_step'] / tr[p]['s_per_step']:.2f}x |"
                    if tr
                    else " - | - |"
                )
            print(line)
        print()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
