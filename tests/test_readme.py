"""The README's example of pruning your own adapter (section "Prune an adapter you already have") runs as
written: its bash blocks, in order, in an empty folder (with the repository's .venv linked in), print the
table the README shows (same header and rows; the numbers may differ in the last digits elsewhere), and
the --scope UN block's structured adapter loads with plain adapters code."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Prune an adapter you already have"


def readme_blocks(all_tables: bool = False) -> tuple:
    """The section's bash blocks that do not run Snakemake, and its first ``text`` block (the printed
    table; ``all_tables``: also the second, what the ``--scope UN`` block prints)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    table = re.findall(r"```text\n(.*?)```", section, flags=re.S)
    if all_tables:
        return [b for b in blocks if "snakemake" not in b], table[0], table[1]
    return [b for b in blocks if "snakemake" not in b], table[0]


def test_readme_example_blocks_are_found():
    blocks, table = readme_blocks()
    assert len(blocks) == 3 and "adapter-prune my_adapter" in blocks[0] and "expand(" in blocks[1]
    assert "--scope UN" in blocks[2] and "/structured" in blocks[2]
    assert table.splitlines()[0].split()[:4] == ["method", "p", "retained", "%"]


@pytest.mark.slow
def test_readme_example_runs_as_written(tmp_path, shared_data):
    blocks, table, table_units = readme_blocks(all_tables=True)
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = []
    for block in blocks:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"README block failed:\n{block}\n{proc.stdout}\n{proc.stderr}"
        out.append(proc.stdout)
    printed = out[0].strip().splitlines()
    shown = table.strip().splitlines()
    assert printed[0] == shown[0]
    assert [r.split()[:2] for r in printed[1:]] == [r.split()[:2] for r in shown[1:]]
    assert "identical logits from the dense and the compact file" in out[1]
    # --scope UN: the structured adapter loads with plain adapters code and gives the dense logits
    printed, shown = out[2].strip().splitlines(), table_units.strip().splitlines()
    assert printed[0] == shown[0] and [r.split()[:2] for r in printed[1:]] == [r.split()[:2] for r in shown[1:]]
    assert printed[-2] == "units kept per layer: [3, 3, 3, 3, 3, 3] retained 14.3 %"
    assert printed[-1].split()[:3] == ["bytes:", "dense", "461131"]
    for method in ("tropical", "standard"):
        d = tmp_path / "my_adapter_units" / method / "p90" / "structured"
        assert (d / "pytorch_adapter.bin").is_file() and (d / "adapter_config.json").is_file()
    for method in ("tropical", "standard"):
        d = tmp_path / "my_adapter_pruned" / method / "p90"
        assert (d / "pytorch_adapter.bin").is_file() and (d / "adapter.compact.safetensors").is_file()
        assert (d / "adapter.compact.safetensors").stat().st_size < (d / "pytorch_adapter.bin").stat().st_size / 4
