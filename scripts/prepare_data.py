"""Snakemake entry point of rule prepare_data (logic: adapter_pruning.stages.prepare.prepare_data)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.prepare import prepare_data  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    prepare_data(
        spec=json.loads(sm.params.spec),
        outputs={"train": sm.output.train, "validation": sm.output.validation, "test": sm.output.test},
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
