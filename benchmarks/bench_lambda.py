"""Sweep the relative λ of the tropical solve on real trained adapters (issue 11; docs/benchmarks.md).

For each adapter directory (AdapterHub format, e.g. ``results/minilm/trec/seed0/adapter`` of the
default run) and each relative ``λ`` (``λ1 = λ2 = λ_rel · lambda_scale(A, B)`` per layer, as the
workflow does), it solves Eq. 2 with the fast solver and, unless ``--no-algorithm1``, with the
paper's Algorithm 1 (``--algo1-steps`` steps), both put in the conserved gauge, and prints:

* ``zeros_A``, ``zeros_B``: share of exact zeros in ``Â``, ``B̂`` (mean over layers; ``max`` = the
  largest layer share, which the collapse check looks at);
* ``obj``: final objective / initial objective (mean over layers), ``move``: relative generator
  movement ``(‖Ĝ1−G1‖² + ‖Ĝ2−G2‖²) / (‖G1‖² + ‖G2‖²)``;
* ``J_std``: retained-set Jaccard of Tropical with the count-matched Standard mask (CU), mean over
  ``p`` in {98, 96, 94, 90, 80, 60};
* ``J_alg1``: retained-set Jaccard of the fast solver's Tropical masks with Algorithm 1's (CU),
  mean over ``p`` >= 80 (the issue's acceptance measure);
* ``pruned@p``: Tropical's pruned share at p = 2, 5, 10, 50 as a fraction of ``p``.

Usage: ``.venv/bin/python benchmarks/bench_lambda.py ADAPTER_DIR [...] [--lam 0.1 0.25 ...]
[--algo1-steps 100] [--algo1-lam 0.25 1] [--no-algorithm1] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from adapter_pruning import artifacts, masks, tropical

P_STD = (98, 96, 94, 90, 80, 60)
P_ALG1 = (98, 96, 94, 90, 80)
P_SMALL = (2, 5, 10, 50)


def _mean_jaccard(layers, opt_a, opt_b, ps, method_b="tropical"):
    js = []
    for p in ps:
        ma = masks.pruning_masks(layers, opt_a, p, "CU")
        mb = masks.pruning_masks(layers, opt_b, p, "CU") if opt_b is not None else ma
        js.append(masks.mask_agreement(ma["tropical"], mb[method_b])["jaccard_retained"])
    return sum(js) / len(js)


def sweep(adapter_dir: Path, lams, algo1_steps: int | None, algo1_lams=None) -> list[dict]:
    layers = artifacts.read_adapter_layers(adapter_dir)
    A, B = masks.stack_layers(layers)
    A, B = A.double(), B.double()
    scale = tropical.lambda_scale(A, B)
    G1, G2 = tropical.generators(A, B)
    g_norm = G1.pow(2).sum((-3, -2, -1)) + G2.pow(2).sum((-3, -2, -1))
    n_total = sum(layer.n_params for layer in layers)
    rows = []
    for lam_rel in lams:
        lam = lam_rel * scale
        t0 = time.perf_counter()
        raw_f = tropical.solve(A, B, lam1=lam, lam2=lam, gauge=False)
        fast_s = time.perf_counter() - t0
        res = raw_f  # the gauged solution: same objective, trace and zeros
        res_A, res_B = tropical.conserved_gauge(A, B, raw_f.A_hat, raw_f.B_hat)
        opt = list(zip(res_A, res_B))
        zA, zB = tropical.zero_shares(res_A, res_B)
        H1, H2 = tropical.generators(res_A, res_B)
        move = ((H1 - G1).pow(2).sum((-3, -2, -1)) + (H2 - G2).pow(2).sum((-3, -2, -1))) / g_norm
        row = {
            "adapter": str(adapter_dir),
            "lam_rel": lam_rel,
            "steps": res.steps,
            "fast_s": round(fast_s, 3),
            "zeros_A": float(zA.mean()),
            "zeros_B": float(zB.mean()),
            "zeros_max": float(torch.maximum(zA, zB).max()),
            "obj": float((res.trace[-1] / res.trace[0]).mean()),
            "move": float(move.mean()),
            "J_std": _mean_jaccard(layers, opt, None, P_STD, method_b="standard"),
        }
        for p in P_SMALL:
            pruned = sum(m.n_pruned for m in masks.pruning_masks(layers, opt, p, "CU")["tropical"])
            row[f"pruned@{p}"] = pruned / n_total / (p / 100)
        if algo1_steps and (algo1_lams is None or lam_rel in algo1_lams):
            t0 = time.perf_counter()
            raw_a = tropical.solve(A, B, lam1=lam, lam2=lam, method="algorithm1", steps=algo1_steps, gauge=False)
            row["alg1_s"] = round(time.perf_counter() - t0, 1)
            row["alg1_obj_vs_fast"] = float((raw_a.trace[-1] / res.trace[-1]).mean())
            ref_A, ref_B = tropical.conserved_gauge(A, B, raw_a.A_hat, raw_a.B_hat)
            row["J_alg1"] = _mean_jaccard(layers, opt, list(zip(ref_A, ref_B)), P_ALG1)
            row["J_alg1_ungauged"] = _mean_jaccard(
                layers, list(zip(raw_f.A_hat, raw_f.B_hat)), list(zip(raw_a.A_hat, raw_a.B_hat)), P_ALG1
            )
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("adapters", nargs="+", type=Path, help="trained adapter directories (AdapterHub format)")
    ap.add_argument("--lam", nargs="+", type=float, default=[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--algo1-steps", type=int, default=100)
    ap.add_argument("--algo1-lam", nargs="+", type=float, help="run Algorithm 1 only at these λ (default: all)")
    ap.add_argument("--no-algorithm1", action="store_true")
    ap.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for adapter in args.adapters:
        rows += sweep(adapter, args.lam, None if args.no_algorithm1 else args.algo1_steps, args.algo1_lam)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
