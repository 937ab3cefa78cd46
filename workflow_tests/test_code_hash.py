"""Reruns follow the code exactly: after a tiny real run, editing one package module (or a document)
makes `snakemake -n` plan exactly the rules that run that module, and everything downstream of them.

Each rule's `params` carry the hash of its script's import closure (`adapter_pruning.codehash`), so
this checks both directions for every module: nothing stale is left (a rule that runs the edited
module reruns) and nothing needless happens (a rule that does not, does not).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import REPO, job_counts, run_snakemake

pytestmark = pytest.mark.slow

FIGURES = {
    "figure_objective",
    "figure_zonotope",
    "figure_score_vs_retained",
    "figure_methods",
    "figure_delta",
    "figure_convergence",
    "figure_score_vs_bytes",
}
ALL = {
    "prepare_data",
    "train_adapter",
    "evaluate",
    "tropical_solve",
    "prune",
    "aggregate",
    "report_tables",
    "report_comparison",
    "report_convergence",
    "report_score_vs_bytes",
} | FIGURES
# downstream of results.parquet (figure_delta draws comparison.csv)
REPORTS = {"aggregate", "report_tables", "report_comparison", "figure_score_vs_retained", "figure_methods"} | {
    "figure_delta",
    "report_convergence",
    "figure_convergence",
    "report_score_vs_bytes",
    "figure_score_vs_bytes",
}
AFTER_TRAINING = ALL - {"prepare_data"}
# A new solve reruns pruning and the scoring of every pruned state (rule evaluate, not for `full`).
SOLVE = {"tropical_solve", "prune", "evaluate", "figure_objective", "figure_zonotope"} | REPORTS
# Scoring code: every evaluate job (the full model and each pruned state), no pruning.
EVALUATE = {"evaluate"} | REPORTS

# What an edit of each file must rerun: the rules whose scripts import it, directly or not, plus
# their downstream jobs. Written out by hand from the design (docs/DESIGN.md), not computed.
EXPECTED = {
    "adapter_pruning/__init__.py": ALL,
    "adapter_pruning/io.py": ALL,
    "adapter_pruning/joblog.py": ALL,
    "adapter_pruning/data.py": ALL,
    "adapter_pruning/stages/__init__.py": ALL,
    "adapter_pruning/stages/prepare.py": ALL,
    "adapter_pruning/training.py": AFTER_TRAINING,
    "adapter_pruning/evaluation.py": AFTER_TRAINING,
    "adapter_pruning/models.py": AFTER_TRAINING,
    "adapter_pruning/precision.py": AFTER_TRAINING,
    # the device a job resolves and records (every torch rule imports it)
    "adapter_pruning/devices.py": AFTER_TRAINING,
    "adapter_pruning/stages/train.py": AFTER_TRAINING,
    # dense small adapters: not configured in the tiny run
    "adapter_pruning/stages/dense_small.py": set(),
    "adapter_pruning/masks.py": SOLVE,
    "adapter_pruning/artifacts.py": SOLVE,
    "adapter_pruning/tropical.py": SOLVE,
    "adapter_pruning/defaults.py": SOLVE,
    "adapter_pruning/stages/solve.py": SOLVE,
    "adapter_pruning/results.py": EVALUATE,
    "adapter_pruning/stages/evaluate.py": EVALUATE,
    # pruning loads no model: its closure is masks, artifacts, compact and io; its new states are rescored
    "adapter_pruning/stages/prune.py": {"prune", "evaluate"} | REPORTS,
    # the method registry: read by prune (and by Snakemake itself, which reruns nothing for it)
    **{
        f"adapter_pruning/methods/{name}.py": {"prune", "evaluate"} | REPORTS
        for name in ("__init__", "magnitude", "tropical", "random_baseline", "activation", "taylor", "sparsegpt")
    },
    # the compact file is written by the prune stage only (and checked by aggregate's verifier)
    "adapter_pruning/compact.py": {"prune", "evaluate"} | REPORTS,
    # the structured adapter of a unit-pruned state: written by prune, checked by aggregate's verifier
    "adapter_pruning/structured.py": {"prune", "evaluate"} | REPORTS,
    # import_adapter runs only for tasks under `adapters:`, calibrate only for the methods that need
    # data; the tiny run trains every task and runs standard and tropical
    "adapter_pruning/stages/import_adapter.py": set(),
    "adapter_pruning/stages/calibrate.py": set(),
    "adapter_pruning/aggregate.py": REPORTS,
    "adapter_pruning/comparison.py": {"report_comparison", "figure_delta"},
    # one module per figure: editing one redraws only that figure
    "adapter_pruning/figures/__init__.py": FIGURES,
    "adapter_pruning/figures/common.py": FIGURES,
    "adapter_pruning/figures/objective.py": {"figure_objective"},
    "adapter_pruning/figures/zonotope.py": {"figure_zonotope"},
    "adapter_pruning/figures/scores.py": {"figure_score_vs_retained"},
    "adapter_pruning/figures/methods.py": {"figure_methods"},
    "adapter_pruning/figures/delta.py": {"figure_delta"},
    "adapter_pruning/figures/convergence.py": {"figure_convergence"},
    "adapter_pruning/convergence.py": {"report_convergence", "figure_convergence"},
    # score against bytes on disk: the table's module; the figure reads its CSV
    "adapter_pruning/sizes.py": {"report_score_vs_bytes", "figure_score_vs_bytes"},
    "adapter_pruning/figures/sizes.py": {"figure_score_vs_bytes"},
    # used by Snakemake itself, the command line or tests only: no job runs them
    "adapter_pruning/config.py": set(),
    "adapter_pruning/codehash.py": set(),
    "adapter_pruning/cli.py": set(),
    "adapter_pruning/adapterhub.py": set(),  # the import rule's (no task is imported in the tiny run)
    "adapter_pruning/summary.py": set(),
    "adapter_pruning/testing.py": set(),
    "docs/METHOD.md": set(),
    "README.md": set(),
}


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """A copy of the workflow (Snakefile, rules, scripts, package, configs, docs) to edit freely."""
    dst = tmp_path_factory.mktemp("repo") / "tropical-adapter-pruning"
    dst.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("Snakefile", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    for name in ("rules", "scripts", "adapter_pruning", "config", "report", "docs"):
        shutil.copytree(REPO / name, dst / name, ignore=ignore)
    (dst.parent / "shared").symlink_to(REPO.parent / "shared")  # relative data.mirror: ../shared/data
    return dst


def _planned(repo: Path, workdir: Path, cfg: Path) -> set[str]:
    proc = run_snakemake(workdir, cfg, "-n", "--quiet", "rules", timeout=120, snakefile=repo / "Snakefile")
    return set(job_counts(proc.stdout + proc.stderr)) - {"all"}


def test_every_package_module_is_covered():
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "adapter_pruning").rglob("*.py")}
    assert modules <= set(EXPECTED), f"add the new module(s) to EXPECTED: {sorted(modules - set(EXPECTED))}"


def _footprint(rel: str) -> frozenset[str]:
    """The workflow scripts whose code hash covers ``rel`` (their import closure holds it)."""
    from adapter_pruning.codehash import import_closure

    path = (REPO / rel).resolve()
    return frozenset(s.name for s in sorted((REPO / "scripts").glob("*.py")) if path in import_closure(s))


def test_editing_a_module_reruns_exactly_what_runs_it(tiny_run, repo_copy):
    """What an edit reruns depends only on which scripts' code hashes it changes (the rules' ``code``
    params), so files with the same footprint must have the same expectation; one dry run per
    footprint, with every file of it edited at once, checks the expectation against Snakemake."""
    workdir, cfg, _ = tiny_run
    groups: dict[frozenset[str], list[str]] = {}
    for rel in EXPECTED:
        groups.setdefault(_footprint(rel), []).append(rel)
    for footprint, rels in groups.items():
        expectations = {rel: sorted(EXPECTED[rel]) for rel in rels}
        assert len({tuple(v) for v in expectations.values()}) == 1, (sorted(footprint), expectations)
    assert _planned(repo_copy, workdir, cfg) == set()  # the copy plans nothing before any edit
    wrong = {}
    for footprint, rels in groups.items():
        originals = {rel: (repo_copy / rel).read_bytes() for rel in rels}
        for rel, original in originals.items():
            (repo_copy / rel).write_bytes(original + b"\n# edited by test_code_hash\n")
        try:
            got = _planned(repo_copy, workdir, cfg)
        finally:
            for rel, original in originals.items():
                (repo_copy / rel).write_bytes(original)
        expected = EXPECTED[rels[0]]
        if got != expected:
            wrong[", ".join(rels)] = {"missing": sorted(expected - got), "needless": sorted(got - expected)}
    assert not wrong, wrong
    assert _planned(repo_copy, workdir, cfg) == set()
