"""Snakemake entry point of rule tropical_solve (logic: adapter_pruning.stages.solve.tropical_solve)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.solve import tropical_solve  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    tropical_solve(
        spec=json.loads(sm.params.spec),
        adapter_dir=sm.input.adapter,
        out_optimized=sm.output.optimized,
        out_trace=sm.output.trace,
        out_info=sm.output.info,
        threads=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
