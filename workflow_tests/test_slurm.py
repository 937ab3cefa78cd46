"""The real tiny workflow through Snakemake's SLURM executor on a real single-node SLURM cluster
(started by the ``slurm_cluster`` fixture), compared with the local run of the same config."""

from __future__ import annotations

import re

import polars as pl
import pytest
from helpers import REPO, SNAKEFILE, tiny_config, write_config
from polars.testing import assert_frame_equal
from slurm_cluster import run_snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_tiny_workflow_under_slurm_equals_local_run(slurm_cluster, tiny_run, tiny_model, tmp_path):
    local_dir, _, _ = tiny_run
    # trec only (CU; the local run has rotten_tomatoes too): every rule kind goes through SLURM in a
    # third of the submissions of both tasks
    cfg = write_config(tmp_path / "config.yaml", tiny_config(tiny_model, tasks=["trec"]))
    run = run_snakemake(
        "--snakefile",
        str(SNAKEFILE),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(cfg),
        "--executor",
        "slurm",
        "--workflow-profile",
        str(REPO / "profiles" / "slurm-test"),
        cwd=tmp_path,
        timeout=900,
    )
    assert not run.timed_out, f"Snakemake hung under SLURM:\n{run.output[-4000:]}"
    assert run.returncode == 0, run.output[-6000:]
    ids = run.slurm_job_ids
    assert ids, "no SLURM job ids in Snakemake's output"
    # every non-local job went through sbatch; the profile groups the 4 prune jobs and the 5 evaluate
    # jobs (4 pruned states, the full model) in submissions of at most 8 jobs
    submitted = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", run.output)
    assert len(set(submitted)) == len(submitted) == len(ids)
    # prepare + train + solve + prune groups (4 jobs, >= 1) + evaluate groups (5 jobs, >= 1)
    assert 3 + 1 + 1 <= len(ids) <= 3 + 2 + 3, run.output[-3000:]
    for group in ("pruning", "evaluation"):  # the profile's groups (the rules declare none)
        assert any(f"/group_{group}" in log for log in run.slurm_logs), run.slurm_logs
    # ... and SLURM itself ran them to completion
    states = {job_id: state for job_id, state, _ in slurm_cluster.queue()}
    assert all(states.get(job_id) == "COMPLETED" for job_id in ids), {
        job_id: states.get(job_id) for job_id in ids if states.get(job_id) != "COMPLETED"
    }
    a = pl.read_parquet(local_dir / "results" / "summary" / "results.parquet").filter(pl.col("task") == "trec")
    b = pl.read_parquet(tmp_path / "results" / "summary" / "results.parquet")
    assert a.height > 5 and b["task"].unique().to_list() == ["trec"]
    assert_frame_equal(a, b, check_exact=True)
