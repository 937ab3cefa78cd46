"""Workflow configuration: schema validation with readable errors, defaults, derived values.

The JSON-Schema lives in ``config/config.schema.yaml``. :func:`check_config` reports *every*
violation at once, each with its dotted key path and the offending value, e.g.::

    config error: pruning.percentages[0] = 120: 120 is greater than or equal to the maximum of 100

and raises :class:`ConfigError` before Snakemake builds the DAG, i.e. before any job runs.
Defaults are then filled in by ``snakemake.utils.validate`` (see ``rules/common.smk``), and the
tropical-solver defaults come from :mod:`adapter_pruning.tropical` so they have one source of truth.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = [
    "ConfigError",
    "SCHEMA_PATH",
    "load_schema",
    "check_config",
    "fill_tropical_defaults",
    "check_semantics",
    "canonical",
    "code_hash",
    "model_label",
    "fmt_p",
]

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "config.schema.yaml"


class ConfigError(ValueError):
    """The workflow configuration is invalid; the message names every bad key and value."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _dotted(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def check_config(config: Mapping[str, Any], schema: dict | None = None) -> None:
    """Validate ``config`` against the schema; raise :class:`ConfigError` listing all violations."""
    import jsonschema

    schema = schema if schema is not None else load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(dict(config)), key=lambda e: [str(p) for p in e.absolute_path]):
        where = _dotted(err.absolute_path)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            allowed = ", ".join(sorted(err.schema.get("properties", {})))
            for key in extra:
                key_path = f"{where}.{key}" if err.absolute_path else key
                problems.append(f"{key_path}: unknown key (allowed here: {allowed})")
            continue
        if err.validator in ("oneOf", "anyOf", "allOf") and err.context:
            detail = "; ".join(sorted({c.message for c in err.context}))
        else:
            detail = err.message
        problems.append(f"{where} = {json.dumps(err.instance, default=str)}: {detail}")
    if problems:
        raise ConfigError("invalid workflow configuration:\n  " + "\n  ".join(problems))


def fill_tropical_defaults(config: dict) -> dict:
    """Fill ``tropical.{method,lam_relative,allow_collapse,lam1,lam2,lr,steps,tol}`` from
    :mod:`adapter_pruning.defaults`: λ relative to each layer's scale by default (``DEFAULT_LAM_REL``);
    with ``lam_relative: false`` and no λ given, the absolute ``DEFAULT_LAM1``/``DEFAULT_LAM2``."""
    from . import defaults

    trop = config.setdefault("tropical", {})
    trop.setdefault("method", "fast")
    trop.setdefault("lam_relative", True)
    trop.setdefault("allow_collapse", False)
    for k in ("lam1", "lam2"):
        trop.setdefault(k, defaults.DEFAULT_LAM_REL if trop["lam_relative"] else getattr(defaults, f"DEFAULT_{k.upper()}"))
    for k in ("lr", "steps", "tol"):
        trop.setdefault(k, getattr(defaults, f"DEFAULT_{k.upper()}"))
    return config


def check_semantics(config: Mapping[str, Any], basedir: str | Path) -> None:
    """Cross-key checks the schema cannot express; raise :class:`ConfigError` naming the key."""
    problems = []
    mirror = config.get("data", {}).get("mirror")
    if mirror is not None:
        path = resolve_path(mirror, basedir)
        if not path.is_dir():
            problems.append(f"data.mirror = {mirror!r}: folder {path} does not exist")
    model = config["model"]
    if model != "minilm" and (model.startswith((".", "/", "~")) or Path(model).exists()):
        path = resolve_path(model, basedir)
        if not (path / "config.json").is_file():
            problems.append(f"model = {model!r}: local model folder {path} has no config.json")
    if problems:
        raise ConfigError("invalid workflow configuration:\n  " + "\n  ".join(problems))


def resolve_path(path: str | Path, basedir: str | Path) -> Path:
    """Relative paths in the config are relative to the workflow folder (where the Snakefile is)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (Path(basedir) / path).resolve()


def canonical(obj: Any) -> str:
    """A canonical JSON string for Snakemake ``params``: sorted keys, no whitespace.

    Snakemake reruns a job when the string changes, so reordering YAML keys triggers nothing,
    while a changed value reruns exactly the rules whose ``params`` carry it.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def code_hash(*modules: str) -> str:
    """Short sha256 over the source of the named ``adapter_pruning`` modules (plus the version).

    Put into a rule's ``params`` so that editing the code a rule depends on reruns it.
    """
    from . import __version__

    root = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for name in sorted(set(modules)):
        h.update(name.encode())
        h.update((root / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def model_label(config: Mapping[str, Any]) -> str:
    """The model's name in result paths: ``model_label`` or a sanitised form of ``model``."""
    if config.get("model_label"):
        return config["model_label"]
    name = str(config["model"]).rstrip("/")
    name = name.split("/")[-1] if ("/" in name) else name
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    return label


def fmt_p(p: float) -> str:
    """Canonical text of a pruning percentage for paths: 98 -> '98', 2.5 -> '2.5'."""
    p = float(p)
    return str(int(p)) if p.is_integer() else repr(p)
