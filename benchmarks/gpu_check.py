"""The Python steps of ``benchmarks/gpu_check.sh`` (docs/benchmarks.md, "The GPU check").

    python benchmarks/gpu_check.py install    --bundle .gpu_bundle --site /tmp/site
    python benchmarks/gpu_check.py env        --out env.json
    python benchmarks/gpu_check.py workflow   RUN_DIR --model TINY_DIR --data MIRROR [--device cuda]
    python benchmarks/gpu_check.py compare    RUN1 RUN2 --out compare.json
    python benchmarks/gpu_check.py throughput --data MIRROR [--device cuda] [--quick] --out throughput.json
    python benchmarks/gpu_check.py report     --work WORK_DIR --out OUT_DIR

``throughput`` times MiniLM's architecture (all-MiniLM-L6-v2's config.json: BERT, 6 layers, hidden 384,
with a reduction-16 adapter and a head, as the workflow trains and scores it) with random weights: the
time of a forward or backward pass does not depend on the weights' values, and the real weights (90 MB)
do not fit the machine's transfer limit. For each precision (fp32, bf16, and tf32 on CUDA;
``adapter_pruning.precision``): scoring with the workflow's ``evaluation.predict_logits`` (rows of
rotten_tomatoes' validation and test splits, max length 64, batches of 128 rows) and on full 512-token
batches (the paper's IMDB length), in examples/s and tokens/s (non-padding tokens); training steps of
the workflow's ``training._train_step`` (batch 32, max length 64, the rows of rotten_tomatoes' training
split) in s/step, examples/s and tokens/s; and for fp32 the training step with PyTorch's deterministic
algorithms off, to state what the workflow's deterministic setting costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "workflow_tests"))

PACKAGES = ("torch", "transformers", "tokenizers", "huggingface-hub", "adapters", "polars", "snakemake", "numpy")


def install(bundle: Path, site: Path, python: str = sys.executable) -> None:
    """Install the bundle (benchmarks/gpu_bundle.py) into ``site`` as ``pip install --target`` does: the
    wheels with ``pip install --no-index --no-deps --target``, the ``.tar.xz`` (unpacked wheels) with
    ``tarfile`` (lzma is in the standard library; an xz binary may be missing)."""
    import tarfile

    wheels = sorted(str(p) for p in (bundle / "wheels").glob("*.whl"))
    pip = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]
    subprocess.run([*pip, "--upgrade", "--target", str(site), *wheels], check=True)
    for txz in sorted((bundle / "xz").glob("*.tar.xz")):
        with tarfile.open(txz) as tar:
            tar.extractall(site, filter="data")


def cmd_install(args) -> dict:
    t0 = time.perf_counter()
    install(Path(args.bundle), Path(args.site))
    return {"site": args.site, "seconds": round(time.perf_counter() - t0, 1)}


def cmd_env(args) -> dict:
    import importlib.metadata as md

    import torch

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {},
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    for name in PACKAGES:
        try:
            info["packages"][name] = md.version(name)
        except md.PackageNotFoundError:
            info["packages"][name] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": p.name,
            "memory_gib": round(p.total_memory / 2**30, 1),
            "capability": f"{p.major}.{p.minor}",
            "count": torch.cuda.device_count(),
            "bf16": torch.cuda.is_bf16_supported(),
        }
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            info["gpu"]["driver"] = smi.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    else:
        from adapter_pruning.devices import cpu_name, cuda_problem

        info["cpu"] = cpu_name()
        info["cuda_problem"] = cuda_problem()
    return info


def cmd_workflow(args) -> dict:
    """Run the tiny GPU workflow (workflow_tests/helpers.py: gpu_config) into ``args.run``."""
    from helpers import gpu_config, run_snakemake, write_config

    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    cfg = write_config(run / "config.yaml", gpu_config(Path(args.model), Path(args.data), device=args.device))
    t0 = time.perf_counter()
    proc = run_snakemake(
        run, cfg, "--cores", "8", "--resources", "gpu=8", "--scheduler", "greedy", timeout=args.timeout, check=False
    )
    seconds = time.perf_counter() - t0
    (run / "snakemake.log").write_text(proc.stdout + proc.stderr)
    return {"returncode": proc.returncode, "seconds": round(seconds, 1)}


def _files(run: Path) -> dict[str, Path]:
    results = run / "results"
    pats = ("**/*.safetensors", "**/predictions/**/*.parquet", "**/scores/**/*.parquet", "summary/results.parquet")
    return {str(p.relative_to(results)): p for pat in pats for p in sorted(results.glob(pat))}


def cmd_compare(args) -> dict:
    """Byte-compare what two runs of the same workflow wrote: every safetensors file (trained, optimized,
    pruned adapters, calibration norms), every score and prediction file, and results.parquet."""
    a, b = _files(Path(args.run1)), _files(Path(args.run2))
    differing = sorted(k for k in a.keys() & b.keys() if a[k].read_bytes() != b[k].read_bytes())
    out = {
        "files": len(a),
        "only_in_one": sorted(a.keys() ^ b.keys()),
        "differing": differing,
        "safetensors": sum(k.endswith(".safetensors") for k in a),
        "identical": bool(a) and a.keys() == b.keys() and not differing,
    }
    try:
        import polars as pl

        ra = pl.read_parquet(Path(args.run1) / "results" / "summary" / "results.parquet")
        rb = pl.read_parquet(Path(args.run2) / "results" / "summary" / "results.parquet")
        out["results_rows"] = ra.height
        out["results_equal"] = ra.equals(rb)
        out["devices"] = ra.select("device", "device_name").unique().rows()
    except Exception as exc:  # noqa: BLE001 - recorded in the report
        out["results_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, *, min_seconds: float, max_reps: int) -> tuple[float, int]:
    """Seconds per call of ``fn`` (after one warm-up call): repeated until ``min_seconds`` or ``max_reps``."""
    fn()
    _sync(device)
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        _sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds or reps >= max_reps:
            return elapsed / reps, reps


def cmd_throughput(args) -> dict:
    import polars as pl
    import torch

    from adapter_pruning import data, devices, evaluation, models
    from adapter_pruning.precision import PRECISIONS, autocast, check_precision
    from adapter_pruning.testing import make_random_minilm, minilm_files

    torch.manual_seed(0)
    dev = devices.resolve(args.device)
    quick = args.quick
    min_s, reps = (0.2, 2) if quick else (2.0, 50)
    work = Path(args.work)
    model_dir = work / "minilm-random"
    if not (model_dir / "config.json").is_file():
        make_random_minilm(model_dir)
    out = {
        "model": "all-MiniLM-L6-v2 architecture, random weights",
        "config": str(minilm_files() / "config.json"),
        "device": devices.describe(dev),
        "quick": quick,
        "runs": [],
    }
    caps = {"train": 512, "validation": 64, "test": 64} if quick else None
    splits = {
        s: data.load_split("rotten_tomatoes", s, mirror=args.data, caps=caps) for s in ("train", "validation", "test")
    }
    score_df = pl.concat([splits["validation"], splits["test"]])
    model = models.build_adapter_model(str(model_dir), "rotten_tomatoes", 2, seed=0).to(dev)
    tok = models.load_tokenizer(str(model_dir))
    enc = evaluation.encode(tok, score_df, 64)
    n_tokens = sum(len(s) for s in enc["input_ids"])
    precisions = [p for p in PRECISIONS if p != "tf32" or dev.type == "cuda"]
    vocab = model.config.vocab_size
    long_batch = 16 if quick else 64
    long_ids = torch.randint(1000, vocab, (long_batch, 512), generator=torch.Generator().manual_seed(0)).to(dev)
    long_mask = torch.ones_like(long_ids)
    for prec in precisions:
        try:
            check_precision(prec, dev)
        except ValueError as exc:
            out["runs"].append({"precision": prec, "skipped": str(exc)})
            continue
        run = {"precision": prec}

        def score():
            evaluation.predict_logits(
                model, tok, score_df, batch_size=128, max_length=64, device=dev, batch_tokens=None,
                encodings=enc, precision=prec,
            )  # fmt: skip

        sec, n = _timed(score, dev, min_seconds=min_s, max_reps=reps)
        run["score_len64"] = {
            "examples": score_df.height,
            "seconds": round(sec, 4),
            "examples_per_s": round(score_df.height / sec, 1),
            "tokens_per_s": round(n_tokens / sec, 1),
            "reps": n,
        }

        model.eval()

        def score_long():
            with torch.inference_mode(), autocast(prec, dev):
                model(input_ids=long_ids, attention_mask=long_mask).logits.float().cpu()

        sec, n = _timed(score_long, dev, min_seconds=min_s, max_reps=reps)
        run["score_len512"] = {
            "batch": long_batch,
            "examples_per_s": round(long_batch / sec, 1),
            "tokens_per_s": round(long_batch * 512 / sec, 1),
            "reps": n,
        }
        run["train_len64"] = _train_throughput(model_dir, splits["train"], dev, prec, quick=quick)
        if prec == "fp32" and dev.type == "cuda":
            torch.use_deterministic_algorithms(False)
            torch.backends.cudnn.deterministic = False
            try:
                run["train_len64_nondeterministic"] = _train_throughput(
                    model_dir, splits["train"], dev, prec, quick=quick
                )
            finally:
                devices.set_deterministic()
        out["runs"].append(run)
        print(json.dumps(run), flush=True)
    return out


def _train_throughput(model_dir: Path, train_df, dev, prec: str, *, quick: bool) -> dict:
    """Seconds per training step (batch 32, max length 64) of the workflow's training step, on batches
    tokenized beforehand; loss.item() each step synchronises as in the workflow."""
    from adapter_pruning import models, training

    cfg = training.TrainConfig(steps=10**6, batch_size=32, max_length=64, device=str(dev), precision=prec)
    model = models.build_adapter_model(str(model_dir), "rotten_tomatoes", 2, seed=0).to(dev)
    tok = models.load_tokenizer(str(model_dir))
    n_steps, warm = (3, 1) if quick else (40, 5)
    stream = training._training_batches(tok, train_df, cfg, dev)
    batches = [next(stream) for _ in range(n_steps + warm)]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = training._make_optimizer(params, cfg)
    for i, (inputs, target) in enumerate(batches[:warm]):
        training._train_step(model, inputs, target, params, optimizer, scheduler, cfg, "rotten_tomatoes", i)
    _sync(dev)
    t0 = time.perf_counter()
    tokens = 0
    for i, (inputs, target) in enumerate(batches[warm:]):
        training._train_step(model, inputs, target, params, optimizer, scheduler, cfg, "rotten_tomatoes", i)
        tokens += int(inputs["attention_mask"].sum())
    _sync(dev)
    sec = (time.perf_counter() - t0) / n_steps
    return {
        "steps": n_steps,
        "s_per_step": round(sec, 5),
        "examples_per_s": round(32 / sec, 1),
        "tokens_per_s": round(tokens / n_steps / sec, 1),
    }


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cmd_report(args) -> dict:
    """Collect the step results in ``--work`` into ``gpu_check.json`` and ``gpu_check.md`` in ``--out``."""
    work, out_dir = Path(args.work), Path(args.out)
    steps = []
    if (work / "steps.tsv").is_file():
        for line in (work / "steps.tsv").read_text().splitlines():
            name, rc, seconds, *note = line.split("\t")
            steps.append({"step": name, "returncode": int(rc), "seconds": float(seconds), "note": " ".join(note)})
    report = {
        "steps": steps,
        "env": _read(work / "env.json"),
        "pytest": _pytest_summary(work / "pytest.xml"),
        "workflow": {name: _read(work / f"{name}.json") for name in ("run1", "run2")},
        "compare": _read(work / "compare.json"),
        "throughput": _read(work / "throughput.json"),
    }
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out_dir / "gpu_check.md").write_text(_markdown(report))
    return report


def _pytest_summary(xml: Path) -> dict | None:
    if not xml.is_file():
        return None
    import xml.etree.ElementTree as ET

    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    out = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    out["seconds"] = float(suite.get("time", 0))
    out["not_passed"] = [
        f"{case.get('name')}: {child.tag}"
        for case in suite.iter("testcase")
        for child in case
        if child.tag in ("failure", "error", "skipped")
    ]
    return out


def _markdown(r: dict) -> str:
    env = r.get("env") or {}
    gpu = env.get("gpu") or {}
    lines = ["# GPU check", ""]
    lines.append(
        f"Machine: {gpu.get('name') or env.get('cpu', '?')}"
        + (
            f" ({gpu.get('memory_gib')} GiB, capability {gpu.get('capability')}, driver {gpu.get('driver')})"
            if gpu
            else ""
        )
        + f"; Python {env.get('python')}; "
        + ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
    )
    lines += ["", "| step | exit | seconds | note |", "|---|---|---|---|"]
    lines += [f"| {s['step']} | {s['returncode']} | {s['seconds']:.1f} | {s['note']} |" for s in r.get("steps", [])]
    pt = r.get("pytest")
    if pt:
        passed = pt["tests"] - pt["failures"] - pt["errors"] - pt["skipped"]
        lines += ["", f"tests/test_gpu.py: {passed} passed, {pt['failures']} failed, {pt['errors']} errors, "
                  f"{pt['skipped']} skipped in {pt['seconds']:.1f} s"]  # fmt: skip
        lines += [f"- {x}" for x in pt["not_passed"]]
    c = r.get("compare")
    if c:
        lines += [
            "",
            f"Tiny workflow twice on the device: {'bit-identical' if c.get('identical') else 'NOT identical'} "
            f"({c['files']} files compared, {c['safetensors']} safetensors; results.parquet equal: "
            f"{c.get('results_equal')}; differing: {c['differing'][:10] or 'none'}; devices {c.get('devices')})",
        ]
    wf = r.get("workflow") or {}
    lines += [f"- {k}: {v}" for k, v in wf.items() if v]
    tp = r.get("throughput")
    if tp:
        lines += ["", f"Throughput, {tp['model']} ({tp['device']}):", ""]
        lines += [
            "| precision | score, len 64: ex/s | tok/s | score, len 512: ex/s | tok/s "
            "| train, len 64: s/step | ex/s | tok/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run in tp["runs"]:
            if "skipped" in run:
                lines.append(f"| {run['precision']} | skipped: {run['skipped']} |||||||")
                continue
            s, lg, t = run["score_len64"], run["score_len512"], run["train_len64"]
            lines.append(
                f"| {run['precision']} | {s['examples_per_s']:,.0f} | {s['tokens_per_s']:,.0f} | "
                f"{lg['examples_per_s']:,.0f} | {lg['tokens_per_s']:,.0f} | {t['s_per_step']:.4f} | "
                f"{t['examples_per_s']:,.0f} | {t['tokens_per_s']:,.0f} |"
            )
            nd = run.get("train_len64_nondeterministic")
            if nd:
                lines.append(
                    f"| {run['precision']}, deterministic algorithms off | | | | | {nd['s_per_step']:.4f} | "
                    f"{nd['examples_per_s']:,.0f} | {nd['tokens_per_s']:,.0f} |"
                )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install")
    p.add_argument("--bundle", required=True)
    p.add_argument("--site", required=True)
    p = sub.add_parser("env")
    p.add_argument("--out", required=True)
    p = sub.add_parser("workflow")
    p.add_argument("run")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--timeout", type=int, default=600)
    p.add_argument("--out")
    p = sub.add_parser("compare")
    p.add_argument("run1")
    p.add_argument("run2")
    p.add_argument("--out", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--work", default="/tmp/gpu_check")
    p.add_argument("--quick", action="store_true", help="a few repetitions only (the CPU mode's plumbing check)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    result = globals()[f"cmd_{args.cmd}"](args)
    if args.cmd != "report" and getattr(args, "out", None):
        Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, sort_keys=True)[:2000])
    if args.cmd == "workflow":
        return result["returncode"]
    if args.cmd == "compare":
        return 0 if result["identical"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
