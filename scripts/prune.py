"""Snakemake entry point of rule prune, per state or per sweep (logic: adapter_pruning.stages.prune.prune_sweep)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.prune import prune_sweep  # noqa: E402

sm = snakemake  # noqa: F821
w = sm.wildcards
with logged(sm.log[0]):
    prune_sweep(
        ids={"model": w.model, "task": w.task, "seed": int(w.seed), "lam": sm.params.lam, "scope": w.scope},
        methods=[w.method] if "method" in w.keys() else sm.params.methods,  # per_state: one method
        ps=[float(p) for p in sm.params.percentages],
        spec=json.loads(sm.params.spec),
        adapter_dir=sm.input.adapter,
        optimized_path=sm.input.optimized,
        out_dirs=list(sm.output),
        calibration_path=sm.input.calibration or None,
        threads=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
