"""The baseline rows of docs/findings.md ("The baselines"): Tropical and Standard against random and
activation-aware pruning, with the same paired bootstrap as the pipeline's Tropical − Standard
report (``comparison.comparison_frame`` with another target and reference; 1,000 resamples,
generator seed 0, as ``config/study.yaml``).

    .venv/bin/python docs/findings/baselines.py [RESULTS]      # RESULTS: default results-study-cpu

Run from the repository root after the study (``config/study.yaml`` + ``config/study-cpu.yaml``).
Prints, per task, scope and pair: Δ in points averaged over λ and p, and per λ the states whose 95 % CI is
above or below 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from adapter_pruning import comparison  # noqa: E402
from adapter_pruning.aggregate import load_results  # noqa: E402

PAIRS = [("tropical", "random"), ("standard", "random"), ("tropical", "activation"), ("standard", "activation")]


def main(results_dir: str = "results-study-cpu") -> None:
    root = Path(results_dir)
    results = load_results(root / "summary" / "results.parquet")
    for task in sorted(results["task"].unique()):
        task_results = results.filter(pl.col("task") == task)
        files = sorted(root.glob(f"*/{task}/seed*/predictions/**/*.parquet"))
        if not files:
            raise SystemExit(f"{root}: no prediction files for task {task!r}")
        predictions = comparison.read_predictions(files)
        for target, reference in PAIRS:
            frame = comparison.comparison_frame(task_results, predictions, target=target, reference=reference)
            for scope in sorted(frame["scope"].unique()):
                cells = frame.filter(pl.col("scope") == scope)
                per_lam = (
                    cells.group_by("lam")
                    .agg((pl.col("ci_lo") > 0).sum().alias("above"), (pl.col("ci_hi") < 0).sum().alias("below"))
                    .sort("lam")
                )
                counts = ", ".join(
                    f"λ {r['lam']:g}: {r['above']} above / {r['below']} below" for r in per_lam.to_dicts()
                )
                delta = 100 * cells["diff"].mean()
                print(f"{task:16s} {scope} {target} − {reference}: {delta:+.2f} points ({counts})")


if __name__ == "__main__":
    main(*sys.argv[1:2])
