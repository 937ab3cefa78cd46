"""Snakemake entry point of rule report_figures (logic: adapter_pruning.figures)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning import figures  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
spec = json.loads(sm.params.spec)
out = {
    name: {ext: sm.output[f"{name}_{ext}"] for ext in ("png", "svg")}
    for name in ("objective", "zonotope", "score_vs_retained")
}
with logged(sm.log[0]):
    figures.objective_figure(list(sm.input.traces), out["objective"])
    figures.zonotope_figure(sm.input.adapter, sm.input.optimized, out["zonotope"], layer=spec["zonotope_layer"])
    figures.score_vs_retained_figure(sm.input.results, out["score_vs_retained"], scope=spec["table_scope"])
exit_now()  # outputs are safely written: skip the slow interpreter teardown
