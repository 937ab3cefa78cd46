"""Stage of rule ``prune``: build the masks of (scope, method, p) states and save each pruned adapter.

The methods are those of the registry :mod:`adapter_pruning.methods`; this stage reads what they
need (the adapter, Tropical's ``Â, B̂``, calibration statistics), has them choose their masks and
values, and writes and verifies the folders.

Tensor work only: the adapter's tensors are read from ``adapter.safetensors``, masked and written
back; no backbone is loaded (nothing here imports ``models``, ``transformers`` or ``adapters``).
Scoring a saved state is rule ``evaluate`` (:mod:`adapter_pruning.stages.evaluate`).

:func:`prune_states` writes one folder per ``p`` of one (λ, scope, method); :func:`prune_sweep`, which
rule ``prune`` calls, does so for each of several methods: one method and one ``p`` per job
(``evaluation.mode: per_state``) or every method and ``p`` of one (λ, scope) (``per_sweep``). The
folders are the same either way.

Under the unit scope ``UN`` a state's folder also holds ``structured/``: the same adapter with the
removed units dropped, a smaller standard AdapterHub adapter (:mod:`adapter_pruning.structured`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

log = logging.getLogger("adapter_pruning")


def prune_layers(inputs, method, ids: Mapping, p: float, ranking=None) -> tuple[list, dict]:
    """The pruned layers of state ``(ids['scope'], method, p)`` (new tensors with real zeros; the
    layers of ``inputs`` are left as they are) and its ``prune.json`` info (counts, retained share,
    the mask diagnostics against Standard's mask of the same count per scope group, slack).

    ``inputs``: :class:`adapter_pruning.methods.PruneInputs`; ``method``: a
    :class:`adapter_pruning.methods.MaskMethod`; ``ranking``: its ranking, when computed beforehand."""
    import torch

    from .. import masks, structured

    got = method.masks(inputs, p, ids["scope"], ranking)
    agreement = masks.mask_agreement(got.masks, got.reference)
    pruned = method.apply(inputs, got.masks)
    per_layer = masks.mask_report(got.masks)
    n_params = sum(r["n_params"] for r in per_layer)
    n_pruned = sum(r["n_pruned"] for r in per_layer)
    # The layers to be saved hold real zeros exactly where the mask says so.
    for lay, m in zip(pruned, got.masks):
        for t, mk in ((lay.A, m.A), (lay.B, m.B), (lay.up_bias, m.up_bias)):
            if not torch.all(t[mk] == 0):
                raise RuntimeError(f"{lay.prefix}: pruned entries are not zero after applying the mask")
    info = {
        **{k: ids[k] for k in ("model", "task", "seed", "lam", "scope")},
        "method": method.name,
        "p": float(p),
        "values": method.survivors,
        "n_params": n_params,
        "n_pruned": n_pruned,
        "retained": 1.0 - n_pruned / n_params,
        "jaccard_standard": agreement["jaccard_retained"],
        "pruned_outside_standard": agreement["pruned_outside"],
        "slack": got.slack,
        "layers": per_layer,
    }
    if ids["scope"] == masks.UNIT_SCOPE:
        gone = [structured.removed_units(m) for m in got.masks]
        info["units_removed"] = [torch.nonzero(g).flatten().tolist() for g in gone]
    return pruned, info


def _shrunk(pruned, units_removed) -> list:
    """The pruned layers without the units ``units_removed`` (per layer, from :func:`prune_layers`)."""
    import torch

    from .. import masks, structured

    unit_masks = []
    for layer, gone in zip(pruned, units_removed):
        removed = torch.zeros(layer.A.shape[0], dtype=torch.bool)
        removed[list(gone)] = True
        unit_masks.append(masks.unit_layer_mask(layer, removed))
    return structured.shrink(pruned, unit_masks)


def prune_states(
    ids: Mapping,
    ps: Sequence[float],
    adapter_dir,
    optimized_path,
    out_dirs: Sequence,
    *,
    calibration: Mapping | None = None,
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
        rest, [ids["method"]], ps, adapter_dir, optimized_path, out_dirs, calibration=calibration, threads=threads
    )


def prune_sweep(
    ids: Mapping,
    methods: Sequence[str],
    ps: Sequence[float],
    adapter_dir,
    optimized_path,
    out_dirs: Sequence,
    *,
    calibration: Mapping | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Prune the adapter in ``adapter_dir`` at every ``p`` of ``ps`` for each method of ``methods``
    (one λ and scope; names of :mod:`adapter_pruning.methods`); save the states method-major in
    ``out_dirs`` (every ``p`` of ``methods[0]``, then of ``methods[1]``, ...); return their
    ``prune.json`` infos in that order. The adapter, the optimised tensors and the calibration
    statistics are read once, and each method's scores once for all ``p``.

    ``ids`` holds ``model, task, seed, lam, scope``; ``optimized_path``: the tropical solve's
    ``optimized.safetensors`` (None when no method needs it); ``calibration``: ``{statistic: path}``
    of the calibration statistics (rule ``calibrate``) the methods need; ``threads``: torch's intra-op
    threads (``None``: torch's default). A method whose input is missing is refused by name before
    anything is written.

    Each folder is the trained adapter's folder with ``adapter.safetensors`` rewritten with the pruned
    tensors (:func:`artifacts.copy_adapter_with`), ``adapter.compact.safetensors`` (the same tensors,
    :func:`compact.write_beside`), plus ``prune.json``: the counts, λ, the values the survivors keep
    (``original``, ``optimized`` or ``updated``), the mask diagnostics of :func:`masks.mask_agreement`
    against Standard's mask with the same count in every scope group (``jaccard_standard``,
    ``pruned_outside_standard``; 1 and 0 for magnitude pruning itself), the ``slack``
    (:class:`masks.MethodMasks`), both files' sha256 and sizes (``dense_bytes``, ``compact_bytes``).
    Under the unit scope ``UN`` the folder also holds ``structured/`` (:func:`structured.write_structured`:
    the adapter without its removed units, loadable with plain ``load_adapter``), and ``prune.json``
    its ``structured_bytes``, ``structured_sha256``, the kept ``widths`` per layer and the removed units'
    indices per layer (``units_removed``). Each is written atomically and then
    checked (:func:`artifacts.verify_pruned`, :func:`compact.verify_beside`,
    :func:`structured.verify_beside`).
    """
    import torch

    from .. import artifacts, compact, masks, structured
    from .. import methods as registry

    if len(out_dirs) != len(methods) * len(ps):
        raise ValueError(f"{len(methods)} methods x {len(ps)} percentages but {len(out_dirs)} output folders")
    chosen = [registry.get(m) for m in methods]
    units = ids["scope"] == masks.UNIT_SCOPE
    needs = registry.needs_of(methods, ids["scope"])  # refuses a method without unit scores under UN
    calibration = dict(calibration or {})
    missing = [n for n in needs if n != "optimized" and n not in calibration]
    if "optimized" in needs and optimized_path is None:
        missing.insert(0, "optimized")
    if missing:
        raise ValueError(
            f"methods {list(methods)} need {', '.join(missing)}: "
            + "; ".join(f"{n} = {registry.NEEDS[n]}" for n in missing)
        )
    if threads:
        torch.set_num_threads(int(threads))
    state, name = artifacts.read_adapter_state(adapter_dir)
    layers = masks.extract_layers(state, name)
    inputs = registry.PruneInputs(
        layers=layers,
        optimized=artifacts.read_optimized(optimized_path, layers) if "optimized" in needs else None,
        seed=int(ids["seed"]),
        calibration={s: artifacts.read_calibration(s, calibration[s], layers) for s in needs if s in calibration},
    )
    infos = []
    for k, method in enumerate(chosen):
        method_ids = {**ids, "method": method.name}
        ranking = method.ranking(inputs, ids["scope"])
        for p, out_dir in zip(ps, out_dirs[k * len(ps) : (k + 1) * len(ps)]):
            pruned, info = prune_layers(inputs, method, method_ids, p, ranking)
            tensors = {**state, **masks.layers_to_state_dict(pruned)}
            shrunk = _shrunk(pruned, info["units_removed"]) if units else None

            def save(tmp, tensors=tensors, shrunk=shrunk):
                # the dense folder, the compact file, under UN the structured folder; prune.json gets the sizes
                artifacts.copy_adapter_with(tmp, adapter_dir, tensors)
                sizes = compact.write_beside(tmp, verify=False)  # verify_beside checks it below
                if shrunk is not None:
                    sizes.update(structured.write_structured(tmp / structured.STRUCTURED_DIR, adapter_dir, shrunk))
                return sizes

            info = artifacts.write_pruned(out_dir, save, info)
            artifacts.verify_pruned(out_dir)  # the saved file holds the zeros prune.json reports
            compact.verify_beside(out_dir, info)  # and the compact file exactly its tensors
            if units:
                structured.verify_beside(out_dir, info)  # and the structured adapter its kept units
            log.info(
                "%s %s p=%s: pruned %d of %d adapter parameters (retained %.4f; Jaccard with Standard %.4f, slack %d)",
                ids["scope"],
                method.name,
                p,
                info["n_pruned"],
                info["n_params"],
                info["retained"],
                info["jaccard_standard"],
                info["slack"],
            )
            infos.append(info)
    return infos
