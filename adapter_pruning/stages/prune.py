"""Stage of rule ``prune``: build the masks of (scope, method, p) states and save each pruned adapter.

Tensor work only: the adapter's tensors are read from ``adapter.safetensors``, masked and written
back; no backbone is loaded (nothing here imports ``models``, ``transformers`` or ``adapters``).
Scoring a saved state is rule ``evaluate`` (:mod:`adapter_pruning.stages.evaluate`).

:func:`prune_states` writes one folder per ``p`` of one (λ, scope, method); :func:`prune_sweep`, which
rule ``prune`` calls, does so for each of several methods: one method and one ``p`` per job
(``evaluation.mode: per_state``) or every method and ``p`` of one (λ, scope) (``per_sweep``). The
folders are the same either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

log = logging.getLogger("adapter_pruning")


def baseline_scores(method: str, layers, *, seed: int, input_rms=None) -> dict:
    """``{method: per-layer scores}`` for a baseline method (``random``: seeded by the run's ``seed``;
    ``activation``: from the calibration norms), ``{}`` for ``standard`` and ``tropical``."""
    from .. import masks

    if method == "random":
        return {"random": masks.random_scores(layers, seed)}
    if method == "activation":
        if input_rms is None:
            raise ValueError("method 'activation' needs the calibration norms (rule calibrate)")
        return {"activation": masks.activation_scores(layers, input_rms)}
    return {}


def prune_layers(layers, optimized, ids: Mapping, p: float, values: str, scores: Mapping) -> tuple[list, dict]:
    """The pruned layers of state ``(ids['scope'], ids['method'], p)`` (new tensors with real zeros;
    ``layers`` are left as they are) and its ``prune.json`` info (counts, retained share, mask
    diagnostics against the count-matched Standard mask). ``scores``: :func:`baseline_scores`."""
    import torch

    from .. import masks

    both = masks.pruning_masks(layers, optimized, p, ids["scope"], scores=scores)
    chosen = both[ids["method"]]
    agreement = masks.mask_agreement(chosen, both["standard"])
    pruned = masks.apply_masks(layers, chosen, values=values, optimized=optimized if values == "optimized" else None)
    per_layer = masks.mask_report(chosen)
    n_params = sum(r["n_params"] for r in per_layer)
    n_pruned = sum(r["n_pruned"] for r in per_layer)
    # The layers to be saved hold real zeros exactly where the mask says so.
    for lay, m in zip(pruned, chosen):
        for t, mk in ((lay.A, m.A), (lay.B, m.B), (lay.up_bias, m.up_bias)):
            if not torch.all(t[mk] == 0):
                raise RuntimeError(f"{lay.prefix}: pruned entries are not zero after applying the mask")
    info = {
        **{k: ids[k] for k in ("model", "task", "seed", "lam", "scope", "method")},
        "p": float(p),
        "values": values,
        "n_params": n_params,
        "n_pruned": n_pruned,
        "retained": 1.0 - n_pruned / n_params,
        "jaccard_standard": agreement["jaccard_retained"],
        "pruned_outside_standard": agreement["pruned_outside"],
        "layers": per_layer,
    }
    return pruned, info


def prune_states(
    ids: Mapping,
    ps: Sequence[float],
    spec: Mapping,
    adapter_dir,
    optimized_path,
    out_dirs: Sequence,
    *,
    calibration_path=None,
    threads: int | None = None,
) -> list[dict]:
    """Prune the adapter in ``adapter_dir`` at every ``p`` of ``ps`` for one (λ, scope, method); save
    state ``ps[k]`` in ``out_dirs[k]``; return the ``prune.json`` infos. ``ids`` holds
    ``model, task, seed, lam, scope, method``; the rest as :func:`prune_sweep`, which this is for one
    method."""
    if len(ps) != len(out_dirs):
        raise ValueError(f"{len(ps)} percentages but {len(out_dirs)} output folders")
    rest = {k: v for k, v in ids.items() if k != "method"}
    return prune_sweep(
        rest,
        [ids["method"]],
        ps,
        spec,
        adapter_dir,
        optimized_path,
        out_dirs,
        calibration_path=calibration_path,
        threads=threads,
    )


def prune_sweep(
    ids: Mapping,
    methods: Sequence[str],
    ps: Sequence[float],
    spec: Mapping,
    adapter_dir,
    optimized_path,
    out_dirs: Sequence,
    *,
    calibration_path=None,
    threads: int | None = None,
) -> list[dict]:
    """Prune the adapter in ``adapter_dir`` at every ``p`` of ``ps`` for each method of ``methods``
    (one λ and scope); save the states method-major in ``out_dirs`` (every ``p`` of ``methods[0]``,
    then of ``methods[1]``, ...); return their ``prune.json`` infos in that order. The adapter, the
    optimised tensors and the calibration norms are read once.

    ``ids`` holds ``model, task, seed, lam, scope``; ``spec`` holds ``values`` (``original`` or
    ``optimized``); ``calibration_path``: the calibration norms, needed when ``methods`` holds
    ``activation``; ``threads``: torch's intra-op threads (``None``: torch's default).

    Each folder is the trained adapter's folder with ``adapter.safetensors`` rewritten with the pruned
    tensors (:func:`artifacts.copy_adapter_with`), ``adapter.compact.safetensors`` (the same tensors,
    :func:`compact.write_beside`), plus ``prune.json``: the counts, λ and the mask diagnostics of
    :func:`masks.mask_agreement` against the count-matched Standard mask of the same scope groups
    (``jaccard_standard``, ``pruned_outside_standard``; 1 and 0 for Standard itself), both files' sha256
    and sizes (``dense_bytes``, ``compact_bytes``). Each is written atomically and then checked
    (:func:`artifacts.verify_pruned`, :func:`compact.verify_beside`).
    """
    import torch

    from .. import artifacts, compact, masks

    if len(out_dirs) != len(methods) * len(ps):
        raise ValueError(f"{len(methods)} methods x {len(ps)} percentages but {len(out_dirs)} output folders")
    if threads:
        torch.set_num_threads(int(threads))
    state, name = artifacts.read_adapter_state(adapter_dir)
    layers = masks.extract_layers(state, name)
    optimized = artifacts.read_optimized(optimized_path, layers)
    needs_rms = calibration_path and "activation" in methods
    input_rms = artifacts.read_input_rms(calibration_path, layers) if needs_rms else None
    infos = []
    for k, method in enumerate(methods):
        method_ids = {**ids, "method": method}
        scores_by_method = baseline_scores(method, layers, seed=int(ids["seed"]), input_rms=input_rms)
        for p, out_dir in zip(ps, out_dirs[k * len(ps) : (k + 1) * len(ps)]):
            pruned, info = prune_layers(layers, optimized, method_ids, p, spec["values"], scores_by_method)
            tensors = {**state, **masks.layers_to_state_dict(pruned)}

            def save(tmp, tensors=tensors):  # the dense folder, then the compact file; prune.json gets both sizes
                artifacts.copy_adapter_with(tmp, adapter_dir, tensors)
                return compact.write_beside(tmp, verify=False)  # verify_beside checks it below

            info = artifacts.write_pruned(out_dir, save, info)
            artifacts.verify_pruned(out_dir)  # the saved file holds the zeros prune.json reports
            compact.verify_beside(out_dir, info)  # and the compact file exactly its tensors
            log.info(
                "%s %s p=%s: pruned %d of %d adapter parameters (retained %.4f; Jaccard with Standard %.4f)",
                ids["scope"],
                method,
                p,
                info["n_pruned"],
                info["n_params"],
                info["retained"],
                info["jaccard_standard"],
            )
            infos.append(info)
    return infos
