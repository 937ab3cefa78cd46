"""Fixtures for the workflow tests: a tiny model, and one complete tiny run shared by several tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import SHARED_DATA, make_tiny_model, run_snakemake, tiny_config, write_config  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "SHA256SUMS").is_file():
        pytest.skip(f"the data mirror {SHARED_DATA} is not beside the repository")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model, shared_data):
    """The tiny workflow run once, locally, to completion: (workdir, configfile, snakemake output)."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    cfg = write_config(workdir / "config.yaml", tiny_config(tiny_model))
    proc = run_snakemake(workdir, cfg, "--cores", "2", timeout=900)
    return workdir, cfg, proc.stdout + proc.stderr


from conftest_slurm import slurm_cluster  # noqa: E402,F401  (session fixture: a real local SLURM cluster)
