"""Snakemake entry point of rule report_score_vs_bytes (logic: adapter_pruning.sizes)."""

import json
import sys

sys.path.insert(0, snakemake.scriptdir + "/..")  # noqa: F821
from adapter_pruning.aggregate import load_results  # noqa: E402
from adapter_pruning.joblog import exit_now, logged  # noqa: E402
from adapter_pruning.sizes import score_vs_bytes, write_score_vs_bytes  # noqa: E402

sm = snakemake  # noqa: F821
spec = json.loads(sm.params.spec)
with logged(sm.log[0]):
    frame = score_vs_bytes(load_results(sm.input.results), lam=spec["lam"])
    write_score_vs_bytes(frame, dict(sm.output.items()), lam=spec["lam"])
exit_now()  # outputs are safely written: skip the slow interpreter teardown
