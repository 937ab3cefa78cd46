"""Stage of rule ``import_adapter``: take an adapter trained elsewhere into the pipeline.

A task listed under the configuration key ``adapters`` is not trained: its adapter comes from a
folder written by the ``adapters`` library's ``save_adapter(..., with_head=True)``. :func:`check_adapter`
says whether the workflow can use it (``adapter_pruning.config.check_semantics`` calls it before any
job runs, the rule again before writing); :func:`import_adapter` writes it where ``train_adapter``
would have written a trained one, in the same format (``adapter_pruning.models.ADAPTER_FILES``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("adapter_pruning")

#: Files of an imported adapter folder, as the pipeline stores it.
ADAPTER_WEIGHTS = "adapter.safetensors"
HEAD_WEIGHTS = "model_head.safetensors"


def source_files(adapter_dir) -> list[Path]:
    """The files of a saved adapter folder that :func:`import_adapter` reads (``adapter_config.json``,
    the weights ``save_adapter`` wrote, ``head_config.json`` and the head weights), as far as present;
    safetensors preferred over ``.bin``, as ``adapter_pruning.adapterhub.read_adapter_dir`` does."""
    from ..adapterhub import HEAD_WEIGHT_FILES, WEIGHT_FILES

    adapter_dir = Path(adapter_dir)
    files = [adapter_dir / "adapter_config.json", adapter_dir / "head_config.json"]
    for choices in (WEIGHT_FILES, HEAD_WEIGHT_FILES):
        files += [adapter_dir / f for f in choices if (adapter_dir / f).is_file()][:1]
    return [f for f in files if f.is_file()]


def check_adapter(adapter_dir, model: str, task: str):
    """Check that the saved adapter in ``adapter_dir`` can stand in for a trained adapter of ``task``
    on ``model``; return it (``adapter_pruning.adapterhub.AdapterSource``).

    Reuses the checks of ``adapter-prune`` (:mod:`adapter_pruning.adapterhub`): the folder and its files
    exist and are readable, the adapter is a supported ReLU bottleneck (``read_adapter_dir``), its
    ``model_type`` and layers fit the model (``check_model``), and it has a classification head with
    the task's number of labels (``check_head``). Added here: the adapter's width ``d`` equals the
    model's ``hidden_size`` (read from the model's ``config.json``; the error names both files), and
    every adapter layer has the same shape (``tropical_solve`` solves all layers as one stack).

    Raises:
        adapter_pruning.adapterhub.AdapterError: the first problem found, naming the file.
    """
    from .. import adapterhub as hub
    from .. import masks

    src = hub.read_adapter_dir(adapter_dir)
    layers = masks.extract_layers(src.state, src.name)
    weights = src.path / src.weights_file
    shapes = sorted({(tuple(layer.A.shape), tuple(layer.B.shape)) for layer in layers})
    if len(shapes) > 1:
        widths = sorted({layer.A.shape[0] for layer in layers})
        raise hub.AdapterError(
            f"{weights}: adapter layers of different bottleneck widths r={widths} (a per-layer reduction_factor); "
            "the workflow solves all layers of an adapter as one stack and needs one width (adapter-prune "
            "handles such adapters)"
        )
    hub.check_not_all_zero(layers)
    hub.check_model(model, src)  # model_type, hidden_size against the adapter's width d, layer count
    hub.check_head(src, task, needed_by="the workflow (it scores the adapter with its own head)")
    return src


def _write_safetensors(state: Mapping, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})


def import_adapter(task: str, spec: Mapping, out_dir, *, threads: int | None = None) -> dict:
    """Check the adapter in ``spec['source']`` (:func:`check_adapter` against ``spec['model']``) and
    write it to ``out_dir`` in the pipeline's format, atomically.

    ``out_dir`` receives ``adapter_config.json`` and ``head_config.json`` unchanged, the weights as
    ``adapter.safetensors`` and ``model_head.safetensors`` (byte copies, or converted from
    ``pytorch_adapter.bin`` / ``pytorch_model_head.bin``; adapter and head keep their names), and a
    ``metrics.json`` that records the import: ``imported: true``, the source folder, the sha256 of
    every source file read, the conversions made, and the adapter's name, type and shape. Returns
    that dict.
    """
    import torch

    from .. import adapterhub as hub
    from .. import masks
    from ..artifacts import read_adapter_state
    from ..io import atomic_dir, sha256_file, write_json
    from ..models import ADAPTER_FILES, set_threads

    set_threads(threads)
    source = Path(spec["source"])
    src = check_adapter(source, spec["model"], task)
    files = source_files(source)
    converted = {}
    with atomic_dir(out_dir) as tmp:
        tmp = Path(tmp)
        for name in ("adapter_config.json", "head_config.json"):
            shutil.copyfile(source / name, tmp / name)
        if src.weights_file == ADAPTER_WEIGHTS:
            shutil.copyfile(source / ADAPTER_WEIGHTS, tmp / ADAPTER_WEIGHTS)
        else:
            _write_safetensors(src.state, tmp / ADAPTER_WEIGHTS)
            converted[src.weights_file] = ADAPTER_WEIGHTS
        head_file = src.head_files[1]
        if head_file == HEAD_WEIGHTS:
            shutil.copyfile(source / HEAD_WEIGHTS, tmp / HEAD_WEIGHTS)
        else:
            _write_safetensors(hub._load_state(source / head_file), tmp / HEAD_WEIGHTS)
            converted[head_file] = HEAD_WEIGHTS
        missing = [f for f in ADAPTER_FILES if not (tmp / f).is_file()]
        if missing:
            raise RuntimeError(f"{out_dir}: import wrote no {missing}")
        # Read back as the pipeline reads it: the same tensors as the source.
        state, name = read_adapter_state(tmp)
        for key, value in src.state.items():
            if key not in state or not torch.equal(state[key], value):
                raise RuntimeError(f"{tmp / ADAPTER_WEIGHTS}: tensor {key} differs from {source / src.weights_file}")
        layers = masks.extract_layers(state, name)
        info = {
            "imported": True,
            "task": task,
            "model": spec["model"],
            "adapter_name": src.name,
            "head_name": src.head_config.get("name"),
            "adapter_type": src.adapter_type,
            "n_layers": len(layers),
            "d": int(layers[0].B.shape[0]),
            "r": int(layers[0].A.shape[0]),
            "non_linearity": src.config["config"].get("non_linearity"),
            "reduction_factor": src.config["config"].get("reduction_factor"),
            "source": {"dir": str(source.resolve()), "sha256": {f.name: sha256_file(f) for f in files}},
            "converted": converted,
            "adapter_sha256": sha256_file(tmp / ADAPTER_WEIGHTS),
        }
        write_json(info, tmp / "metrics.json")
    log.info(
        "%s: imported %s adapter %r (%d layers, d=%d, r=%d) from %s%s",
        task,
        src.adapter_type,
        src.name,
        info["n_layers"],
        info["d"],
        info["r"],
        source,
        f"; converted {converted}" if converted else "",
    )
    return info
