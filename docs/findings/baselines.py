"""The baseline rows of docs/findings.md ("The baselines"): Tropical and Standard against random and
activation-aware pruning, with the same paired bootstrap as the pipeline's Tropical − Standard
report (``comparison.comparison_frame`` with another target and reference; 1,000 resamples,
generator seed 0, as ``config/study.yaml``).

    .venv/bin/python docs/findings/baselines.py [RESULTS]      # RESULTS: default results-study-cpu

Run from the repository root after the study (``config/study.yaml`` + ``config/study-cpu.yaml``).
Prints, per pair, task and scope: Δ in points averaged over λ and p, and per λ the states whose
95 % CI is above or below 0 (``comparison.win_counts``).
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
    predictions = comparison.read_predictions(sorted(root.glob("*/*/seed*/predictions/**/*.parquet")))
    for target, reference in PAIRS:
        frame = comparison.comparison_frame(results, predictions, target=target, reference=reference)
        wins = comparison.win_counts(frame)
        for (task, scope), cells in frame.group_by(["task", "scope"], maintain_order=True):
            lams = wins.filter((pl.col("task") == task) & (pl.col("scope") == scope)).sort("lam")
            counts = ", ".join(
                f"λ {r['lam']:g}: {r['significant_wins']} above / {r['significant_losses']} below"
                for r in lams.iter_rows(named=True)
            )
            delta = 100 * cells["diff"].mean()
            print(f"{task:16s} {scope} {target} − {reference}: {delta:+.2f} points ({counts})")


if __name__ == "__main__":
    main(*sys.argv[1:2])
