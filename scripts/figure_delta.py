"""Snakemake entry point of rule figure_delta (logic: adapter_pruning.figures.delta)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.figures.delta import delta_figure  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    for target, reference in sm.params.pairs:
        name = f"{target}_vs_{reference}"
        out = {ext: sm.output[f"{name}_{ext}"] for ext in ("png", "svg")}
        delta_figure(sm.input.comparison, sm.wildcards.task, out, target=target, reference=reference)
exit_now()  # outputs are safely written: skip the slow interpreter teardown
