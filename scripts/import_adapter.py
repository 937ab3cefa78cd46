"""Snakemake entry point of rule import_adapter (logic: adapter_pruning.stages.import_adapter.import_adapter)."""

import json
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.import_adapter import import_adapter  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    import_adapter(
        task=sm.wildcards.task,
        spec=json.loads(sm.params.spec),
        out_dir=sm.output[0],
        threads=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
