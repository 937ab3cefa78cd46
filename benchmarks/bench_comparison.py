"""How long does rule report_comparison take on a study-sized run? What the rule runs
(``comparison.compare`` on the prediction files, every pair, per state and pooled, then the two
writers) on synthetic results and prediction files of the full comparison study's shape
(``config/study.yaml``: the five tasks at their full test-split sizes, 5 seeds, 4 λ, 9 p, CU on every
task plus CN and CB on rotten_tomatoes), with 8 methods and the 13 default pairs
(``config.default_comparisons``), 1000 resamples. One Parquet file per state and seed, as the
pipeline writes them (test rows only). Scores are those of the synthetic predictions, so
``compare``'s checks run as in the pipeline. Prints the wall (and CPU) time of each step and the peak RSS.
Run it as the rule runs, on one BLAS thread:
``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_comparison.py [--tasks meld snli ...]
[--resamples 1000] [--dir FOLDER]``
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adapter_pruning import comparison  # noqa: E402
from adapter_pruning.config import default_comparisons  # noqa: E402
from adapter_pruning.data import TASKS  # noqa: E402
from adapter_pruning.evaluation import compute_metrics  # noqa: E402
from adapter_pruning.results import predictions_frame, score_frame  # noqa: E402

#: Test-split sizes of the full study (the local mirror's test splits).
TEST_SIZE = {"meld": 2610, "snli": 9824, "rotten_tomatoes": 1066, "imdb": 25000, "trec": 500}
METHODS = ["standard", "tropical", "random", "activation", "tropical_pt", "tropical_opt", "taylor", "sparsegpt"]
PROV = {"device": "cpu", "torch": "t", "transformers": "tf", "adapters": "a"}


def synthetic(folder: Path, tasks, seeds=5, lams=(0.25, 0.5, 1.0, 2.0), ps=(98, 96, 94, 92, 90, 85, 80, 70, 60)):
    """results.parquet's rows (returned) and one prediction file per pruned state and seed (in
    ``folder``; their paths returned too)."""
    from adapter_pruning.io import write_parquet

    rng = np.random.default_rng(0)
    scores, files = [], []
    for task in tasks:
        spec, n = TASKS[task], TEST_SIZE[task]
        labels = rng.integers(0, spec.num_labels, n)
        ids = [f"{task}-{i:06d}" for i in range(n)]
        scopes = ["CU", "CN", "CB"] if task == "rotten_tomatoes" else ["CU"]
        for seed in range(seeds):
            ident = {"model": "minilm", "task": task, "seed": seed}
            states = [("full", None, None, 0.0, 0.9)]
            states += [
                (m, s, lam, float(p), 0.9 - p / 200) for m in METHODS for s in scopes for lam in lams for p in ps
            ]
            for method, scope, lam, p, acc in states:
                pred = np.where(rng.random(n) < acc, labels, rng.integers(0, spec.num_labels, n))
                m = compute_metrics(pred, labels, spec.num_labels)
                scores.append(
                    score_frame(
                        ident,
                        {"test": m},
                        scope=scope,
                        method=method,
                        p=p,
                        n_params=1000,
                        n_pruned=int(10 * p),
                        primary_metric=spec.metric,
                        provenance=PROV,
                        lam=lam,
                    )
                )
                if method != "full":
                    df = pl.DataFrame({"id": ids, "prediction": pred, "label": labels})
                    files.append(folder / f"{task}-{seed}-{method}-{scope}-{lam}-{p:g}.parquet")
                    write_parquet(
                        predictions_frame(ident, {"test": df}, lam=lam, scope=scope, method=method, p=p), files[-1]
                    )
    return pl.concat(scores), files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="*", default=list(TEST_SIZE))
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--dir", type=Path, help="folder for the prediction files (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        results, files = synthetic(folder, args.tasks)
        pairs = default_comparisons(METHODS)
        size = sum(f.stat().st_size for f in files) / 2**20
        print(
            f"synthetic run: {len(args.tasks)} tasks, {len(files):,} prediction files ({size:,.0f} MiB), "
            f"{len(pairs)} pairs ({time.perf_counter() - t0:.0f} s to write)"
        )
        t, c = time.perf_counter(), time.process_time()
        out = comparison.compare(results, files, pairs=pairs, resamples=args.resamples, seed=0)
        t_compare, c_compare = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        out_files = {ext: Path(tmp) / f"comparison.{ext}" for ext in ("md", "csv", "tex")}
        comparison.write_comparison(out.states, comparison.win_counts(out.states), out_files, resamples=args.resamples)
        vfiles = {ext: Path(tmp) / f"comparison_verdicts.{ext}" for ext in ("md", "csv")}
        comparison.write_verdicts(out.verdicts, vfiles, resamples=args.resamples)
        t_write = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"compare (reading the files, checks, bootstrap): {t_compare:.1f} s wall, {c_compare:.1f} s CPU")
    print(f"  {out.states.height:,} state rows, {out.verdicts.height} verdict rows")
    print(f"write_comparison + write_verdicts: {t_write:.1f} s")
    print(f"peak RSS: {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
