"""Snakemake entry point of rule aggregate (logic: adapter_pruning.aggregate)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning import aggregate  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    aggregate.collect(
        list(sm.input.scores),
        sm.output[0],
        allow_mixed_devices=sm.params.allow_mixed_devices,
        allow_mixed_precision=sm.params.allow_mixed_precision,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
