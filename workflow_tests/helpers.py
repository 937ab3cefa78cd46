"""Helpers for tests that run Snakemake itself on this repository's workflow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_CONFIG = REPO / "config" / "test.yaml"  # the tiny configuration a user can run too


def snakemake_cmd(workdir: Path, configfile: Path | None, *args: str, snakefile: Path = SNAKEFILE) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return cmd + list(args)


def run_snakemake(
    workdir: Path,
    configfile: Path | None,
    *args: str,
    timeout: float = 900,
    check: bool = True,
    env: dict | None = None,
    snakefile: Path = SNAKEFILE,
) -> subprocess.CompletedProcess:
    """Run Snakemake (bounded by ``timeout``; ``snakefile`` of this repository unless given); on failure
    raise with its output."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0", **(env or {})}
    proc = subprocess.run(
        snakemake_cmd(workdir, configfile, *args, snakefile=snakefile),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count}."""
    counts: dict[str, int] = {}
    m = re.search(r"Job stats:\s*\n(.*?)\n\s*\n", output + "\n\n", re.S)
    if not m:
        return counts
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            counts[parts[0]] = int(parts[1])
    return counts


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def tiny_config(model_dir: Path, **overrides) -> dict:
    """The checked-in test configuration (config/test.yaml) with the tiny random BERT in ``model_dir``.

    Differs from the file only in the model (label ``tiny``, fast), in ``results: results`` (the
    folder the tests read) and in ``evaluation.mode: per_state`` (one prune and one evaluate job per
    state, the finer DAG whose reruns the tests count; the default, per_sweep, has tests of its own and
    is what ``make run CONFIG=config/test.yaml`` runs). ``overrides`` replace top-level keys; a dict
    merges into the key's dict.
    """
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    cfg.update({"model": str(model_dir), "model_label": "tiny", "results": "results"})
    cfg["evaluation"] = {**cfg.get("evaluation", {}), "mode": "per_state"}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def make_tiny_model(path: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 64 -> adapter r = 4) with MiniLM's tokenizer."""
    from adapter_pruning.testing import make_tiny_bert

    return make_tiny_bert(path, hidden_size=64, intermediate_size=128, max_position_embeddings=128)


def gpu_config(model_dir: Path, mirror: Path, device: str = "cuda") -> dict:
    """The tiny workflow that ``tests/test_gpu.py`` and ``benchmarks/gpu_check.sh`` run on a GPU:
    :func:`tiny_config` on ``device``, with the data mirror ``mirror`` (the GPU check brings
    trec and rotten_tomatoes along), one evaluate_sweep job per scope (``per_sweep``) and all four
    methods, so that calibration runs too."""
    return tiny_config(
        model_dir,
        device=device,
        data={"mirror": str(mirror)},
        evaluation={"mode": "per_sweep"},
        pruning={"methods": ["standard", "tropical", "random", "activation"], "calibration_examples": 32},
    )
