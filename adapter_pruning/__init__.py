"""Tropical-geometry adapter pruning (Bhardwaj, Vaidya & Poria, 2023).

All real logic of the pipeline lives in this package; the Snakemake scripts are thin
wrappers around it. See ``docs/DESIGN.md`` for the module map.
"""

__version__ = "0.1.0"
