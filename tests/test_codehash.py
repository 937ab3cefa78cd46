"""adapter_pruning.codehash: import closures found in the source, and hashes over them."""

from __future__ import annotations

import shutil
from pathlib import Path

from adapter_pruning import codehash

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "adapter_pruning"


def _names(script) -> set[str]:
    return {p.relative_to(PKG).as_posix() for p in codehash.import_closure(script)}


def test_closures_of_the_workflow_scripts():
    solve = _names(REPO / "scripts" / "tropical_solve.py")
    assert {
        "stages/solve.py",
        "tropical.py",
        "defaults.py",
        "masks.py",
        "artifacts.py",
        "io.py",
        "joblog.py",
        "__init__.py",
        "stages/__init__.py",
    } == solve  # no models/transformers, no training, no data
    train = _names(REPO / "scripts" / "train_adapter.py")
    assert {"training.py", "data.py", "models.py", "evaluation.py"} <= train
    assert not {"tropical.py", "masks.py", "figures/common.py", "aggregate.py"} & train
    prepare = _names(REPO / "scripts" / "prepare_data.py")
    assert "training.py" not in prepare and "data.py" in prepare
    # one module per figure: a figure's script imports its own module, not the others'
    zonotope = _names(REPO / "scripts" / "figure_zonotope.py")
    assert {"figures/__init__.py", "figures/common.py", "figures/zonotope.py"} <= zonotope
    assert not {"figures/objective.py", "figures/scores.py", "figures/methods.py", "figures/delta.py"} & zonotope
    assert not any(n.startswith("figures/") for n in _names(REPO / "scripts" / "report_tables.py"))


def test_relative_absolute_and_function_level_imports_are_followed(tmp_path):
    pkg = tmp_path / "adapter_pruning"
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "stages" / "extra.py").write_text("def f():\n    from ..figures.zonotope import zonotope_node\n")
    (pkg / "leaf.py").write_text("x = 1\n")
    (pkg / "mid.py").write_text("import adapter_pruning.leaf\n")
    script = tmp_path / "script.py"
    script.write_text(
        "def main():\n    from adapter_pruning.stages import extra\n    from adapter_pruning import mid\n"
    )
    # codehash resolves modules next to its own file: use the copy's codehash
    import importlib.util

    spec = importlib.util.spec_from_file_location("codehash_copy", pkg / "codehash.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    got = {p.relative_to(pkg).as_posix() for p in mod.import_closure(script)}
    assert {
        "stages/extra.py",
        "figures/zonotope.py",
        "figures/common.py",
        "mid.py",
        "leaf.py",
        "__init__.py",
        "stages/__init__.py",
    } <= got
    assert "training.py" not in got
    before = mod.script_code_hash(script)
    mod.script_code_hash.cache_clear()
    mod.import_closure.cache_clear()
    (pkg / "leaf.py").write_text("x = 2\n")  # a module reached only transitively
    assert mod.script_code_hash(script) != before
    mod.script_code_hash.cache_clear()
    mod.import_closure.cache_clear()
    (pkg / "cli.py").write_text((pkg / "cli.py").read_text() + "\n# edit\n")  # not reached
    (pkg / "leaf.py").write_text("x = 1\n")
    assert mod.script_code_hash(script) == before
