"""Snakemake entry point of rule report_convergence (logic: adapter_pruning.convergence)."""

import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.convergence import report_convergence  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    report_convergence(
        {(task, int(seed)): folder for (task, seed), folder in zip(sm.params.runs, sm.input.adapters)},
        sm.input.results,
        {task: (train, test) for task, train, test in zip(sm.params.tasks, sm.input.train, sm.input.test)},
        dict(sm.output.items()),
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
