"""Habits that keep the code base readable: ruff (lint and format) for Python, snakefmt for the Snakefile
and rules (`snakemake --lint` runs in workflow_tests/test_workflow.py), and the rules' conda environment
in step with pyproject.toml. The tools are pinned in the `test` extra; their settings are in
pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_lint_is_clean():
    proc = _run(_tool("ruff"), "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean():
    proc = _run(_tool("ruff"), "format", "--check", ".")
    assert proc.returncode == 0, f"run `ruff format .`:\n{proc.stdout}{proc.stderr}"


def test_snakefmt_is_clean():
    smk = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "rules").glob("*.smk"))]
    proc = _run(_tool("snakefmt"), "--check", *smk)
    assert proc.returncode == 0, f"run `snakefmt Snakefile rules/`:\n{proc.stdout}{proc.stderr}"


def test_conda_env_matches_pyproject():
    """envs/pipeline.yaml (every rule's conda env) carries each runtime dependency of pyproject.toml with
    the same version range; only torch is pinned to the build the install path uses. Snakemake and its
    executor plugin run the workflow, not the rules, so the env needs neither."""
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads TOML without an extra package")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {Requirement(d).name.lower(): Requirement(d).specifier for d in project["dependencies"]}
    for name in ("snakemake", "snakemake-executor-plugin-slurm"):
        wanted.pop(name)
    env = yaml.safe_load((REPO / "envs" / "pipeline.yaml").read_text())
    conda_names = {"matplotlib-base": "matplotlib"}  # conda-forge's name of the same package
    have = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for pip_dep in dep["pip"]:
                req = Requirement(pip_dep)
                have[req.name.lower()] = req.specifier
        else:
            name, _, spec = dep.partition(" ")
            if name not in ("python", "pip"):
                have[conda_names.get(name, name)] = Requirement(f"x{spec.replace(' ', '')}").specifier
    assert set(have) == set(wanted), (
        f"missing {sorted(set(wanted) - set(have))}, extra {sorted(set(have) - set(wanted))}"
    )
    for name, spec in wanted.items():
        if name == "torch":
            pinned = [s.version for s in have[name] if s.operator == "=="]
            assert pinned and spec.contains(pinned[0]), f"torch in envs/pipeline.yaml {have[name]} not within {spec}"
        else:
            assert have[name] == spec, f"{name}: envs/pipeline.yaml has {have[name]}, pyproject.toml {spec}"
