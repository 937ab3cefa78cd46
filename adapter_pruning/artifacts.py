"""On-disk formats of the pipeline's tensor artifacts: one reader/writer/verifier per artifact.

* **adapter directory** (``.../adapter/`` and every pruned state's ``.../pruned/<scope>/<method>/p<p>/``):
  AdapterHub format as ``model.save_adapter`` writes it: ``adapter_config.json`` (with the adapter's
  ``name``), ``adapter.safetensors`` (the adapter's tensors under their full parameter names), and
  optionally ``head_config.json`` + ``model_head.safetensors``. Read with :func:`read_adapter_state`
  / :func:`read_adapter_layers`.
* **optimized tensors** (``.../tropical/optimized.safetensors``): ``A_hat (L, r, d+1)`` and
  ``B_hat (L, d, r)`` in float32, in the conserved gauge, with one metadata key ``prefixes`` (the
  layers' prefixes, comma-joined). :func:`write_optimized` / :func:`read_optimized`.
* **pruned adapter** = an adapter directory plus ``prune.json`` (counts, diagnostics and the sha256
  of ``adapter.safetensors``). :func:`write_pruned` / :func:`verify_pruned`.

Every write is atomic (``adapter_pruning.io``); every reader raises
:class:`~adapter_pruning.io.CorruptFileError` naming the file when it is unreadable or inconsistent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .io import CorruptFileError, atomic_dir, atomic_path, read_json, sha256_file, write_json

__all__ = [
    "read_adapter_state",
    "read_adapter_layers",
    "write_optimized",
    "read_optimized",
    "write_pruned",
    "verify_pruned",
]


def read_adapter_state(adapter_dir) -> tuple[dict, str]:
    """The saved adapter's tensors (``{name: Tensor}``, on the CPU) and its name (``adapter_config.json``)."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    cfg = read_json(adapter_dir / "adapter_config.json")
    if "name" not in cfg:
        raise CorruptFileError(f"{adapter_dir / 'adapter_config.json'}: no 'name' key")
    try:
        state = load_file(adapter_dir / "adapter.safetensors")
    except Exception as exc:
        raise CorruptFileError(f"{adapter_dir / 'adapter.safetensors'}: unreadable safetensors file ({exc})") from exc
    return state, cfg["name"]


def read_adapter_layers(adapter_dir) -> list:
    """The adapter's bottleneck layers (``masks.AdapterLayer``, natural layer order)."""
    from .masks import extract_layers

    state, name = read_adapter_state(adapter_dir)
    return extract_layers(state, name)


def write_optimized(path, A_hat, B_hat, prefixes: Sequence[str]) -> None:
    """Save ``A_hat (L, r, d+1)``, ``B_hat (L, d, r)`` as float32 safetensors, atomically.

    One metadata key only: safetensors keeps metadata in a hash map whose order varies between
    processes, so two keys would make identical solves differ byte-wise.
    """
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(
            {"A_hat": A_hat.detach().cpu().float().contiguous(), "B_hat": B_hat.detach().cpu().float().contiguous()},
            str(tmp),
            metadata={"prefixes": ",".join(prefixes)},
        )


def read_optimized(path, layers) -> list:
    """Read ``optimized.safetensors`` back as ``[(A_hat, B_hat)]`` matching ``layers`` (checked; each
    layer's dtype, on the CPU: ``masks`` moves them to the layer's device)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            A_hat, B_hat = f.get_tensor("A_hat"), f.get_tensor("B_hat")
    except Exception as exc:
        raise CorruptFileError(f"{path}: unreadable optimized weights ({exc}); rerun tropical_solve") from exc
    prefixes = meta.get("prefixes", "").split(",")
    if prefixes != [layer.prefix for layer in layers] or A_hat.shape[0] != len(layers):
        raise CorruptFileError(
            f"{path}: optimized weights do not match the adapter's layers {[layer.prefix for layer in layers]}"
        )
    return [(A_hat[k].to(layer.A.dtype), B_hat[k].to(layer.B.dtype)) for k, layer in enumerate(layers)]


def write_pruned(out_dir, save_adapter: Callable[[Path], None], info: Mapping) -> dict:
    """Write a pruned adapter directory atomically: ``save_adapter(tmp_dir)`` writes the AdapterHub
    files, then ``prune.json`` = ``info`` plus ``adapter_sha256``. Returns the written info."""
    info = dict(info)
    with atomic_dir(out_dir) as tmp:
        save_adapter(Path(tmp))
        info["adapter_sha256"] = sha256_file(Path(tmp) / "adapter.safetensors")
        write_json(info, Path(tmp) / "prune.json")
    return info


def verify_pruned(pruned_dir) -> dict:
    """Check a saved pruned adapter against its ``prune.json``: checksum and number of zeros.

    Returns the prune info; raises :class:`~adapter_pruning.io.CorruptFileError` naming the file.
    """
    from .masks import extract_layers

    pruned_dir = Path(pruned_dir)
    info = read_json(pruned_dir / "prune.json")
    f = pruned_dir / "adapter.safetensors"
    if sha256_file(f) != info["adapter_sha256"]:
        raise CorruptFileError(f"{f}: checksum differs from prune.json; the file was truncated or modified")
    state, name = read_adapter_state(pruned_dir)
    layers = extract_layers(state, name)
    zeros = sum(int((t == 0).sum()) for layer in layers for t in (layer.A, layer.B, layer.up_bias))
    if zeros < info["n_pruned"]:
        raise CorruptFileError(f"{f}: holds {zeros} zeros but prune.json reports {info['n_pruned']} pruned")
    return info
