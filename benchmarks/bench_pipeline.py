"""Per-job overhead of the pipeline: one task's pruned states as Snakemake jobs vs an in-process loop.

1. Runs the default workflow restricted to one task (``--config tasks=[TASK]``) in ``OUT`` (a fresh
   folder; training, solving and the full-model score happen once), with ``evaluation.mode:
   per_state``, then forces the task's ``prune`` jobs again with ``per_sweep`` (which reruns the
   pruned states' scoring as ``evaluate_sweep`` jobs).
2. Reads the wall time of every job that prunes or scores a pruned state from Snakemake's own
   benchmark files (``logs/benchmarks/{prune,evaluate}/...tsv``, column ``s``) for both modes.
3. Runs the same work in this process: prune and save every state (``stages.prune.prune_sweep`` per
   scope, as the per_sweep ``prune`` job), then load model and data once and score them all
   (``stages.evaluate.evaluate_states``), timed after imports.
4. Breaks one per-state ``evaluate`` job down in a fresh subprocess: interpreter start + imports,
   model and adapter load, the work (loading the state's tensors, scoring validation and test), and
   teardown, with and without ``joblog.exit_now``.

Prints a JSON summary: per mode (``per_state``, ``per_sweep``) the jobs, their summed wall seconds
and mean per rule, and the ratio to ``in_process_s``; then the breakdown. Usage:
``.venv/bin/python benchmarks/bench_pipeline.py [--task trec] [--out DIR] [--cores 1] [--device cuda]``
(``--out`` default: benchmarks/out/pipeline; ``--device cuda`` where a GPU is available).

``--cores 1`` (the default) runs one job at a time, each on one thread, as the in-process loop runs:
on the 2-core VM two 1-thread scoring jobs side by side each take about 1.8x as long as one alone,
which would be charged to the pipeline with ``--cores 2``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, sys, time
t_start = float(os.environ["BENCH_T0"])
t0 = time.time()
from adapter_pruning.stages.evaluate import score_splits  # torch, polars, the package
from adapter_pruning import artifacts, masks, models
models.set_threads(1)  # as the evaluate job (threads: 1) and the in-process loop
t_torch = time.time()
models.lean_transformers()
from adapters import AutoAdapterModel  # transformers' and adapters' model code
from transformers import AutoTokenizer
t_import = time.time()
a = json.loads(sys.argv[1])
model, tok, name = models.load_trained(a["model"], a["state"], device=models.resolve_device(a["device"]))
t_load = time.time()
masks.load_into_model(model, artifacts.read_adapter_layers(a["state"]))
scores = score_splits(model, tok, a["task"], a["splits"], max_length=a["max_length"], batch_size=128,
                      device=models.resolve_device(a["device"]))
t_work = time.time()
print(json.dumps({"start_to_main": t0 - t_start, "imports_torch_package": t_torch - t0,
                  "imports_transformers_adapters": t_import - t_torch, "load": t_load - t_import,
                  "work": t_work - t_load, "t_end": t_work}), flush=True)
if a["exit_now"]:
    from adapter_pruning.joblog import exit_now
    exit_now()
"""


def _snakemake(out: Path, cores: int, *args: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(out),
        "--cores",
        str(cores),
        *args,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        raise SystemExit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _job_seconds(out: Path, task: str, per_state: bool) -> dict[str, list[float]]:
    """Wall seconds of the task's jobs that prune or score a pruned state, by rule. Per state:
    ``prune``'s ``<scope>_<method>_p<p>.tsv`` and ``evaluate``'s ``<scope>/<method>/p<p>.tsv``; per
    sweep (one job per scope, every method and p): ``prune``'s and ``evaluate_sweep``'s
    ``<scope>_sweep.tsv``."""
    bench = out / "logs" / "benchmarks"
    prune = [f for f in bench.glob(f"prune/*/{task}/seed*/*.tsv") if f.stem.endswith("_sweep") != per_state]
    if per_state:
        evaluate = list(bench.glob(f"evaluate/*/{task}/seed*/*/*/p*.tsv"))
    else:
        evaluate = list(bench.glob(f"evaluate/*/{task}/seed*/*_sweep.tsv"))
    secs = {"prune": [], "evaluate": []}
    for rule, files in (("prune", prune), ("evaluate", evaluate)):
        for tsv in sorted(files):
            with open(tsv) as fh:
                secs[rule].append(float(next(csv.DictReader(fh, delimiter="\t"))["s"]))
    return secs


def _mode_summary(secs: dict[str, list[float]], in_process: float) -> dict:
    """Job counts, summed and mean wall seconds per rule, and the mode's total over ``in_process``."""
    total = sum(sum(v) for v in secs.values())
    summary = {"jobs": sum(len(v) for v in secs.values()), "job_s": round(total, 1)}
    for rule, v in secs.items():
        summary[f"{rule}_jobs"] = len(v)
        summary[f"{rule}_mean_s"] = round(sum(v) / len(v), 2) if v else None
    summary["ratio"] = round(total / in_process, 2)
    return summary


def _breakdown(args, run_dir: Path, model: str, exit_now: bool) -> dict:
    payload = {
        "model": model,
        "state": str(run_dir / "pruned/CU/tropical/p90"),
        "task": args.task,
        "max_length": args.max_length,
        "exit_now": exit_now,
        "device": args.device,
        "splits": {s: str(args.out / f"results/data/{args.task}/{s}.parquet") for s in ("validation", "test")},
    }
    t_start = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(payload)],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_T0": repr(t_start), "HF_HUB_OFFLINE": "1"},
    )
    t_exit = time.time()
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["teardown"] = t_exit - r.pop("t_end")
    r["total"] = t_exit - t_start
    r["fixed"] = r["total"] - r["work"]
    return {k: round(v, 2) for k, v in r.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="trec")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "pipeline")
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="the workflow's `device` and the in-process loop's"
    )
    ap.add_argument("--max-length", type=int, default=64, help="the task's max_length in config/config.yaml")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = ["--config", f"tasks=[{args.task}]", f"device={args.device}"]
    first = _snakemake(args.out, args.cores, *cfg, "evaluation={mode: per_state}")
    per_state = _job_seconds(args.out, args.task, per_state=True)
    run_dir = args.out / "results" / "minilm" / args.task / "seed0"
    sweep_wall = _snakemake(args.out, args.cores, *cfg, "evaluation={mode: per_sweep}", "--forcerun", "prune")
    per_sweep = _job_seconds(args.out, args.task, per_state=False)

    t_import = time.perf_counter()
    import torch

    from adapter_pruning import config as apc
    from adapter_pruning import models
    from adapter_pruning.stages.evaluate import evaluate_states
    from adapter_pruning.stages.prune import prune_sweep

    models.lean_transformers()  # transformers' and adapters' model code, imported before the clock starts
    import adapters  # noqa: F401
    import transformers.models.bert.modeling_bert  # noqa: F401

    torch.set_num_threads(1)
    import yaml

    base = yaml.safe_load(open(REPO / "config" / "config.yaml"))
    percentages = [float(p) for p in base["pruning"]["percentages"]]
    scopes = base["pruning"]["scopes"].get(args.task, base["pruning"]["scopes"]["default"])
    t0 = time.perf_counter()
    lam = apc.lambdas(apc.fill_tropical_defaults(base))
    methods = base["pruning"]["methods"]
    ids = {"model": "minilm", "task": args.task, "seed": 0, "lam": next(iter(lam.values()))}
    optimized = run_dir / "tropical/optimized.safetensors"
    dirs = []
    for scope in scopes:
        sweep = [args.out / "inproc" / scope / m / f"p{apc.fmt_p(p)}" for m in methods for p in percentages]
        prune_sweep({**ids, "scope": scope}, methods, percentages, run_dir / "adapter", optimized, sweep)
        dirs += sweep
    n_states = len(dirs)
    evaluate_states(
        {"model": "minilm", "task": args.task, "seed": 0},
        {"model": base["model"], "max_length": args.max_length},
        dirs,
        {s: args.out / f"results/data/{args.task}/{s}.parquet" for s in ("validation", "test")},
        [f"{d}.parquet" for d in dirs],
        [f"{d}.predictions.parquet" for d in dirs],
        device=args.device,
    )
    in_process = time.perf_counter() - t0
    summary = {
        "task": args.task,
        "device": args.device,
        "states": n_states,
        "machine_load_1min": os.getloadavg()[0],
        "first_run_wall_s": round(first, 1),
        "sweep_run_wall_s": round(sweep_wall, 1),
        "in_process_s": round(in_process, 1),
        "in_process_per_state_s": round(in_process / n_states, 2),
        "in_process_imports_s": round(t0 - t_import, 1),
        "per_state": _mode_summary(per_state, in_process),
        "per_sweep": _mode_summary(per_sweep, in_process),
        "breakdown_without_exit_now": _breakdown(args, run_dir, base["model"], False),
        "breakdown_with_exit_now": _breakdown(args, run_dir, base["model"], True),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
