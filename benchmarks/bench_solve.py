"""Time ``tropical.solve``: the fast solver vs the paper's Algorithm 1 on RoBERTa-base-shaped adapters.

Shapes: 12 layers, d = 768, r = 48 (reduction factor 16). Weights at the ``adapters`` library's
init scale (``init_weights="bert"``: ``N(0, 0.02²)`` weights, zero biases). λ1 = λ2 =
``DEFAULT_LAM_REL * lambda_scale(A, B)`` per layer (the recommended scale-aware choice).

* fast: all 12 layers at once, ``T`` steps forced (``tol=0``), and with the default ``tol``;
  best of ``--repeats`` runs.
* algorithm1: ``--algo1-steps`` steps on the first ``--algo1-layers`` of those layers, extrapolated
  linearly to all layers and ``T`` steps (it solves layer after layer, each step costs the same).

Usage: ``.venv/bin/python benchmarks/bench_solve.py [--steps 1000] [--algo1-steps 2] [--device cpu|cuda]
[--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from adapter_pruning.tropical import DEFAULT_LAM_REL, DEFAULT_TOL, lambda_scale, solve


def init_scale_adapters(L: int, d: int, r: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``A (L, r, d+1)``, ``B (L, d, r)`` as ``init_weights="bert"`` draws them (float32)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.cat([0.02 * torch.randn(L, r, d, generator=g), torch.zeros(L, r, 1)], dim=-1)
    B = 0.02 * torch.randn(L, d, r, generator=g)
    return A, B


def _sync() -> None:
    """Wait for queued CUDA work, so wall times cover it (no-op without CUDA)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--r", type=int, default=48)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--algo1-steps", type=int, default=2)
    ap.add_argument("--algo1-layers", type=int, default=2)
    ap.add_argument("--algo1-lr", type=float, default=None, help="default: tropical.DEFAULT_LR")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (adapter_pruning.models.resolve_device)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    from adapter_pruning.models import resolve_device

    device = resolve_device(args.device)
    A, B = (t.to(device) for t in init_scale_adapters(args.layers, args.d, args.r))
    lam = DEFAULT_LAM_REL * lambda_scale(A, B)
    solve(A, B, lam1=lam, lam2=lam, steps=5, tol=0.0)  # warm-up

    t_fast, res = timed(lambda: solve(A, B, lam1=lam, lam2=lam, steps=args.steps, tol=0.0), args.repeats)
    t_tol, res_tol = timed(lambda: solve(A, B, lam1=lam, lam2=lam, steps=args.steps), args.repeats)
    a1 = {} if args.algo1_lr is None else {"lr": args.algo1_lr}
    La = min(args.algo1_layers, args.layers)
    _sync()
    t0 = time.perf_counter()
    ref = solve(
        A[:La], B[:La], lam1=lam[:La], lam2=lam[:La], steps=args.algo1_steps, tol=0.0, method="algorithm1", **a1
    )
    _sync()
    t_a1 = time.perf_counter() - t0
    t_a1_T = t_a1 / args.algo1_steps * args.steps * args.layers / La
    fast_at = solve(A[:La], B[:La], lam1=lam[:La], lam2=lam[:La], steps=args.algo1_steps, tol=0.0)

    fig = {
        "shape": {"layers": args.layers, "d": args.d, "r": args.r},
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "lam_rel": DEFAULT_LAM_REL,
        "fast_s_T_steps_tol0": t_fast,
        "fast_objective_T": float(res.trace[-1].sum()),
        "fast_s_default_tol": t_tol,
        "fast_steps_default_tol": res_tol.steps,
        "default_tol": DEFAULT_TOL,
        "algorithm1_s_measured": t_a1,
        "algorithm1_steps_measured": args.algo1_steps,
        "algorithm1_layers_measured": La,
        "algorithm1_s_extrapolated_T": t_a1_T,
        "ratio_algorithm1_over_fast": t_a1_T / t_fast,
        "objective_initial": float(res.trace[0].sum()),
        f"objective_initial_first_{La}_layers": float(res.trace[0, :La].sum()),
        f"objective_after_{args.algo1_steps}_steps_fast": float(fast_at.trace[-1].sum()),
        f"objective_after_{args.algo1_steps}_steps_algorithm1": float(ref.trace[-1].sum()),
    }
    print(
        f"shape: {args.layers} layers, d={args.d}, r={args.r}; device {fig['device']}; torch threads: {fig['threads']}"
    )
    print(f"fast, T={args.steps} forced (tol=0):      {t_fast:8.3f} s   objective {fig['fast_objective_T']:.6g}")
    print(f"fast, default tol={DEFAULT_TOL:g}:            {t_tol:8.3f} s   ({res_tol.steps} steps)")
    print(
        f"algorithm1, {args.algo1_steps} steps x {La} layers measured: {t_a1:8.3f} s   "
        f"-> {args.layers} layers, T={args.steps}: {t_a1_T:9.1f} s (extrapolated)"
    )
    print(f"ratio algorithm1 / fast at T={args.steps}:  {fig['ratio_algorithm1_over_fast']:8.0f} x")
    print(
        f"objective of those {La} layers after {args.algo1_steps} steps: "
        f"fast {fig[f'objective_after_{args.algo1_steps}_steps_fast']:.6g}, "
        f"algorithm1 {fig[f'objective_after_{args.algo1_steps}_steps_algorithm1']:.6g} "
        f"(initial {fig[f'objective_initial_first_{La}_layers']:.6g})"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(fig, fh, indent=2)


if __name__ == "__main__":
    main()
