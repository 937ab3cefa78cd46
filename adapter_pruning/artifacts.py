"""On-disk formats of the pipeline's tensor artifacts: one reader/writer/verifier per artifact.

* **adapter directory** (``.../adapter/`` and every pruned state's ``.../pruned/<scope>/<method>/p<p>/``):
  AdapterHub format as ``model.save_adapter`` writes it: ``adapter_config.json`` (with the adapter's
  ``name``), ``adapter.safetensors`` (the adapter's tensors under their full parameter names), and
  optionally ``head_config.json`` + ``model_head.safetensors``. Read with :func:`read_adapter_state`
  / :func:`read_adapter_layers`.
* **optimized tensors** (``.../tropical/optimized.safetensors``): ``A_hat (L, r, d+1)`` and
  ``B_hat (L, d, r)`` in float32, in the conserved gauge, with one metadata key ``prefixes`` (the
  layers' prefixes, comma-joined). :func:`write_optimized` / :func:`read_optimized`.
* **calibration norms** (``.../calibration/input_rms.safetensors``, baseline ``activation``): per
  layer ``<prefix>.down_in`` ``(d,)`` and ``<prefix>.up_in`` ``(r,)`` (float64), the RMS over
  calibration tokens of each input feature of ``adapter_down`` and ``adapter_up``; metadata
  ``info``: ``n_examples``, ``n_tokens``, device and precision (:func:`read_calibration_info`).
  :func:`write_input_rms` / :func:`read_input_rms`.
* **calibration second moments** (``.../calibration/second_moments.safetensors``, method
  ``sparsegpt``): per layer ``<prefix>.down`` ``(d+1, d+1)`` and ``<prefix>.up`` ``(r+1, r+1)``
  (float64), ``X̃ᵀX̃ / N`` over the calibration tokens of the inputs of ``adapter_down`` and
  ``adapter_up``, each with the constant input 1 of the map's bias appended as the last feature;
  metadata as above. :func:`write_second_moments` / :func:`read_second_moments`.
* **calibration gradients** (``.../calibration/gradients.safetensors``, method ``taylor``): per layer
  ``<prefix>.A`` ``(r, d+1)``, ``<prefix>.B`` ``(d, r)``, ``<prefix>.up_bias`` ``(d,)`` (float64), the
  gradient of the mean task loss over the calibration examples with respect to those parameters;
  metadata as above. :func:`write_gradients` / :func:`read_gradients`.
* **calibration activation means** (``.../calibration/activation_mean.safetensors``, method
  ``activation`` under the unit scope): per layer ``<prefix>.up_mean`` ``(r,)`` (float64), the mean over
  the calibration tokens of each input feature of ``adapter_up`` (each unit's ReLU activation);
  metadata as above. :func:`write_activation_mean` / :func:`read_activation_mean`.
  :func:`read_calibration` reads any of the four by name.
* **dense small adapter** (``.../dense_small/r<width>/``) = an adapter directory trained at bottleneck
  width ``r'`` plus ``metrics.json`` and ``dense_small.json`` (its width and parameter count, the
  full-width adapter's, its retained share and ``p``). :func:`read_dense_small_info`.
* **pruned adapter** = an adapter directory plus ``prune.json`` (counts, diagnostics, the sha256
  of ``adapter.safetensors`` and of the compact file, and both files' sizes): the trained adapter's
  folder copied byte for byte, except ``adapter.safetensors``, rewritten with the same keys, dtypes and
  metadata and the pruned values (:func:`copy_adapter_with`), plus ``adapter.compact.safetensors``, the
  same tensors in :mod:`adapter_pruning.compact`'s lossless format (written and checked by rule
  ``prune``, :mod:`adapter_pruning.stages.prune`). :func:`write_pruned` / :func:`read_pruned_info` /
  :func:`verify_pruned`.

Every write is atomic (``adapter_pruning.io``); every reader raises
:class:`~adapter_pruning.io.CorruptFileError` naming the file when it is unreadable or inconsistent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .io import CorruptFileError, atomic_dir, atomic_path, read_json, sha256_file, write_json

__all__ = [
    "read_train_device",
    "read_calibration_info",
    "read_adapter_state",
    "read_adapter_layers",
    "read_train_precision",
    "copy_adapter_with",
    "write_optimized",
    "read_optimized",
    "write_input_rms",
    "read_input_rms",
    "write_second_moments",
    "read_second_moments",
    "write_gradients",
    "read_gradients",
    "write_activation_mean",
    "read_activation_mean",
    "read_calibration",
    "write_pruned",
    "read_pruned_info",
    "verify_pruned",
    "read_dense_small_info",
    "DENSE_SMALL_INFO",
]

#: The file that makes an adapter folder a dense small adapter's.
DENSE_SMALL_INFO = "dense_small.json"


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


def read_train_device(adapter_dir) -> dict[str, str | None]:
    """Where the adapter in ``adapter_dir`` was trained, from its ``metrics.json`` (written by
    ``training.train_adapter``): ``{"train_device": "cpu" | "cuda", "train_device_name": GPU or CPU
    model}``; None values for an adapter imported from elsewhere (``import_adapter``), a folder without
    ``metrics.json``, or (the name) one trained before the name was recorded."""
    path = Path(adapter_dir) / "metrics.json"
    metrics = read_json(path) if path.is_file() else {}
    device = metrics.get("device")
    return {
        "train_device": None if device is None else str(device).split(":")[0],
        "train_device_name": metrics.get("device_name"),
    }


def read_train_precision(adapter_dir) -> str | None:
    """The precision the adapter in ``adapter_dir`` was trained in, from its ``metrics.json``
    (``training.train_adapter`` writes ``precision``; an adapter it trained before that key existed was
    trained in ``fp32``); None for an adapter imported from elsewhere (``import_adapter``) or a folder
    without ``metrics.json``."""
    path = Path(adapter_dir) / "metrics.json"
    if not path.is_file():
        return None
    metrics = read_json(path)
    if "precision" in metrics:
        return str(metrics["precision"])
    return None if metrics.get("imported") or "config" not in metrics else "fp32"


def read_adapter_layers(adapter_dir) -> list:
    """The adapter's bottleneck layers (``masks.AdapterLayer``, natural layer order)."""
    from .masks import extract_layers

    state, name = read_adapter_state(adapter_dir)
    return extract_layers(state, name)


def copy_adapter_with(dst_dir, adapter_dir, tensors: Mapping) -> None:
    """Copy the adapter folder ``adapter_dir`` into the existing folder ``dst_dir``: every regular file
    byte for byte (hidden files such as Snakemake's ``.snakemake_timestamp`` excepted), except
    ``adapter.safetensors``, written with ``tensors`` in place of the original values.

    ``tensors`` (``{name: Tensor}``) must name exactly the original file's tensors; each is stored
    in the original's dtype and shape, on the CPU, with the original file's safetensors metadata,
    so the folder stays loadable by ``models.load_trained`` and differs from ``adapter_dir`` only
    in those values. Not atomic by itself: write into a temporary folder (:func:`write_pruned`).
    """
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(adapter_dir), Path(dst_dir)
    weights = src / "adapter.safetensors"
    try:
        with safe_open(str(weights), "pt") as f:
            metadata = f.metadata()
            layout = {k: (f.get_tensor(k).dtype, tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    except Exception as exc:
        raise CorruptFileError(f"{weights}: unreadable safetensors file ({exc})") from exc
    if set(tensors) != set(layout):
        missing, extra = sorted(set(layout) - set(tensors)), sorted(set(tensors) - set(layout))
        raise ValueError(f"{weights}: the new tensors differ in names (missing {missing[:4]}, extra {extra[:4]})")
    out = {}
    for key, value in tensors.items():
        dtype, shape = layout[key]
        if tuple(value.shape) != shape or value.dtype != dtype:
            raise ValueError(f"{weights}: {key} is {dtype} {shape}, the new tensor {value.dtype} {tuple(value.shape)}")
        out[key] = value.detach().to("cpu").contiguous()
    for f in sorted(src.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.name != weights.name:
            shutil.copyfile(f, dst / f.name)
    save_file(out, str(dst / weights.name), metadata=metadata)


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


def _calibration_metadata(n_examples: int, n_tokens: int, provenance: Mapping | None) -> dict[str, str]:
    """The one metadata key of a calibration file, ``info``: sorted JSON of ``n_examples``, ``n_tokens``
    and ``provenance`` (how the statistic was computed: ``device``, ``device_name``, ``precision``).
    One key only, as in :func:`write_optimized`."""
    info = {"n_examples": int(n_examples), "n_tokens": int(n_tokens), **dict(provenance or {})}
    return {"info": json.dumps(info, sort_keys=True)}


def read_calibration_info(path) -> dict:
    """The ``info`` metadata of a calibration file (counts, device, precision); {} when absent."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["info"]) if "info" in meta else {}


def write_input_rms(
    path, input_rms: Mapping[str, tuple], *, n_examples: int, n_tokens: int, provenance: Mapping | None = None
) -> None:
    """Save ``{prefix: (down_in (d,), up_in (r,))}`` (see the module docstring), atomically."""
    from safetensors.torch import save_file

    tensors = {}
    for prefix, (down_in, up_in) in input_rms.items():
        tensors[f"{prefix}.down_in"] = down_in.detach().cpu().double().contiguous()
        tensors[f"{prefix}.up_in"] = up_in.detach().cpu().double().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=_calibration_metadata(n_examples, n_tokens, provenance))


def read_input_rms(path, layers) -> list:
    """Read the calibration norms back as ``[(down_in, up_in)]`` matching ``layers`` (on the CPU)."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CorruptFileError(f"{path}: unreadable calibration norms ({exc}); rerun calibrate") from exc
    out = []
    for layer in layers:
        keys = (f"{layer.prefix}.down_in", f"{layer.prefix}.up_in")
        if any(k not in state for k in keys):
            raise CorruptFileError(f"{path}: no calibration norms for layer {layer.prefix!r}; rerun calibrate")
        down_in, up_in = state[keys[0]], state[keys[1]]
        if down_in.shape != (layer.A.shape[1] - 1,) or up_in.shape != (layer.A.shape[0],):
            raise CorruptFileError(f"{path}: norms of layer {layer.prefix!r} do not fit its shapes; rerun calibrate")
        out.append((down_in, up_in))
    return out


def _write_per_layer(
    path, per_layer: Mapping[str, Sequence], suffixes: Sequence[str], *, n_examples, n_tokens, provenance=None
):
    from safetensors.torch import save_file

    tensors = {}
    for prefix, parts in per_layer.items():
        if len(parts) != len(suffixes):
            raise ValueError(f"{path}: layer {prefix!r} has {len(parts)} tensors, expected {len(suffixes)}")
        for suffix, t in zip(suffixes, parts):
            tensors[f"{prefix}.{suffix}"] = t.detach().cpu().double().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=_calibration_metadata(n_examples, n_tokens, provenance))


def _read_per_layer(path, layers, suffixes: Sequence[str], shapes, what: str) -> list:
    """Per layer the tensors ``<prefix>.<suffix>``, each checked against ``shapes(layer)``."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CorruptFileError(f"{path}: unreadable calibration {what} ({exc}); rerun calibrate") from exc
    out = []
    for layer in layers:
        keys = [f"{layer.prefix}.{s}" for s in suffixes]
        if any(k not in state for k in keys):
            raise CorruptFileError(f"{path}: no calibration {what} for layer {layer.prefix!r}; rerun calibrate")
        parts = tuple(state[k] for k in keys)
        if [tuple(t.shape) for t in parts] != [tuple(s) for s in shapes(layer)]:
            raise CorruptFileError(f"{path}: {what} of layer {layer.prefix!r} do not fit its shapes; rerun calibrate")
        out.append(parts)
    return out


def write_second_moments(
    path, moments: Mapping[str, tuple], *, n_examples: int, n_tokens: int, provenance: Mapping | None = None
) -> None:
    """Save ``{prefix: (H_down (d+1, d+1), H_up (r+1, r+1))}`` (see the module docstring), atomically."""
    _write_per_layer(path, moments, ("down", "up"), n_examples=n_examples, n_tokens=n_tokens, provenance=provenance)


def read_second_moments(path, layers) -> list:
    """Read the second moments back as ``[(H_down, H_up)]`` matching ``layers`` (on the CPU)."""

    def shapes(layer):
        r, d1 = layer.A.shape
        return (d1, d1), (r + 1, r + 1)

    return _read_per_layer(path, layers, ("down", "up"), shapes, "second moments")


def write_gradients(
    path, gradients: Mapping[str, tuple], *, n_examples: int, n_tokens: int, provenance: Mapping | None = None
) -> None:
    """Save ``{prefix: (g_A (r, d+1), g_B (d, r), g_up_bias (d,))}`` (see the module docstring), atomically."""
    suffixes = ("A", "B", "up_bias")
    _write_per_layer(path, gradients, suffixes, n_examples=n_examples, n_tokens=n_tokens, provenance=provenance)


def read_gradients(path, layers) -> list:
    """Read the gradients back as ``[(g_A, g_B, g_up_bias)]`` matching ``layers`` (on the CPU)."""

    def shapes(layer):
        return tuple(layer.A.shape), tuple(layer.B.shape), tuple(layer.up_bias.shape)

    return _read_per_layer(path, layers, ("A", "B", "up_bias"), shapes, "gradients")


def write_activation_mean(
    path, means: Mapping[str, object], *, n_examples: int, n_tokens: int, provenance: Mapping | None = None
) -> None:
    """Save ``{prefix: up_mean (r,)}`` (see the module docstring), atomically."""
    per_layer = {k: (v,) for k, v in means.items()}
    _write_per_layer(path, per_layer, ("up_mean",), n_examples=n_examples, n_tokens=n_tokens, provenance=provenance)


def read_activation_mean(path, layers) -> list:
    """Read the activation means back as ``[up_mean (r,)]`` matching ``layers`` (on the CPU)."""

    def shapes(layer):
        return ((layer.A.shape[0],),)

    return [t[0] for t in _read_per_layer(path, layers, ("up_mean",), shapes, "activation means")]


def read_calibration(statistic: str, path, layers) -> list:
    """Read the calibration statistic ``statistic`` (``input_rms``, ``second_moments``, ``gradients`` or
    ``activation_mean``) of ``layers`` from ``path``."""
    readers = {
        "input_rms": read_input_rms,
        "second_moments": read_second_moments,
        "gradients": read_gradients,
        "activation_mean": read_activation_mean,
    }
    if statistic not in readers:
        raise ValueError(f"unknown calibration statistic {statistic!r} (known: {', '.join(readers)})")
    return readers[statistic](path, layers)


def write_pruned(out_dir, save_adapter: Callable[[Path], Mapping | None], info: Mapping) -> dict:
    """Write a pruned adapter directory atomically: ``save_adapter(tmp_dir)`` writes the AdapterHub
    files (e.g. :func:`copy_adapter_with`, then :func:`compact.write_beside`) and may return more
    keys for ``prune.json`` (e.g. the files' sizes); ``prune.json`` = ``info`` plus those plus
    ``adapter_sha256``. Returns the written info."""
    info = dict(info)
    with atomic_dir(out_dir) as tmp:
        info.update(save_adapter(Path(tmp)) or {})
        info["adapter_sha256"] = sha256_file(Path(tmp) / "adapter.safetensors")
        write_json(info, Path(tmp) / "prune.json")
    return info


def read_pruned_info(state_dir) -> dict | None:
    """The ``prune.json`` of a pruned adapter folder, or ``None`` for an adapter folder without one
    (the trained, unpruned adapter)."""
    path = Path(state_dir) / "prune.json"
    return read_json(path) if path.is_file() else None


def read_dense_small_info(state_dir) -> dict | None:
    """The ``dense_small.json`` of a dense small adapter's folder, or ``None`` for any other folder."""
    path = Path(state_dir) / DENSE_SMALL_INFO
    return read_json(path) if path.is_file() else None


def verify_pruned(pruned_dir) -> dict:
    """Check a saved pruned adapter against its ``prune.json``: checksum and number of zeros (the
    compact file beside it: :func:`compact.verify_beside`).

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
