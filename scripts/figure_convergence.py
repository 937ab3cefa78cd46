"""Snakemake entry point of rule figure_convergence (logic: adapter_pruning.figures.convergence)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.figures.convergence import convergence_figure  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    convergence_figure(sm.input[0], dict(sm.output.items()))
exit_now()  # outputs are safely written: skip the slow interpreter teardown
