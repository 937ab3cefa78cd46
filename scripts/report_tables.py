"""Snakemake entry point of rule report_tables (logic: adapter_pruning.aggregate)."""

import json  # noqa: E401
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning import aggregate  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402

sm = snakemake  # noqa: F821
spec = json.loads(sm.params.spec)
with logged(sm.log[0]):
    aggregate.write_tables(
        sm.input[0],
        table1={ext: sm.output[f"table1_{ext}"] for ext in ("md", "csv", "tex")},
        table2={ext: sm.output[f"table2_{ext}"] for ext in ("md", "csv", "tex")},
        table_scope=spec["table_scope"],
        table2_task=spec["table2_task"],
        lam=spec["lam"],
    )
exit_now()  # outputs are safely written: skip the slow interpreter teardown
