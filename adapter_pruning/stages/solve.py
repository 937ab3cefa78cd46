"""Stage of rule ``tropical_solve``: solve Eq. 2 for all adapter layers, in the conserved gauge."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

log = logging.getLogger("adapter_pruning")


def tropical_solve(
    spec: Mapping, adapter_dir, out_optimized, out_trace, out_info, *, device: str = "cpu", threads: int | None = None
) -> None:
    """Solve Eq. 2 for all adapter layers at once (float64), put the result in the conserved gauge,
    check it did not collapse, and save Â, B̂, the trace and a per-layer summary (``solve.json``).

    ``device`` defaults to the CPU, which the workflow always uses: the solver's per-step tensors
    are small, so it is launch-bound on a GPU (docs/benchmarks.md), and a CPU solve does not depend
    on the GPU model."""
    import polars as pl
    import torch

    from .. import artifacts, masks, tropical
    from ..io import write_json, write_parquet

    if threads:
        torch.set_num_threads(int(threads))
    dev = torch.device(device)
    state, name = artifacts.read_adapter_state(adapter_dir)
    layers = masks.extract_layers(state, name)
    prefixes = [layer.prefix for layer in layers]
    A, B = masks.stack_layers(layers)
    A, B = A.to(dev, torch.float64), B.to(dev, torch.float64)
    lam1, lam2, scale = tropical.layer_lambdas(A, B, spec["lam1"], spec["lam2"], relative=spec["lam_relative"])
    t0 = time.perf_counter()
    res = tropical.solve(
        A,
        B,
        lam1=lam1,
        lam2=lam2,
        method=spec["method"],
        steps=spec["steps"],
        lr=spec["lr"],
        tol=spec["tol"],
        layer_names=prefixes,
        max_zero_share=None if spec.get("allow_collapse", False) else tropical.MAX_ZERO_SHARE,
    )
    seconds = time.perf_counter() - t0
    trace = res.trace.detach().cpu().double()  # (n+1, L)
    zA, zB = (z.cpu() for z in tropical.zero_shares(res.A_hat, res.B_hat))
    log.info(
        "solved %d layers in %.2f s, %d steps, converged=%s; zeros in A_hat %s, B_hat %s",
        len(layers),
        seconds,
        res.steps,
        res.converged,
        [f"{z:.3f}" for z in zA.tolist()],
        [f"{z:.3f}" for z in zB.tolist()],
    )
    artifacts.write_optimized(out_optimized, res.A_hat, res.B_hat, prefixes)
    n, L = trace.shape
    write_parquet(
        pl.DataFrame(
            {
                "step": [s for s in range(n) for _ in range(L)],
                "layer": [k for _ in range(n) for k in range(L)],
                "prefix": [prefixes[k] for _ in range(n) for k in range(L)],
                "objective": trace.reshape(-1).tolist(),
            }
        ),
        out_trace,
    )
    per_layer = [
        {
            "layer": prefixes[k],
            "lam1": float(lam1[k]),
            "lam2": float(lam2[k]),
            "lambda_scale": float(scale[k]),
            "steps": int(res.layer_steps[k]),
            "objective_start": float(trace[0, k]),
            "objective_end": float(trace[-1, k]),
            "zeros_A_hat": float(zA[k]),
            "zeros_B_hat": float(zB[k]),
        }
        for k in range(L)
    ]
    write_json(
        {
            "adapter": name,
            "method": spec["method"],
            "gauge": "conserved",
            "steps": res.steps,
            "converged": bool(res.converged),
            "seconds": seconds,
            "layers": per_layer,
            "spec": dict(spec),
        },
        out_info,
    )
