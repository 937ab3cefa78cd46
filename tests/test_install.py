"""install.sh's torch handling, on a fake virtual environment (nothing is installed): a TORCH_SPEC with
an index URL reaches pip as separate arguments, a CPU torch in .venv is replaced when a CUDA build is
asked for (pip alone would keep it), and the spec is remembered so that a different one makes .venv
not current."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CUDA_SPEC = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"


def fake_venv(root: Path, torch_version: str | None, cuda: str | None) -> Path:
    """A folder shaped like a venv whose python sees a torch/version.py of the given build."""
    venv, site = root / "venv", root / "site"
    (venv / "bin").mkdir(parents=True)
    if torch_version is not None:
        (site / "torch").mkdir(parents=True)
        (site / "torch" / "__init__.py").write_text("")
        (site / "torch" / "version.py").write_text(
            f"from typing import Optional\n__version__ = '{torch_version}'\ndebug = False\n"
            f"cuda: Optional[str] = {cuda!r}\n"
        )
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} -S "$@"\n')  # -S: not the real site-packages
    python.chmod(0o755)
    return venv


def install_sh(*args: str, venv: Path, spec: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TORCH_SPEC"}
    env["VENV"] = str(venv)
    if spec is not None:
        env["TORCH_SPEC"] = spec
    return subprocess.run(
        ["bash", str(REPO / "install.sh"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_spec_with_an_index_url_reaches_pip_as_separate_arguments(tmp_path):
    out = install_sh("--torch-plan", venv=fake_venv(tmp_path, None, None), spec=CUDA_SPEC).stdout
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126\n" in out
    assert "wanted build: cuda" in out and out.rstrip().endswith("keep")  # nothing installed yet


@pytest.mark.parametrize(
    "installed, cuda, spec, decision",
    [
        ("2.13.0+cpu", None, CUDA_SPEC, "replace: torch 2.13.0+cpu in {venv} is a CPU build, and TORCH_SPEC asks"),
        ("2.13.0+cu126", "12.6", CUDA_SPEC, "keep"),
        ("2.13.0+cu126", "12.6", "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu", "replace: "),
        ("2.13.0+cpu", None, "torch==2.13.0", "keep"),  # no index URL: pip decides
    ],
)
def test_the_torch_in_the_venv_is_replaced_when_it_is_the_other_build(tmp_path, installed, cuda, spec, decision):
    venv = fake_venv(tmp_path, installed, cuda)
    out = install_sh("--torch-plan", venv=venv, spec=spec).stdout.splitlines()
    assert out[2] == f"installed: {'cpu' if cuda is None else 'cuda ' + cuda} {installed}"
    assert out[3].startswith(decision.format(venv=venv)), out


def test_the_spec_is_remembered_and_a_new_one_makes_the_venv_not_current(tmp_path):
    venv = fake_venv(tmp_path, "2.13.0+cu126", "12.6")
    stamp = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + (REPO / "install.sh").read_bytes()).hexdigest()
    (venv / ".install-stamp").write_text(stamp + "\n")
    (venv / ".torch-spec").write_text(CUDA_SPEC + "\n")
    assert install_sh("--check", venv=venv).returncode == 0  # no TORCH_SPEC: the remembered one
    assert install_sh("--check", venv=venv, spec=CUDA_SPEC).returncode == 0
    r = install_sh("--check", venv=venv, spec="torch==2.13.0")
    assert r.returncode == 1 and "TORCH_SPEC" in r.stdout
    # make install without TORCH_SPEC keeps installing the remembered CUDA spec
    assert "pip install torch==2.13.0 --index-url" in install_sh("--torch-plan", venv=venv).stdout
