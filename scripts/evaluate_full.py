"""Snakemake entry point of rule evaluate_full (logic: adapter_pruning.stages.evaluate.evaluate_full)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.evaluate import evaluate_full  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    evaluate_full(
        ids={"model": sm.wildcards.model, "task": sm.wildcards.task, "seed": int(sm.wildcards.seed)},
        spec=json.loads(sm.params.spec),
        adapter_dir=sm.input.adapter,
        split_paths={"validation": sm.input.validation, "test": sm.input.test},
        out_path=sm.output.scores,
        out_predictions=sm.output.predictions,
        device=sm.config["device"],
        batch_size=sm.config["evaluation"]["batch_size"],
        threads=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
