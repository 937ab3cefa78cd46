"""One module per Snakemake rule: read the rule's inputs, call the package, write its outputs.

Each script in ``scripts/`` imports only its own stage module (``prepare``, ``train``,
``import_adapter``, ``dense_small``, ``evaluate``, ``solve``, ``prune``, ``calibrate``), so the code hash of a rule
(``adapter_pruning.codehash``, the import closure of its script) covers exactly the package modules
that rule runs. Everything
here is usable without Snakemake; every output is written atomically (``adapter_pruning.io``).
This file imports nothing on purpose.
"""
