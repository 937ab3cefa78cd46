"""Snakemake entry point of rule figure_methods (logic: adapter_pruning.figures.methods)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.figures.methods import method_comparison_figure  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    method_comparison_figure(sm.input.results, sm.wildcards.task, dict(sm.output.items()))
exit_now()  # outputs are safely written: skip the slow interpreter teardown
