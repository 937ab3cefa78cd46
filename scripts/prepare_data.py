"""Snakemake entry point of rule prepare_data (logic: adapter_pruning.stages.prepare_data)."""
import json, sys  # noqa: E401

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning import stages  # noqa: E402

sm = snakemake  # noqa: F821
with stages.logged(sm.log[0]):
    stages.prepare_data(
        spec=json.loads(sm.params.spec),
        outputs={"train": sm.output.train, "validation": sm.output.validation, "test": sm.output.test},
    )
