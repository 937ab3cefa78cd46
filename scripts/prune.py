"""Snakemake entry point of rule prune, per state or per sweep (logic: adapter_pruning.stages.prune.prune_sweep)."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.stages.prune import prune_sweep  # noqa: E402

sm = snakemake  # noqa: F821
w = sm.wildcards
calibration = sm.input.calibration  # a path, or a list of them: <statistic>.safetensors
calibration = [calibration] if isinstance(calibration, str) else list(calibration)
with logged(sm.log[0]):
    prune_sweep(
        ids={"model": w.model, "task": w.task, "seed": int(w.seed), "lam": sm.params.lam, "scope": w.scope},
        methods=[w.method] if "method" in w.keys() else sm.params.methods,  # per_state: one method
        ps=[float(p) for p in sm.params.percentages],
        adapter_dir=sm.input.adapter,
        optimized_path=sm.input.optimized or None,
        out_dirs=list(sm.output),
        calibration={Path(f).name.split(".")[0]: f for f in calibration},
        threads=sm.threads,
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
