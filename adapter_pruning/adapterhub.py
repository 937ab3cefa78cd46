"""AdapterHub adapter folders written elsewhere: read them and check that they can be pruned.

Shared by ``adapter-prune`` (:mod:`adapter_pruning.cli`) and the workflow's ``import_adapter`` rule
(:mod:`adapter_pruning.stages.import_adapter`), so that both accept and refuse the same adapters
with the same messages, and so that the import rule's code hash does not cover the command line.

Accepted: a folder written by ``save_adapter`` (``adapter_config.json`` plus ``adapter.safetensors``
or ``pytorch_adapter.bin``; optionally ``head_config.json`` plus a head weight file) holding a ReLU
bottleneck adapter: sequential (``seq_bn``, Pfeiffer), Houlsby (``double_seq_bn``) or parallel
(``par_bn``); other reduction factors and ``leave_out`` are fine. Refused, with the reason: other
activations (the tropical characterization needs a piecewise-linear one), other adapter methods, and
options that make the bottleneck non-linear or factorised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AdapterError",
    "AdapterSource",
    "HEAD_WEIGHT_FILES",
    "WEIGHT_FILES",
    "adapter_type",
    "check_head",
    "check_not_all_zero",
    "check_model",
    "read_adapter_dir",
]

WEIGHT_FILES = ("adapter.safetensors", "pytorch_adapter.bin")


HEAD_WEIGHT_FILES = ("model_head.safetensors", "pytorch_model_head.bin")


_UNSUPPORTED_OPTIONS = {
    "phm_layer": "PHM (Compacter) layers factorise the projections; there is no plain A, B to prune",
    "ln_before": "a LayerNorm inside adapter_down is not piecewise-linear",
    "use_gating": "a sigmoid gate scales the adapter output, which is then not piecewise-linear",
    "inv_adapter": "invertible embedding adapters are not bottleneck layers",
}


class AdapterError(Exception):
    """An input error: printed as one line on stderr, exit status 1."""


@dataclass
class AdapterSource:
    """A saved adapter directory, checked.

    Attributes:
        path: the directory.
        config: the parsed ``adapter_config.json`` (top level: ``config``, ``name``, ``hidden_size``, ...).
        name: the adapter's name (``config["name"]``).
        adapter_type: ``"seq_bn"``, ``"double_seq_bn"``, ``"par_bn"`` or ``"bottleneck"`` (another placement).
        weights_file: the weight file used (``adapter.safetensors`` or ``pytorch_adapter.bin``).
        state: every tensor of the weight file (name -> tensor).
        head_files: names of the head files present (``head_config.json`` and one weight file), or empty.
        head_config: the parsed ``head_config.json`` or None.
    """

    path: Path
    config: dict
    name: str
    adapter_type: str
    weights_file: str
    state: dict = field(repr=False)
    head_files: list[str]
    head_config: dict | None


def _read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AdapterError(f"{path}: not readable JSON ({exc})") from exc


def adapter_type(cfg: dict, where: str) -> str:
    """Check an ``adapter_config.json`` ``config`` dict; return the bottleneck type name.

    Raises:
        AdapterError: a non-bottleneck architecture, a non-ReLU activation or an unsupported option,
            naming what was found.
    """
    arch = cfg.get("architecture")
    if arch not in (None, "bottleneck"):
        raise AdapterError(
            f"{where}: cannot prune an adapter with architecture={arch!r}; only ReLU bottleneck adapters (seq_bn, "
            "double_seq_bn, par_bn) are supported"
        )
    missing = [k for k in ("non_linearity", "mh_adapter", "output_adapter", "reduction_factor") if k not in cfg]
    if missing:
        raise AdapterError(
            f"{where}: not a bottleneck adapter config (lacks {', '.join(missing)}); found keys {sorted(cfg)}"
        )
    nl = str(cfg["non_linearity"])
    if nl.lower() != "relu":
        raise AdapterError(
            f"{where}: the tropical characterization needs a piecewise-linear activation; found non_linearity={nl} "
            "(only relu is supported)"
        )
    for key, reason in _UNSUPPORTED_OPTIONS.items():
        if cfg.get(key):
            raise AdapterError(f"{where}: unsupported bottleneck option {key}={cfg[key]!r}: {reason}")
    if cfg.get("is_parallel"):
        return "par_bn"
    if cfg["mh_adapter"] and cfg["output_adapter"]:
        return "double_seq_bn"
    if cfg["output_adapter"] and not cfg["mh_adapter"]:
        return "seq_bn"
    return "bottleneck"


def _load_state(path: Path) -> dict:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files, pickles with code, ...: one line naming the file
        raise AdapterError(f"{path}: unreadable weight file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AdapterError(f"{path}: expected a mapping of parameter names to tensors, found {type(state).__name__}")
    return state


def read_adapter_dir(path: str | Path) -> AdapterSource:
    """Read and check a saved adapter directory (see the module docstring for what is accepted).

    Raises:
        AdapterError: missing directory or files, unreadable files, an unsupported adapter, or weights
            that do not hold the named bottleneck adapter.
    """
    from . import masks

    path = Path(path)
    if not path.exists():
        raise AdapterError(f"{path}: no such adapter directory")
    if not path.is_dir():
        raise AdapterError(f"{path}: not a directory (expected a directory written by model.save_adapter)")
    cfg_path = path / "adapter_config.json"
    if not cfg_path.is_file():
        present = sorted(p.name for p in path.iterdir())[:8]
        raise AdapterError(f"{path}: missing adapter_config.json (not a saved adapter directory; found {present})")
    meta = _read_json_file(cfg_path)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or not isinstance(meta.get("name"), str):
        raise AdapterError(f"{cfg_path}: expected the adapters library's format with keys 'config' and 'name'")
    kind = adapter_type(meta["config"], str(cfg_path))
    weights = next((f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        raise AdapterError(f"{path}: missing adapter weights (neither {' nor '.join(WEIGHT_FILES)} found)")
    state = _load_state(path / weights)
    try:
        layers = masks.extract_layers(state, meta["name"])
    except ValueError as exc:
        raise AdapterError(f"{path / weights}: {exc}") from exc
    hidden = meta.get("hidden_size")
    d = layers[0].B.shape[0]
    if hidden is not None and hidden != d:
        raise AdapterError(
            f"{path / weights}: adapter width d={d} differs from hidden_size={hidden} in {cfg_path.name}"
        )
    head_files: list[str] = []
    head_config = None
    head_weights = [f for f in HEAD_WEIGHT_FILES if (path / f).is_file()]
    if (path / "head_config.json").is_file():
        if not head_weights:
            raise AdapterError(
                f"{path}: head_config.json present but no head weights ({' or '.join(HEAD_WEIGHT_FILES)})"
            )
        head_config = _read_json_file(path / "head_config.json")
        head_files = ["head_config.json", head_weights[0]]
    elif head_weights:
        raise AdapterError(f"{path}: {head_weights[0]} present but head_config.json missing")
    return AdapterSource(
        path=path,
        config=meta,
        name=meta["name"],
        adapter_type=kind,
        weights_file=weights,
        state=state,
        head_files=head_files,
        head_config=head_config,
    )


_LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")


def check_model(model: str | None, src: AdapterSource) -> tuple[str, str]:
    """Resolve ``--model`` (default: the adapter's recorded ``model_name``) and check it fits.

    Reads only the model's ``config.json``. Returns ``(model name, resolved path or id)``.

    Raises:
        AdapterError: unresolvable model, or ``model_type`` / ``hidden_size`` / number of layers that
            do not fit the adapter.
    """
    from transformers import AutoConfig

    from .models import ModelError, resolve_model

    cfg_file = src.path / "adapter_config.json"
    name = model or src.config.get("model_name")
    if not name:
        raise AdapterError(f"{cfg_file} records no model_name; pass --model")
    try:
        resolved = resolve_model(name)
        mcfg = AutoConfig.from_pretrained(resolved)
    except ModelError as exc:
        hint = "" if model else f" (the model_name recorded in {cfg_file}; pass --model)"
        raise AdapterError(f"{exc}{hint}") from exc
    except Exception as exc:
        raise AdapterError(f"model {name!r}: cannot read its config ({type(exc).__name__}: {exc})") from exc
    want_type = src.config.get("model_type")
    if want_type and mcfg.model_type != want_type:
        raise AdapterError(
            f"model {name!r} has model_type {mcfg.model_type!r} but the adapter in {src.path} was saved "
            f"from a {want_type!r} model"
        )
    from . import masks

    layers = masks.extract_layers(src.state, src.name)
    d = layers[0].B.shape[0]
    hidden = getattr(mcfg, "hidden_size", None)
    if hidden is not None and hidden != d:
        where = Path(resolved, "config.json") if Path(resolved).is_dir() else f"the config.json of {resolved}"
        raise AdapterError(
            f"{src.path / src.weights_file}: adapter width d={d}, but model {name!r} has hidden_size {hidden} "
            f"(hidden_size={hidden} in {where})"
        )
    n_layers = getattr(mcfg, "num_hidden_layers", None)
    idx = [int(m.group(1)) for layer in layers if (m := _LAYER_INDEX.search(layer.prefix))]
    if n_layers is not None and idx and max(idx) >= n_layers:
        raise AdapterError(
            f"model {name!r} has {n_layers} layers but the adapter in {src.path} has one at layer {max(idx)}"
        )
    return name, resolved


def check_head(src: AdapterSource, task: str, needed_by: str = "--evaluate") -> None:
    """Check that ``src`` holds a classification head with as many labels as ``task``
    (:data:`adapter_pruning.data.TASKS`); ``needed_by`` names who needs it in the message.

    Raises:
        AdapterError: no head files, another head type, or another number of labels, naming the file.
    """
    from .data import TASKS

    want = TASKS[task].num_labels
    if src.head_config is None:
        raise AdapterError(
            f"{src.path}: {needed_by} needs the adapter's prediction head, but the directory has no "
            f"head_config.json / {' or '.join(HEAD_WEIGHT_FILES)} (save it with with_head=True)"
        )
    hcfg = src.head_config.get("config", {}) if isinstance(src.head_config, dict) else {}
    head_type, num_labels = hcfg.get("head_type"), hcfg.get("num_labels")
    if head_type != "classification":
        raise AdapterError(
            f"{src.path / 'head_config.json'}: {needed_by} needs a 'classification' head, found head_type={head_type!r}"
        )
    if num_labels != want:
        raise AdapterError(
            f"{src.path / 'head_config.json'}: the head has num_labels={num_labels} but task {task!r} has "
            f"{want} labels; {needed_by} needs a head for that task"
        )


def check_not_all_zero(layers) -> None:
    """Refuse adapter layers whose ``A`` or ``B`` is all zeros: λ is relative to the layer's scale and
    there is nothing to prune (an untrained adapter; ``par_bn``'s ``init_weights="mam_adapter"`` starts
    with a zero up projection). ``layers``: ``masks.AdapterLayer`` objects."""
    for layer in layers:
        for what, t in (("down weight | bias A", layer.A), ("up weight B", layer.B)):
            if not bool((t != 0).any()):
                raise AdapterError(
                    f"adapter layer {layer.prefix!r}: its {what} is all zeros (an untrained adapter? par_bn's "
                    "init_weights='mam_adapter' starts with a zero up projection); there is nothing to prune"
                )


#: The name ``adapter-prune`` uses for these errors.
CliError = AdapterError
