"""Snakemake entry point of rule figure_score_vs_bytes (logic: adapter_pruning.figures.sizes)."""

import json
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.figures.sizes import score_vs_bytes_figure  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
spec = json.loads(sm.params.spec)
with logged(sm.log[0]):
    score_vs_bytes_figure(sm.input.table, dict(sm.output.items()), scope=spec["table_scope"])
exit_now()  # outputs are safely written: skip the slow interpreter teardown
