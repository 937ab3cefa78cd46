"""Snakemake entry point of rule train_dense_small (logic: adapter_pruning.stages.dense_small.train_dense_small)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.devices import check_job_resources  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.dense_small import train_dense_small  # noqa: E402

sm = snakemake  # noqa: F821
spec = json.loads(sm.params.spec)
with logged(sm.log[0]):
    check_job_resources(spec["device"], sm.config["device"], sm.resources, sm.rule)
    train_dense_small(
        ids={"model": sm.wildcards.model, "task": sm.wildcards.task, "seed": int(sm.wildcards.seed)},
        spec=spec,
        train_path=sm.input.train,
        validation_path=sm.input.validation,
        out_dir=sm.output[0],
        device=spec["device"],  # the run's planned device, "cpu" or "cuda" (rules/common.smk)
        eval_batch_size=sm.config["training"]["eval_batch_size"],
        cores=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
