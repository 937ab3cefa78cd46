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
    cfg = write_config(tmp_path / "config.yaml", tiny_config(tiny_model))
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
    # every non-local job went through sbatch; the profile groups the 16 prune jobs and the 18 evaluate
    # jobs (16 pruned states, 2 full models) in submissions of at most 8 jobs
    submitted = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", run.output)
    assert len(set(submitted)) == len(submitted) == len(ids)
    # prepare 2 + train 2 + solve 2 + prune groups (16 jobs, >= 2) + evaluate groups (18 jobs, >= 3)
    assert 6 + 2 + 3 <= len(ids) <= 6 + 4 + 5, run.output[-3000:]
    for group in ("pruning", "evaluation"):  # the profile's groups (the rules declare none)
        assert any(f"/group_{group}" in log for log in run.slurm_logs), run.slurm_logs
    # ... and SLURM itself ran them to completion
    states = {job_id: state for job_id, state, _ in slurm_cluster.queue()}
    assert all(states.get(job_id) == "COMPLETED" for job_id in ids), states
    a = pl.read_parquet(local_dir / "results" / "summary" / "results.parquet")
    b = pl.read_parquet(tmp_path / "results" / "summary" / "results.parquet")
    assert_frame_equal(a, b, check_exact=True)
