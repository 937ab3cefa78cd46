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
    results = load_results(sm.input.results)
    frame = comparison.comparison_frame(
        results,
        comparison.read_predictions(list(sm.input.predictions)),
        resamples=spec["bootstrap_resamples"],
        seed=spec["bootstrap_seed"],
    )
    comparison.write_comparison(
        frame,
        comparison.win_counts(frame),
        dict(sm.output.items()),
        resamples=spec["bootstrap_resamples"],
        dense_small=comparison.dense_small_frame(results),
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
