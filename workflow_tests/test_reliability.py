"""Reliability of the workflow: bad input stops it before any job, a hard kill loses only the
running jobs, and two clean runs give identical results."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from helpers import run_snakemake, snakemake_cmd, tiny_config, write_config
from polars.testing import assert_frame_equal

pytestmark = pytest.mark.slow

RESULTS = Path("results") / "summary" / "results.parquet"


def _scores(workdir: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("scores/*/*/*.parquet")}


def _finished_outputs(log: str, workdir: Path) -> set[Path]:
    """Output files of the jobs that Snakemake's log reports as finished."""
    outputs, finished = {}, set()
    for block in re.split(r"\n(?=\[|rule |localrule )", log):
        jobid = re.search(r"jobid: (\d+)", block)
        out = re.search(r"\n\s+output: (.*)", block)
        if jobid and out:
            outputs[jobid.group(1)] = [workdir / o.strip() for o in out.group(1).split(",")]
    for jobid in re.findall(r"Finished jobid: (\d+)", log):
        finished.update(outputs.get(jobid, []))
    return finished


def _mtimes(paths) -> dict[Path, int]:
    """mtime of every file among ``paths`` (the files inside directories)."""
    out = {}
    for p in paths:
        for f in [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()):
            out[f] = f.stat().st_mtime_ns
    return out


def test_sigkill_during_pruning_then_resume_gives_the_clean_run(tiny_run, tmp_path, tiny_model):
    workdir, _, _ = tiny_run
    cfg = write_config(tmp_path / "config.yaml", tiny_config(tiny_model))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(
        snakemake_cmd(tmp_path, cfg, "--cores", "2"),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and len(_scores(tmp_path)) < 4:
            assert proc.poll() is None, "workflow finished before it could be killed"
            time.sleep(0.2)
        assert len(_scores(tmp_path)) >= 4, "pruning stage never started"
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    # the outputs of every job Snakemake had recorded as finished when it was killed
    finished = _finished_outputs((tmp_path / "first.log").read_text(), tmp_path)
    assert any("/scores/" in str(p) for p in finished), "no pruned state had been scored before the kill"
    done_before = _mtimes(finished)
    assert not (tmp_path / RESULTS).exists()
    # no half-written output anywhere: every Parquet file that exists is readable
    for f in (tmp_path / "results").rglob("*.parquet"):
        pl.read_parquet(f)
    run_snakemake(tmp_path, cfg, "--unlock", timeout=120)
    out = run_snakemake(tmp_path, cfg, "--cores", "2", "--rerun-incomplete", timeout=900)
    assert _mtimes(finished) == done_before, "finished jobs were redone"
    assert len(_scores(tmp_path)) == 16
    # the rerun ran exactly the jobs that had not finished (the tiny DAG has 55 jobs: 2 x (prepare,
    # train, solve) + 16 prune + 18 evaluate (16 pruned states, 2 full models) + aggregate, 4 reports
    # (tables, comparison, convergence, score_vs_bytes), 9 figures, all)
    n_first = len(re.findall(r"Finished jobid", (tmp_path / "first.log").read_text()))
    n_rerun = len(re.findall(r"Finished jobid", out.stdout + out.stderr))
    assert n_first + n_rerun == 55, (n_first, n_rerun)
    # ... and gives exactly the clean run (tiny_run, another process): results.parquet and every weight
    # file (trained, optimized, pruned adapters) byte for byte
    assert_frame_equal(pl.read_parquet(workdir / RESULTS), pl.read_parquet(tmp_path / RESULTS), check_exact=True)
    rels = sorted(p.relative_to(workdir) for p in (workdir / "results").rglob("*.safetensors"))
    assert len(rels) > 10 and Path("results/tiny/rotten_tomatoes/seed0/tropical/optimized.safetensors") in rels
    assert rels == sorted(p.relative_to(tmp_path) for p in (tmp_path / "results").rglob("*.safetensors"))
    for rel in rels:
        assert (workdir / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_bad_config_fails_before_any_job(tmp_path, tiny_model):
    cfg = tiny_config(tiny_model)
    cfg["pruning"]["percentages"] = [90, 120]
    cfg["tropical"]["lam1"] = -1
    path = write_config(tmp_path / "bad.yaml", cfg)
    proc = run_snakemake(tmp_path, path, "--cores", "1", check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "pruning.percentages[1] = 120" in out and "tropical.lam1 = -1" in out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"tropical": {"lam1": float("nan")}}, "tropical.lam1 = NaN: must be a finite number"),
        ({"model": "my model"}, "model = 'my model':"),
    ],
    ids=["nan", "model-id"],
)
def test_non_finite_number_or_bad_model_id_fails_before_any_job(tmp_path, tiny_model, override, fragment):
    path = write_config(tmp_path / "bad.yaml", tiny_config(tiny_model, **override))
    proc = run_snakemake(tmp_path, path, "-n", check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert fragment in out, out
    assert not (tmp_path / "results").exists()


def test_checksum_mismatch_stops_the_task(tmp_path, tiny_model, shared_data):
    mirror = tmp_path / "mirror"
    shutil.copytree(shared_data / "trec", mirror / "trec")
    shutil.copy(shared_data / "SHA256SUMS", mirror / "SHA256SUMS")
    with open(mirror / "trec" / "test.parquet", "ab") as fh:
        fh.write(b"tampered")
    cfg = tiny_config(tiny_model, tasks=["trec"], data={"mirror": str(mirror)})
    path = write_config(tmp_path / "cfg.yaml", cfg)
    proc = run_snakemake(tmp_path, path, "--cores", "1", check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "prepare_data" / "trec.log").read_text()
    assert "trec/test.parquet" in log and "checksum" in log.lower()
    assert "logs/prepare_data/trec.log" in out
    assert not (tmp_path / "results" / "tiny").exists()  # nothing downstream ran


def test_corrupted_outputs_are_detected(tiny_run, tmp_path):
    from adapter_pruning import aggregate
    from adapter_pruning.io import CorruptFileError

    workdir, _, _ = tiny_run
    copy = tmp_path / "results"
    shutil.copytree(workdir / "results", copy)
    scores = sorted(copy.rglob("scores/**/*.parquet"))
    pruned = sorted(p.parent for p in copy.rglob("pruned/*/*/*/prune.json"))
    assert len(pruned) == 16
    aggregate.collect(scores, tmp_path / "ok.parquet", pruned_dirs=pruned)  # intact: fine
    # a truncated pruned adapter
    victim = pruned[3] / "adapter.safetensors"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=str(victim)):
        aggregate.collect(scores, tmp_path / "r.parquet", pruned_dirs=pruned)
    # a pruned adapter whose weights were altered in place (same size, other bytes)
    mid = len(data) - 40  # inside the tensor data (the header is at the start)
    victim.write_bytes(data[:mid] + bytes(b ^ 0x55 for b in data[mid : mid + 4]) + data[mid + 4 :])
    with pytest.raises(CorruptFileError, match="checksum"):
        aggregate.collect(scores, tmp_path / "r.parquet", pruned_dirs=pruned)
    victim.write_bytes(data)
    # a truncated compact file beside an intact dense one
    compact_file = pruned[5] / "adapter.compact.safetensors"
    compact_file.write_bytes(compact_file.read_bytes()[:-7])
    with pytest.raises(CorruptFileError, match=str(compact_file)):
        aggregate.collect(scores, tmp_path / "r.parquet", pruned_dirs=pruned)
    assert not (tmp_path / "r.parquet").exists()
    # a truncated results file is refused by the table writer
    res = copy / "summary" / "results.parquet"
    res.write_bytes(res.read_bytes()[:100])
    outs = {ext: tmp_path / f"t.{ext}" for ext in ("md", "csv", "tex")}
    with pytest.raises(CorruptFileError, match="results.parquet"):
        aggregate.write_tables(res, outs, outs)
