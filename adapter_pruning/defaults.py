"""Defaults of the tropical solver (how they were chosen: ``adapter_pruning.tropical``'s docstring
and ``docs/benchmarks.md``). Kept free of torch so that the workflow can fill in its config
without importing torch during a dry run."""

#: Default λ relative to ``lambda_scale(A, B)``: ``lam = DEFAULT_LAM_REL * lambda_scale(A, B)`` per
#: layer (the workflow's and the CLI's default; chosen by the sweep in docs/benchmarks.md).
DEFAULT_LAM_REL: float = 0.5
#: Absolute λ1 (weight of ``‖Ĝ1‖_{1,1}``) of ``tropical.solve`` when none is given: ``DEFAULT_LAM_REL``
#: at the scale of a MiniLM adapter trained with the paper's recipe (``lambda_scale`` ≈ 1.55e-3).
DEFAULT_LAM1: float = 8e-4
#: Absolute λ2 (weight of ``‖Ĝ2‖_{1,1}``), as ``DEFAULT_LAM1``.
DEFAULT_LAM2: float = 8e-4
#: Step size of Algorithm 1 relative to each layer's curvature (``tropical.algorithm1_step_size``;
#: ignored by ``method="fast"``).
DEFAULT_LR: float = 0.5
#: Maximum number of steps T.
DEFAULT_STEPS: int = 1000
#: Relative objective change below which a layer counts as converged.
DEFAULT_TOL: float = 1e-6
#: A layer whose ``Â`` or ``B̂`` has at least this share of exact zeros has collapsed (λ too large).
MAX_ZERO_SHARE: float = 0.99
