"""Snakemake entry point of rule prune_evaluate with evaluation.mode: per_sweep
(logic: adapter_pruning.stages.prune.prune_evaluate_sweep)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.prune import prune_evaluate_sweep  # noqa: E402

sm = snakemake  # noqa: F821
w = sm.wildcards
with logged(sm.log[0]):
    prune_evaluate_sweep(
        ids={
            "model": w.model,
            "task": w.task,
            "seed": int(w.seed),
            "lam": sm.params.lam,
            "scope": w.scope,
            "method": w.method,
        },
        ps=[float(p) for p in sm.params.percentages],
        spec=json.loads(sm.params.spec),
        adapter_dir=sm.input.adapter,
        optimized_path=sm.input.optimized,
        split_paths={"validation": sm.input.validation, "test": sm.input.test},
        out_dirs=list(sm.output.pruned),
        out_scores=list(sm.output.scores),
        out_predictions=list(sm.output.predictions),
        calibration_path=sm.input.calibration or None,
        device=sm.config["device"],
        batch_size=sm.config["evaluation"]["batch_size"],
        threads=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
