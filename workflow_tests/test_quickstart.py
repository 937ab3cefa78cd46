"""The README's quick start: `make run` on the checked-in test configuration, and the install step.

`make run` runs into a temporary working directory (`--directory`), so the repository's own result
folders stay untouched. No test here runs a real pip install: the install step is checked on this
repository only when `.venv` is current (a no-op), and its refresh logic on a copy of the Makefile
and install.sh whose `.venv/bin/python` is a stub that records its calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow

NOOP = "nothing to install"
SUMMARY = "Finished. Results:"


def _make(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run GNU make in ``cwd`` (outside any outer make's variables); stdout and stderr together."""
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        check=False,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def venv_current() -> None:
    """Skip unless this repository's .venv is current, so that no test here triggers a real install."""
    proc = subprocess.run(["bash", str(REPO / "install.sh"), "--check"], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f".venv is not current ({proc.stdout.strip()}): run `make install` first")


def test_install_twice_is_a_fast_noop(venv_current):
    for _ in range(2):
        start = time.perf_counter()
        proc = _make("install")
        seconds = time.perf_counter() - start
        assert proc.returncode == 0, proc.stdout
        assert NOOP in proc.stdout, proc.stdout
        assert seconds < 5, f"the no-op install step took {seconds:.1f} s"


def test_install_step_reruns_only_after_pyproject_or_install_sh_changed(tmp_path):
    for name in ("Makefile", "install.sh", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "calls.log"
    stub = bin_dir / "python"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stub.chmod(0o755)

    def n_calls() -> int:
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    first = _make("install", cwd=tmp_path)
    assert first.returncode == 0, first.stdout
    assert "installing" in first.stdout and n_calls() > 0  # no stamp yet: pip ran (the stub)
    assert "-m pip install -q -e .[test]" in calls.read_text()
    done = n_calls()
    again = _make("install", cwd=tmp_path)
    assert again.returncode == 0 and NOOP in again.stdout, again.stdout
    assert n_calls() == done
    check = subprocess.run(
        ["bash", str(tmp_path / "install.sh"), "--check"], check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout

    for name in ("pyproject.toml", "install.sh"):
        with open(tmp_path / name, "a") as fh:
            fh.write("\n# changed\n")
        check = subprocess.run(
            ["bash", str(tmp_path / "install.sh"), "--check"], check=False, capture_output=True, text=True
        )
        assert check.returncode == 1, f"a changed {name} must make .venv stale"
        refresh = _make("install", cwd=tmp_path)
        assert refresh.returncode == 0 and "installing" in refresh.stdout, refresh.stdout
        assert n_calls() > done
        done = n_calls()


def test_make_run_on_the_test_config_prints_the_summary(tmp_path, shared_data, venv_current):
    repo_results = REPO / "results-test"
    existed = repo_results.exists()
    args = f"ARGS=--directory {tmp_path}"

    dry = _make("run", "CONFIG=config/test.yaml", f"{args} -n")
    assert dry.returncode == 0, dry.stdout
    assert NOOP in dry.stdout and "Job stats" in dry.stdout
    assert SUMMARY not in dry.stdout  # no summary on a dry run

    start = time.perf_counter()
    proc = _make("run", "CONFIG=config/test.yaml", args, timeout=900)
    seconds = time.perf_counter() - start
    out = proc.stdout
    assert proc.returncode == 0, out
    assert NOOP in out
    summary = tmp_path / "results-test" / "summary"
    assert out.count(SUMMARY) == 1
    for path in (summary / "results.parquet", summary / "table1.md", summary / "table2.md", summary / "figures"):
        assert path.exists() and str(path) in out, path
    assert "--report report.html" in out
    table1 = (summary / "table1.md").read_text(encoding="utf-8").rstrip()
    assert "Combined" in table1 and table1 in out  # the headline comparison, printed whole
    assert repo_results.exists() == existed  # nothing written into the repository's results
    print(f"make run CONFIG=config/test.yaml: {seconds:.0f} s")
