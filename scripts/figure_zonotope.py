"""Snakemake entry point of rule figure_zonotope (logic: adapter_pruning.figures.zonotope)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.figures.zonotope import zonotope_figure  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
spec = json.loads(sm.params.spec)
with logged(sm.log[0]):
    zonotope_figure(sm.input.adapter, sm.input.optimized, dict(sm.output.items()), layer=spec["zonotope_layer"])
exit_now()  # outputs are safely written: skip the slow interpreter teardown
