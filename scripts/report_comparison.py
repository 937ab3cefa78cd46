"""Snakemake entry point of rule report_comparison (logic: adapter_pruning.comparison)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning import comparison  # noqa: E402
from adapter_pruning.aggregate import load_results  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
spec = json.loads(sm.params.spec)
with logged(sm.log[0]):
    resamples, floor_fraction = spec["bootstrap_resamples"], spec["floor_fraction"]
    results = load_results(sm.input.results)
    out = comparison.compare(
        results,
        list(sm.input.predictions),  # read one file at a time, kept as integer arrays
        pairs=[tuple(pair) for pair in spec["comparisons"]],
        resamples=resamples,
        seed=spec["bootstrap_seed"],
        margin=spec["equivalence_margin"] / 100,  # points -> metric units
        floor_fraction=floor_fraction,
    )
    comparison.write_comparison(
        out.states,
        comparison.win_counts(out.states),
        {ext: sm.output[ext] for ext in ("md", "csv", "tex")},
        resamples=resamples,
        floor_fraction=floor_fraction,
        dense_small=comparison.dense_small_frame(results),
    )
    comparison.write_verdicts(
        out.verdicts,
        {ext: sm.output[f"verdicts_{ext}"] for ext in ("md", "csv")},
        resamples=resamples,
        floor_fraction=floor_fraction,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
