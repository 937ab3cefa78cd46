"""Snakemake entry point of rules evaluate (one state) and evaluate_sweep (every method and p of one
λ and scope) (logic: adapter_pruning.stages.evaluate.evaluate_states)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.devices import check_job_resources  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.evaluate import evaluate_states  # noqa: E402

sm = snakemake  # noqa: F821


def as_list(files):
    """One named input or output of the rule as a list (a single path, or the list of a sweep)."""
    return [files] if isinstance(files, str) else list(files)


spec = json.loads(sm.params.spec)
with logged(sm.log[0]):
    check_job_resources(spec["device"], sm.config["device"], sm.resources, sm.rule)
    evaluate_states(
        ids={"model": sm.wildcards.model, "task": sm.wildcards.task, "seed": int(sm.wildcards.seed)},
        spec=spec,
        state_dirs=as_list(sm.input.states),
        split_paths={"validation": sm.input.validation, "test": sm.input.test},
        out_scores=as_list(sm.output.scores),
        out_predictions=as_list(sm.output.predictions),
        device=spec["device"],  # the run's planned device, "cpu" or "cuda" (rules/common.smk)
        batch_size=sm.config["evaluation"]["batch_size"],
        batch_tokens=sm.config["evaluation"]["batch_tokens"],
        threads=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
