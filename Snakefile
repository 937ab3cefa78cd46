# tropical-adapter-pruning: train bottleneck adapters, prune them with the tropical-geometry method of
# Bhardwaj, Vaidya & Poria (2023) and with magnitude pruning, evaluate every pruned state, aggregate.
# Outputs and commands: README.md. Method: docs/METHOD.md. Cluster settings live in profiles/.
import os

from snakemake.utils import min_version

min_version("9.0")


# The offline default, found relative to this file so that `--directory` works; files given with
# --configfile are merged on top of it.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/tropical.smk"
include: "rules/calibrate.smk"
include: "rules/prune.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.report_tables.output,
        rules.report_comparison.output,
        rules.report_convergence.output,
        rules.figure_convergence.output,
        rules.report_score_vs_bytes.output,
        rules.figure_score_vs_bytes.output,
        rules.figure_objective.output,
        rules.figure_zonotope.output,
        rules.figure_score_vs_retained.output,
        expand(rules.figure_methods.output, task=TASKS),
        expand(rules.figure_delta.output, task=TASKS) if PAIRS else [],


onsuccess:
    # End-of-run summary: where the outputs are, and Table 1. Not called on dry runs; never raises.
    from adapter_pruning.summary import print_run_summary

    print_run_summary(config, workflow)
