"""Structured (unit-pruned) adapters saved as genuinely smaller standard AdapterHub adapters.

Under the unit scope ``UN`` (:mod:`adapter_pruning.masks`) a pruned layer has whole units removed:
row ``j`` of ``A`` (``adapter_down.0.weight[j]`` and ``adapter_down.0.bias[j]``) and column ``j`` of
``B`` (``adapter_up.weight[:, j]``) are zero. Such a unit contributes exactly nothing to
``h + B ReLU(A x̃) + b_u`` (``ReLU(0) = 0``), so dropping it gives a narrower bottleneck with the same
function: :func:`shrink` does that (layer ``l`` keeps ``w_l >= 1`` units, in their order), and
:func:`write_structured` saves the result as an AdapterHub folder that plain ``adapters`` code loads::

    model.load_adapter(folder, use_safetensors=True)      # with_head=True for the head, if saved

Its ``adapter_config.json`` is the source adapter's with ``config.reduction_factor`` replaced by the
per-layer mapping ``adapters`` supports (``{"<layer index>": factor}``, one entry per adapter layer);
``adapters`` 1.3.0 builds layer ``l``'s bottleneck with ``int(hidden_size // factor)`` units
(``methods/bottleneck.py``), so :func:`reduction_factor` gives ``d / (w + 0.5)``, which yields exactly
``w`` however the division rounds (``d / w`` can come out as ``w − 1``: ``384 // (384 / 23)`` is 22
in floating point). The weight file keeps the source's name, format, key names, dtypes and (for
safetensors) metadata, with the four tensors of every adapter layer narrowed; the head files are
copied unchanged.

The layer index of a prefix is the number after ``.layer.``, ``.layers.``, ``.h.`` or ``.block.``
(``bert.encoder.layer.3.output.adapters.<name>`` is layer 3), the index ``adapters`` gives the
mapping; two adapter layers of one index (Houlsby's attention and output adapters) share the factor,
so they must keep the same number of units, which unit pruning guarantees (the same ``p`` and ``r``).

A structured folder sits in a pruned state's folder as ``structured/`` (rule ``prune`` and
``adapter-prune --scope UN``); ``prune.json`` records ``structured_bytes``, ``structured_sha256``,
``widths`` and ``units_removed``, and :func:`verify_beside` checks the folder against them and against
the dense pruned weights beside it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from .compact import read_weight_file, weight_file
from .io import CorruptFileError, sha256_file

__all__ = [
    "STRUCTURED_DIR",
    "layer_index",
    "reduction_factor",
    "reduction_factors",
    "removed_units",
    "shrink",
    "verify_beside",
    "widths",
    "write_structured",
]

#: The structured adapter's folder inside a pruned state's folder.
STRUCTURED_DIR = "structured"
_HEAD_FILES = ("head_config.json", "model_head.safetensors", "pytorch_model_head.bin")
_LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")


def removed_units(mask):
    """The units a :class:`~adapter_pruning.masks.LayerMask` removes, bool ``(r,)`` (``True`` = removed).

    Raises:
        ValueError: the mask is not a unit mask: a row of ``A`` or a column of ``B`` partly masked,
            row ``j`` and column ``j`` disagreeing, or a masked up-bias entry.
    """
    rows = mask.A.all(dim=1)
    cols = mask.B.all(dim=0)
    if not bool((mask.A.any(dim=1) == rows).all()) or not bool((mask.B.any(dim=0) == cols).all()):
        raise ValueError(f"layer {mask.prefix!r}: not a unit mask (a row of A or a column of B is partly masked)")
    if not bool((rows == cols).all()):
        raise ValueError(f"layer {mask.prefix!r}: not a unit mask (row j of A and column j of B disagree)")
    if bool(mask.up_bias.any()):
        raise ValueError(f"layer {mask.prefix!r}: not a unit mask (the up bias is masked)")
    return rows


def shrink(layers: Sequence, masks: Sequence) -> list:
    """The layers without the units their unit masks remove.

    Args:
        layers: ``masks.AdapterLayer`` objects, normally ``masks.apply_masks(layers, masks)`` (the removed
            units hold zeros then, and the result has exactly the masked adapter's function).
        masks: one unit mask per layer (:func:`adapter_pruning.masks.unit_masks`), same order and prefixes.

    Returns:
        New ``AdapterLayer`` objects of width ``w_l`` (the kept units, in their order): ``A (w_l, d+1)``,
        ``B (d, w_l)``, the up bias unchanged.

    Raises:
        ValueError: a mask that is not a unit mask, or that removes every unit of a layer.
    """
    from .masks import AdapterLayer

    if len(layers) != len(masks):
        raise ValueError(f"shrink: {len(layers)} layers but {len(masks)} masks")
    out = []
    for layer, mask in zip(layers, masks):
        if mask.prefix != layer.prefix or mask.A.shape != layer.A.shape or mask.B.shape != layer.B.shape:
            raise ValueError(f"shrink: the mask of {mask.prefix!r} does not fit layer {layer.prefix!r}")
        keep = ~removed_units(mask).to(layer.A.device)
        if not bool(keep.any()):
            raise ValueError(f"layer {layer.prefix!r}: every unit is removed (a bottleneck keeps at least one)")
        out.append(
            AdapterLayer(
                prefix=layer.prefix,
                A=layer.A[keep].clone(),
                B=layer.B[:, keep].clone(),
                up_bias=layer.up_bias.clone(),
            )
        )
    return out


def widths(layers: Sequence) -> list[int]:
    """The bottleneck width ``r`` of every layer."""
    return [int(layer.A.shape[0]) for layer in layers]


def layer_index(prefix: str) -> int:
    """The transformer layer index of an adapter layer's prefix (module docstring)."""
    m = _LAYER_INDEX.search(prefix + ".")
    if m is None:
        raise ValueError(
            f"adapter layer {prefix!r}: no layer index found (expected '.layer.<i>.', '.layers.<i>.', '.h.<i>.' or "
            "'.block.<i>.' in the name), so its reduction factor cannot be given per layer"
        )
    return int(m.group(1))


def reduction_factor(d: int, width: int) -> float:
    """A factor ``f`` with ``int(d // f) == width`` (``adapters``' rule): ``d / (width + 0.5)``."""
    if not 1 <= width <= d:
        raise ValueError(f"a bottleneck width must lie in [1, d = {d}], got {width}")
    f = d / (width + 0.5)
    if int(d // f) != width:  # cannot happen for width <= d < 2**52; a guard, not a code path
        raise RuntimeError(f"reduction factor {f!r} gives width {int(d // f)}, not {width}")
    return f


def reduction_factors(layers: Sequence) -> dict[str, float]:
    """The ``reduction_factor`` mapping ``{"<layer index>": factor}`` of the layers' widths (sorted by
    index). Raises ``ValueError`` when two layers of one index have different widths or ``d``."""
    by_index: dict[int, tuple[int, int, str]] = {}
    for layer in layers:
        i, w, d = layer_index(layer.prefix), int(layer.A.shape[0]), int(layer.B.shape[0])
        if i in by_index and by_index[i][:2] != (w, d):
            raise ValueError(
                f"adapter layers {by_index[i][2]!r} and {layer.prefix!r} share layer index {i} (one reduction factor) "
                f"but have widths {by_index[i][0]} and {w}"
            )
        by_index[i] = (w, d, layer.prefix)
    return {str(i): reduction_factor(d, w) for i, (w, d, _) in sorted(by_index.items())}


def write_structured(dst, adapter_dir, shrunk: Sequence) -> dict:
    """Write the narrowed layers ``shrunk`` (:func:`shrink`) as an AdapterHub folder ``dst`` (created; it
    must not exist). Not atomic by itself: build it inside a folder being written atomically
    (``io.atomic_dir``), as rule ``prune`` and ``adapter-prune`` do.

    Args:
        dst: the new folder.
        adapter_dir: the source adapter's folder (``adapter_config.json``, its weight file
            ``adapter.safetensors`` or ``pytorch_adapter.bin``, optionally the head files): the config,
            the other tensors of the weight file, its name, format and metadata, and the head come from it.
        shrunk: one narrowed ``masks.AdapterLayer`` per adapter layer of the source.

    Returns:
        ``{"structured_bytes": size of the weight file, "structured_sha256", "widths": per layer}``.
    """
    from safetensors.torch import save_file

    from .masks import layers_to_state_dict

    src, dst = Path(adapter_dir), Path(dst)
    weights = weight_file(src)
    state, metadata = read_weight_file(weights)
    new = layers_to_state_dict(shrunk)
    missing = sorted(set(new) - set(state))
    if missing:
        raise ValueError(f"{weights}: has no tensor {missing[0]!r} of the layers to write")
    out = {k: (new[k].to(v.dtype) if k in new else v).detach().cpu().contiguous() for k, v in state.items()}
    cfg = json.loads((src / "adapter_config.json").read_text())
    cfg["config"]["reduction_factor"] = reduction_factors(shrunk)
    dst.mkdir()
    (dst / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    target = dst / weights.name
    if target.suffix == ".safetensors":
        save_file(out, str(target), metadata=metadata)
    else:
        import torch

        torch.save(out, str(target))
    for name in _HEAD_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    return {
        "structured_bytes": target.stat().st_size,
        "structured_sha256": sha256_file(target),
        "widths": widths(shrunk),
    }


def verify_beside(state_dir, expected: Mapping) -> None:
    """Check the structured folder of a pruned state against its record ``expected`` (``prune.json``:
    ``structured_bytes``, ``structured_sha256``, ``widths``, ``units_removed``) and against the dense
    pruned weights beside it: its config maps every layer to its width, its layers are the dense
    layers' kept units bit for bit, and the dense layers' removed units are all zeros (so both have one
    function). Raises :class:`~adapter_pruning.io.CorruptFileError` naming the file."""
    import torch

    from .masks import extract_layers

    folder = Path(state_dir)
    sdir = folder / STRUCTURED_DIR
    if not sdir.is_dir():
        raise CorruptFileError(f"{sdir}: missing; rerun the rule that wrote {folder}")
    weights = weight_file(sdir)
    for key, got in (("structured_bytes", weights.stat().st_size), ("structured_sha256", sha256_file(weights))):
        if expected.get(key) != got:
            raise CorruptFileError(f"{weights}: {key} is {got}, but the record says {expected.get(key)!r}")
    cfg = json.loads((sdir / "adapter_config.json").read_text())
    name = cfg.get("name")
    small = extract_layers(read_weight_file(weights)[0], name)
    dense = extract_layers(read_weight_file(weight_file(folder))[0], name)
    removed = expected.get("units_removed")
    if [layer.prefix for layer in small] != [layer.prefix for layer in dense] or removed is None:
        raise CorruptFileError(f"{weights}: its layers do not match {folder}'s, or the record has no units_removed")
    if widths(small) != list(expected.get("widths", [])):
        raise CorruptFileError(f"{weights}: widths {widths(small)}, but the record says {expected.get('widths')}")
    if cfg["config"].get("reduction_factor") != reduction_factors(small):
        raise CorruptFileError(f"{sdir / 'adapter_config.json'}: its reduction_factor does not give the layers' widths")
    for s, d, gone in zip(small, dense, removed):
        r = d.A.shape[0]
        keep = torch.ones(r, dtype=torch.bool)
        keep[list(gone)] = False
        same = all(
            torch.equal(x.contiguous().view(torch.uint8), y.contiguous().view(torch.uint8))
            for x, y in ((s.A, d.A[keep]), (s.B, d.B[:, keep]), (s.up_bias, d.up_bias))
        )
        if not same or bool(d.A[~keep].any()) or bool(d.B[:, ~keep].any()):
            raise CorruptFileError(f"{weights}: layer {s.prefix!r} is not the dense adapter's kept units")
