"""Snakemake entry point of rule calibrate (logic: adapter_pruning.stages.calibrate.calibrate)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.devices import check_job_resources  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.calibrate import calibrate  # noqa: E402

sm = snakemake  # noqa: F821
spec = json.loads(sm.params.spec)
with logged(sm.log[0]):
    check_job_resources(spec["device"], sm.config["device"], sm.resources, sm.rule)
    calibrate(
        ids={"model": sm.wildcards.model, "task": sm.wildcards.task, "seed": int(sm.wildcards.seed)},
        spec=spec,
        adapter_dir=sm.input.adapter,
        train_path=sm.input.train,
        out_paths=dict(sm.output.items()),  # {statistic: path}: the statistics the configured methods need
        device=spec["device"],  # the run's planned device, "cpu" or "cuda" (rules/common.smk)
        batch_size=sm.config["evaluation"]["batch_size"],
        threads=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
