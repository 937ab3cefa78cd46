#!/usr/bin/env python
"""Benchmark: how much scoring (or training) precision changes results, from two results folders of
the same config that differ only in ``evaluation.precision`` (or ``training.precision``).

Reads each folder's ``summary/results.parquet`` and its per-example prediction files
(``<results>/<model>/<task>/seed<s>/predictions/**.parquet``) and prints, per task:

* **flips**: test examples whose predicted label differs between the two folders, over every state
  both scored (the full model and every pruned state), as a count and a share of all scored examples;
* **scores**: the largest change of a state's primary test score (points);
* **Δ per state** (:func:`adapter_pruning.comparison.compare`, every ``--pairs`` pair): how many
  states' Δ = target − reference change sign, the largest change of Δ, and how many pooled verdicts
  (task × scope × λ) differ.

    .venv/bin/python benchmarks/precision_agreement.py results-fp32 results-bf16 [--pairs tropical:standard]

docs/benchmarks.md ("bf16 compute") has the figures and the commands that made both folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapter_pruning.comparison import compare, read_predictions  # noqa: E402

STATE = ["model", "task", "seed", "lam", "scope", "method", "p"]


def load(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(results, test predictions)`` of one results folder."""
    results = pl.read_parquet(root / "summary" / "results.parquet")
    files = sorted(p for p in root.glob("*/*/seed*/predictions/**/*.parquet"))
    if not files:
        raise SystemExit(f"{root}: no prediction files under <model>/<task>/seed*/predictions/")
    preds = read_predictions(files).filter(pl.col("split") == "test")
    return results, preds


def flips(pa: pl.DataFrame, pb: pl.DataFrame) -> pl.DataFrame:
    """Per task: examples scored in both folders, and how many predictions differ."""
    keys = [*STATE, "id"]
    joined = pa.join(pb, on=keys, how="inner", suffix="_b", nulls_equal=True)
    if joined.height != pa.height or joined.height != pb.height:
        raise SystemExit(f"the folders scored different examples or states ({pa.height} vs {pb.height} rows)")
    return (
        joined.group_by("task")
        .agg(
            pl.len().alias("examples"),
            pl.struct([c for c in STATE if c != "task"]).n_unique().alias("state_seeds"),
            (pl.col("prediction") != pl.col("prediction_b")).sum().alias("flips"),
        )
        .with_columns((100 * pl.col("flips") / pl.col("examples")).alias("flips_pct"))
        .sort("task")
    )


def score_changes(ra: pl.DataFrame, rb: pl.DataFrame) -> pl.DataFrame:
    """Per task: states, and the largest change of a state's primary test score (points)."""
    sel = [*STATE, "score"]
    a = ra.filter(pl.col("primary"), pl.col("split") == "test").select(sel)
    b = rb.filter(pl.col("primary"), pl.col("split") == "test").select(sel)
    j = a.join(b, on=STATE, suffix="_b", nulls_equal=True)
    return (
        j.group_by("task")
        .agg(
            pl.len().alias("states"),
            (100 * (pl.col("score") - pl.col("score_b")).abs().max()).alias("max_score_change"),
        )
        .sort("task")
    )


def delta_changes(ra, pa, rb, pb, pairs, resamples: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per task and pair: Δ sign changes and the largest change of Δ (points) over the states; and the
    pooled verdicts side by side."""
    ca = compare(ra, pa, pairs=pairs, resamples=resamples)
    cb = compare(rb, pb, pairs=pairs, resamples=resamples)
    keys = ["model", "task", "scope", "lam", "p", "target", "reference"]
    s = ca.states.select(*keys, "diff").join(cb.states.select(*keys, "diff"), on=keys, suffix="_b", nulls_equal=True)
    states = (
        s.group_by("task", "target", "reference")
        .agg(
            pl.len().alias("states"),
            (pl.col("diff").sign() != pl.col("diff_b").sign()).sum().alias("sign_changes"),
            (100 * (pl.col("diff") - pl.col("diff_b")).abs().max()).alias("max_delta_change"),
            (100 * pl.col("diff").abs().mean()).alias("mean_abs_delta"),
        )
        .sort("task", "target", "reference")
    )
    vkeys = ["model", "task", "scope", "lam", "target", "reference"]
    verdicts = ca.verdicts.select(*vkeys, "diff", "verdict").join(
        cb.verdicts.select(*vkeys, "diff", "verdict"), on=vkeys, suffix="_b", nulls_equal=True
    )
    return states, verdicts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="results folder of the first precision (e.g. fp32)")
    ap.add_argument("b", type=Path, help="results folder of the second (e.g. bf16)")
    ap.add_argument("--pairs", nargs="+", default=["tropical:standard"], help="target:reference")
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args(argv)
    pairs = [tuple(x.split(":")) for x in args.pairs]
    ra, pa = load(args.a)
    rb, pb = load(args.b)
    pd = {"a": sorted(ra["precision"].unique().to_list()), "b": sorted(rb["precision"].unique().to_list())}
    td = {
        "a": sorted(ra["train_precision"].drop_nulls().unique().to_list()),
        "b": sorted(rb["train_precision"].drop_nulls().unique().to_list()),
    }
    print(f"scoring precision: {args.a} {pd['a']}, {args.b} {pd['b']}; training precision: {td['a']}, {td['b']}")
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=160):
        print("\nprediction flips on test (every state both folders scored):")
        print(flips(pa, pb))
        print("\nlargest change of a state's primary test score (points):")
        print(score_changes(ra, rb))
        states, verdicts = delta_changes(ra, pa, rb, pb, pairs, args.resamples)
        print("\nΔ = target − reference per state: sign changes and largest change (points):")
        print(states)
        print("\npooled verdicts (task × scope × λ), a vs b:")
        print(
            verdicts.with_columns(
                (100 * pl.col("diff")).round(3).alias("diff"), (100 * pl.col("diff_b")).round(3).alias("diff_b")
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
