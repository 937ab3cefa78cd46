"""``adapter-prune``: prune a bottleneck adapter saved in AdapterHub format (``model.save_adapter``).

Usage (``adapter-prune --help`` explains every option)::

    adapter-prune ADAPTER_DIR --model minilm --method tropical standard --p 50 90 --scope CU --out OUT

Input: a directory written by the ``adapters`` library's ``save_adapter``: ``adapter_config.json``
plus the weights ``adapter.safetensors`` (preferred when both exist) or ``pytorch_adapter.bin``
(read with ``torch.load(..., weights_only=True)``), and optionally a prediction head
(``head_config.json`` plus ``model_head.safetensors`` or ``pytorch_model_head.bin``).

Accepted adapters: bottleneck adapters (no ``architecture`` key, or ``"bottleneck"``) with
``non_linearity="relu"``: sequential (``seq_bn``, Pfeiffer), Houlsby (``double_seq_bn``: one
adapter after attention and one after the FFN of every layer, each its own adapter layer, i.e. its
own group under scope ``CU``) and parallel (``par_bn``), any reduction factor (also a per-layer
mapping: layers of equal shape are solved together) and any ``leave_out``. Refused, with the
reason: other activations (the tropical characterization needs a piecewise-linear ReLU
bottleneck), other architectures (LoRA, prefix tuning, ...), and bottleneck options that change
the bottleneck's parameters or make it non-piecewise-linear: ``phm_layer`` (Compacter),
``ln_before`` (a LayerNorm inside ``adapter_down``), ``use_gating`` (a sigmoid gate) and
``inv_adapter`` (invertible embedding adapters).

What it does (``docs/METHOD.md``): per adapter layer ``A (r, d+1)`` (down weight | down bias) and
``B (d, r)`` (up weight), ``λ1 = LAM * lambda_scale(A, B)``, ``λ2 = LAM2 * lambda_scale(A, B)``;
``tropical.solve`` gives ``Â, B̂``; each method of ``--method`` (the registry
``adapter_pruning.methods``) chooses its mask for every ``p`` and sets the pruned parameters to real
zeros. Methods that need data (``activation``, ``taylor``, ``sparsegpt``) get their calibration
statistics from ``--calibration TASK``: ``--calibration-examples`` training examples of that task
(seeded with ``--seed``), one pass of the model with the adapter (and its head) over them. The solve
runs when a method reads ``Â, B̂`` (every method of the element scopes but ``standard_ps``; under
``--scope UN`` only ``tropical`` and ``tropical_opt``).

``--scope UN`` prunes whole bottleneck units (row ``j`` of ``A``, column ``j`` of ``B``): each layer
loses ``⌊p · r / 100⌋`` of its ``r`` units (at least one kept), the lowest of the method's unit score
(``docs/METHOD.md``; ``standard_ps``, ``tropical_pt`` and ``sparsegpt`` have none and are refused),
and each output also holds ``structured/``: the adapter without the removed units, a smaller standard
AdapterHub adapter with a per-layer ``reduction_factor`` (:mod:`adapter_pruning.structured`) that plain
``model.load_adapter(folder)`` loads and that computes what the masked dense adapter computes.

Output, one AdapterHub directory per method and percentage, ``OUT/<method>/p<p>/`` (``p`` printed
with ``%g``: ``p90``, ``p92.5``), each written atomically (``io.atomic_dir``)::

    adapter_config.json          copied unchanged
    adapter.safetensors          the pruned weights, same format and file name as the input's
      | pytorch_adapter.bin      (every other tensor of the input file is kept unchanged)   [dense, both]
    adapter.compact.safetensors  the same tensors, compact and lossless (adapter_pruning.compact)  [compact, both]
    head_config.json, model_head.safetensors | pytorch_model_head.bin   copied when present
    prune_mask.safetensors       uint8 masks (1 = pruned) under the weight names they mask   [dense, both]
    structured/                  --scope UN: the smaller adapter (adapter_config.json with per-layer
                                 reduction factors, the weight file in the input's format, the head)
    prune.json                   counts, retained share, mask diagnostics and slack, solver summary, λ,
                                 calibration, sha256, file sizes, scores (UN: widths, units removed)

plus ``OUT/summary.json`` (one row per output, and the unpruned score with ``--evaluate``).
``--format`` picks the weight files: ``both`` (default: the folder loads with plain ``load_adapter``
as before, and the compact file beside it is what to ship or store), ``dense`` or ``compact`` (the
smallest folder; ``adapter_pruning.compact.expand`` or ``.load_adapter`` rebuild and load it).
An existing ``OUT/<method>/p<p>`` is replaced only when it holds a ``prune.json``.

Exit status: 0 success; 2 command-line usage error (argparse); 1 input error (missing directory or
file, unsupported adapter, model that does not fit, unknown data), reported as one line
``adapter-prune: error: ...`` on stderr. All input checks run before the solve.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import methods as _registry
from .adapterhub import (  # noqa: F401  (re-exported: the CLI's public names)
    HEAD_WEIGHT_FILES,
    WEIGHT_FILES,
    AdapterSource,
    CliError,
    _load_state,
    _read_json_file,
    adapter_type,
    check_head,
    check_model,
    check_not_all_zero,
    read_adapter_dir,
)
from .defaults import DEFAULT_LAM_REL, DEFAULT_LR, DEFAULT_STEPS, DEFAULT_TOL
from .precision import DEFAULT_PRECISION, PRECISIONS

__all__ = [
    "AdapterSource",
    "CliError",
    "adapter_type",
    "build_parser",
    "check_head",
    "check_model",
    "main",
    "read_adapter_dir",
]

log = logging.getLogger("adapter_pruning.cli")

PROG = "adapter-prune"
#: Weight files of a saved adapter, in order of preference (``adapters`` prefers safetensors too).
MASK_FILE = "prune_mask.safetensors"
#: The compact weight file (``adapter_pruning.compact.COMPACT_FILE``; kept torch-free here).
COMPACT_FILE = "adapter.compact.safetensors"
#: Method names: the registry ``adapter_pruning.methods`` (torch-free, so that ``--help`` is fast).
METHODS = tuple(_registry.names())
SCOPES = ("CU", "CB", "CN", _registry.UNIT_SCOPE)
SOLVERS = ("fast", "algorithm1")
#: ``--format``: which weight files each output holds (the dense one, the compact one, or both).
FORMATS = ("dense", "compact", "both")
SPLITS = ("train", "validation", "test")
_REPO = Path(__file__).resolve().parents[1]
#: Default ``--data-mirror``: ``../shared/data`` beside the repository, when it exists.
DEFAULT_MIRROR = _REPO.parent / "shared" / "data"
#: Bottleneck options that change the parameter layout or the piecewise-linearity; value = reason.


# --------------------------------------------------------------------------- argument parsing


def _percentage(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(p) and 0 < p < 100):
        raise argparse.ArgumentTypeError(f"a pruning percentage must lie in the open interval (0, 100), got {text}")
    return p


def _nonneg_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(x) and x >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return x


def _pos_float(text: str) -> float:
    x = _nonneg_float(text)
    if x == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return x


def _nonneg_int(text: str) -> int:
    try:
        x = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if x < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {x}")
    return x


def _pos_int(text: str) -> int:
    x = _nonneg_int(text)
    if x == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return x


def _task_names() -> list[str]:
    from .data import TASKS

    return sorted(TASKS)


def build_parser() -> argparse.ArgumentParser:
    """The ``adapter-prune`` argument parser."""
    ap = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Prune a ReLU bottleneck adapter saved in AdapterHub format (the output of the adapters library's "
            "model.save_adapter) with the tropical-geometry method of Bhardwaj, Vaidya & Poria (2023) and/or "
            "magnitude pruning, and write the pruned adapter (real zeros, same format, loadable with "
            "model.load_adapter) to OUT/<method>/p<p>/ with a prune.json report."
        ),
        epilog=(
            "Exit status: 0 success, 2 usage error, 1 input error (one line on stderr). Example: "
            f"{PROG} my_adapter --model minilm --method tropical standard --p 50 90 --out pruned"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "adapter_dir",
        metavar="ADAPTER_DIR",
        help="directory written by model.save_adapter: adapter_config.json and adapter.safetensors or "
        "pytorch_adapter.bin (plus head_config.json and the head weights, if saved with a head)",
    )
    ap.add_argument(
        "--out",
        required=True,
        metavar="OUT_DIR",
        help="output directory; each result goes to OUT_DIR/<method>/p<p>/ (p formatted with %%g, "
        "e.g. p90, p92.5), a summary of all results to OUT_DIR/summary.json",
    )
    ap.add_argument(
        "--model",
        default=None,
        help="backbone the adapter belongs to: 'minilm' (the packaged all-MiniLM-L6-v2), a local model "
        "directory or a Hugging Face id; must match the adapter's model_type and hidden_size "
        "(default: the model_name recorded in adapter_config.json)",
    )
    ap.add_argument(
        "--method",
        nargs="+",
        choices=METHODS,
        default=["tropical"],
        metavar="METHOD",
        help="pruning method(s) (docs/METHOD.md): "
        + "; ".join(f"{m.name}: {m.summary}" for m in _registry.REGISTRY.values()).replace("%", "%%")
        + ". activation, taylor and sparsegpt need --calibration",
    )
    ap.add_argument(
        "--p",
        nargs="+",
        type=_percentage,
        default=[90.0],
        metavar="P",
        help="pruning percentage(s) in (0, 100); several values give one output each. Tropical prunes "
        "at most p%% (the intersection of two p%% sets)",
    )
    ap.add_argument(
        "--scope",
        choices=SCOPES,
        default="CU",
        help="scope group of the p%%: CU = each adapter layer separately (Houlsby: each of the two "
        "adapters per transformer layer), CB = all adapter parameters together, CN = each "
        "hidden unit's inputs and each output node's inputs separately; UN = whole bottleneck units, "
        "p%% of each layer's units (rounded down, one kept), written also as a smaller adapter in "
        "<output>/structured/",
    )
    ap.add_argument(
        "--seed",
        type=_nonneg_int,
        default=0,
        help="seed of method random's scores and of the calibration sample",
    )
    cal = ap.add_argument_group("calibration (methods activation, taylor, sparsegpt)")
    cal.add_argument(
        "--calibration",
        metavar="TASK",
        choices=_task_names(),
        default=None,
        help="task whose training examples calibrate the methods that need data (input RMS, second moments, "
        "gradients of the task loss; taylor needs the adapter's classification head for TASK): "
        f"{', '.join(_task_names())}; read from --data-mirror",
    )
    cal.add_argument(
        "--calibration-examples",
        type=_pos_int,
        default=256,
        metavar="N",
        help="calibration examples: a sample of N training examples drawn with --seed (all when fewer)",
    )
    ap.add_argument(
        "--format",
        choices=FORMATS,
        default="both",
        help="weight files of each output: 'dense' (the input's format with real zeros; loads with plain "
        "load_adapter), 'compact' (adapter.compact.safetensors only: lossless, a fraction of the size; "
        "adapter_pruning.compact.expand rebuilds the dense folder) or 'both'",
    )
    solver = ap.add_argument_group("tropical solver (paper Eq. 2)")
    solver.add_argument(
        "--lam",
        type=_nonneg_float,
        default=DEFAULT_LAM_REL,
        help="λ1 relative to each layer's scale: λ1 = LAM * rms(A) * rms(B) per layer",
    )
    solver.add_argument(
        "--lam2",
        type=_nonneg_float,
        default=None,
        help="λ2 relative to each layer's scale (default: the value of --lam)",
    )
    solver.add_argument(
        "--solver",
        choices=SOLVERS,
        default="fast",
        help="'fast' (exact block-coordinate descent, all layers at once) or 'algorithm1' (the "
        "paper's per-node gradient descent; slow)",
    )
    solver.add_argument("--steps", type=_nonneg_int, default=DEFAULT_STEPS, help="maximum number of solver steps T")
    solver.add_argument(
        "--tol",
        type=_nonneg_float,
        default=DEFAULT_TOL,
        help="stop when the relative change of every layer's objective is below TOL (0: run all steps)",
    )
    solver.add_argument(
        "--lr",
        type=_pos_float,
        default=DEFAULT_LR,
        help="step size of --solver algorithm1, relative to each layer's curvature (ignored by 'fast')",
    )
    solver.add_argument(
        "--allow-collapse",
        action="store_true",
        help="accept a λ so large that a layer's Â or B̂ is (almost) all zeros (by default an error: "
        "P_T then ranks by original magnitude only)",
    )
    ev = ap.add_argument_group("evaluation (optional; needs the adapter's classification head)")
    ev.add_argument(
        "--evaluate",
        metavar="TASK",
        choices=_task_names(),
        default=None,
        help=f"score the unpruned and every pruned adapter on a configured task: {', '.join(_task_names())}",
    )
    ev.add_argument("--split", choices=SPLITS, default="validation", help="split to score on")
    ev.add_argument(
        "--data-mirror",
        default=None,
        metavar="PATH",
        help="data of --evaluate and --calibration: a folder laid out as <PATH>/<task>/<split>.parquet "
        "(default: ../shared/data beside the "
        f"repository if it exists, here {DEFAULT_MIRROR}; else the Hugging Face hub)",
    )
    ev.add_argument(
        "--max-examples",
        type=_pos_int,
        default=None,
        metavar="N",
        help="score on a deterministic stratified subsample of at most N examples (default: all)",
    )
    ev.add_argument(
        "--max-length",
        type=_pos_int,
        default=None,
        help="token budget per example of --evaluate and --calibration (default: the task's recommended length)",
    )
    ev.add_argument("--batch-size", type=_pos_int, default=128, help="evaluation and calibration batch size")
    ev.add_argument(
        "--device",
        default="auto",
        help="evaluation and calibration device: auto, cpu, cuda or cuda:N (the solve runs on the CPU)",
    )
    ev.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="precision of the scoring and calibration forward passes: fp32 (default), bf16 (fast on GPUs and "
        "CPUs with AVX512-BF16/AMX), tf32 (CUDA only); as the workflow's evaluation.precision",
    )
    ap.add_argument(
        "--quiet", "-q", action="store_true", help="no progress bars and no log lines (errors still go to stderr)"
    )
    return ap


# --------------------------------------------------------------------------- reading the input


# --------------------------------------------------------------------------- solve, prune, write


def maybe_tqdm(items: list, enabled: bool, **kw):
    """``tqdm(items, **kw)`` on stderr when ``enabled`` (and more than one item), else ``items``."""
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, **kw)


def _format_p(p: float) -> str:
    return f"p{p:g}"


def solve_layers(
    layers,
    lam_rel: float,
    lam2_rel: float,
    *,
    solver: str,
    steps: int,
    tol: float,
    lr: float,
    progress: bool,
    allow_collapse: bool = False,
) -> tuple[list, list[dict], list[dict]]:
    """Solve Eq. 2 for every layer (float64 on the CPU); layers of equal shape are solved together.

    Returns ``(optimized, per_layer, groups)``: one ``(Â (r, d+1), B̂ (d, r))`` float64 pair per
    layer in the order of ``layers`` (``tropical.solve`` returns them in METHOD.md's conserved
    gauge); per layer ``{"lam1", "lam2", "lambda_scale", "objective_initial", "objective_final",
    "steps", "zero_share_A_hat", "zero_share_B_hat"}``; per solve group ``{"layers", "steps",
    "converged", "seconds"}``.

    Raises:
        CliError: a layer whose ``A`` or ``B`` is all zeros (nothing for λ to be relative to), or,
            unless ``allow_collapse``, a λ so large that a layer's ``Â`` or ``B̂`` is (almost) all
            zeros (``tropical.check_not_collapsed``), naming the layer and λ.
    """
    import torch

    from . import tropical

    check_not_all_zero(layers)
    groups: dict[tuple, list[int]] = {}
    for k, layer in enumerate(layers):
        groups.setdefault((tuple(layer.A.shape), tuple(layer.B.shape)), []).append(k)
    optimized: list = [None] * len(layers)
    per_layer: list[dict] = [{} for _ in layers]
    summary: list[dict] = []
    for idx in maybe_tqdm(list(groups.values()), progress, desc="solve", unit="group"):
        A = torch.stack([layers[k].A for k in idx]).to(torch.float64)
        B = torch.stack([layers[k].B for k in idx]).to(torch.float64)
        lam1, lam2, scale = tropical.layer_lambdas(A, B, lam_rel, lam2_rel)  # (G,) each
        names = [layers[k].prefix for k in idx]
        t0 = time.perf_counter()
        try:
            res = tropical.solve(
                A,
                B,
                lam1=lam1,
                lam2=lam2,
                method=solver,
                steps=steps,
                lr=lr,
                tol=tol,
                layer_names=names,
                max_zero_share=None if allow_collapse else tropical.MAX_ZERO_SHARE,
            )
        except tropical.CollapsedLayerError as exc:
            first = str(exc).split("\n")[1].strip()
            raise CliError(
                f"--lam {lam_rel:g} / --lam2 {lam2_rel:g} is so large that the tropical solve collapsed ({first}); "
                "P_T would be meaningless: lower --lam/--lam2 or pass --allow-collapse"
            ) from exc
        seconds = time.perf_counter() - t0
        zA, zB = tropical.zero_shares(res.A_hat, res.B_hat)
        trace = res.trace.reshape(res.trace.shape[0], len(idx)).double()
        for g, k in enumerate(idx):
            optimized[k] = (res.A_hat[g].to(torch.float64), res.B_hat[g].to(torch.float64))
            per_layer[k] = {
                "lambda_scale": float(scale[g]),
                "lam1": float(lam1[g]),
                "lam2": float(lam2[g]),
                "objective_initial": float(trace[0, g]),
                "objective_final": float(trace[-1, g]),
                "steps": int(res.layer_steps.reshape(-1)[g]),
                "zero_share_A_hat": float(zA[g]),
                "zero_share_B_hat": float(zB[g]),
            }
        summary.append(
            {"layers": names, "steps": int(res.steps), "converged": bool(res.converged), "seconds": round(seconds, 4)}
        )
    return optimized, per_layer, summary


def _layer_counts(mask) -> dict:
    down_w = int(mask.A[:, :-1].sum())
    down_b = int(mask.A[:, -1].sum())
    return {
        "layer": mask.prefix,
        "n_params": mask.n_params,
        "n_pruned": mask.n_pruned,
        "retained": 1.0 - mask.n_pruned / mask.n_params,
        "n_pruned_by_tensor": {
            "adapter_down.0.weight": down_w,
            "adapter_down.0.bias": down_b,
            "adapter_up.weight": int(mask.B.sum()),
            "adapter_up.bias": int(mask.up_bias.sum()),
        },
    }


def _save_weights(state: dict, path: Path) -> None:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
    else:
        torch.save(state, str(path))


def write_pruned(src: AdapterSource, pruned_layers, layer_masks, dest: Path, fmt: str = "both") -> dict:
    """Write the pruned adapter (AdapterHub format) and its masks into the directory ``dest``.

    The input's weight file is rewritten with the pruned tensors in place of the adapter's four
    tensors per layer (dtypes kept; every other tensor unchanged), under the same file name and
    format; ``adapter_config.json`` and the head files are copied. The written file is read back
    and checked: every masked entry is zero. With ``fmt`` ``compact`` or ``both`` the compact file
    (:mod:`adapter_pruning.compact`) is written too and checked to decode to exactly those tensors;
    for ``compact`` the caller removes the dense files afterwards (:func:`_keep_format`).

    Returns ``{"n_zero": zeros in the adapter's tensors of the written file, "adapter_sha256",
    "dense_bytes", "compact_bytes", "compact_sha256"}`` (the last two None for ``dense``).
    """
    import torch

    from . import compact, masks
    from .io import sha256_file

    new = masks.layers_to_state_dict(pruned_layers)
    state = {k: (new[k].to(v.dtype) if k in new else v).contiguous() for k, v in src.state.items()}
    _save_weights(state, dest / src.weights_file)
    sizes = {"dense_bytes": (dest / src.weights_file).stat().st_size, "compact_bytes": None, "compact_sha256": None}
    if fmt != "dense":
        sizes.update(compact.write_beside(dest))
    mask_state = masks.layers_to_state_dict(
        [masks.AdapterLayer(prefix=m.prefix, A=m.A, B=m.B, up_bias=m.up_bias) for m in layer_masks]
    )
    from safetensors.torch import save_file

    save_file({k: v.to(torch.uint8) for k, v in mask_state.items()}, str(dest / MASK_FILE), metadata={"format": "pt"})
    for f in ["adapter_config.json", *src.head_files]:
        shutil.copyfile(src.path / f, dest / f)
    back = masks.extract_layers(_load_state(dest / src.weights_file), src.name)
    n_zero = 0
    for lay, m in zip(back, layer_masks):
        for t, mk in ((lay.A, m.A), (lay.B, m.B), (lay.up_bias, m.up_bias)):
            if not bool((t[mk] == 0).all()):
                raise RuntimeError(
                    f"{dest / src.weights_file}: {lay.prefix}: pruned entries are not zero after writing"
                )
            n_zero += int((t == 0).sum())
    return {"n_zero": n_zero, "adapter_sha256": sha256_file(dest / src.weights_file), **sizes}


def _write_structured(src: AdapterSource, pruned_layers, layer_masks, dest: Path) -> dict:
    """Under ``--scope UN``: ``dest/structured/``, the pruned adapter without its removed units
    (:func:`adapter_pruning.structured.write_structured`, weight file in the input's format), checked to
    hold exactly the kept units of the dense pruned layers. Returns what ``prune.json`` records:
    ``structured_dir``, ``structured_bytes``, ``structured_sha256``, ``widths``, ``units_removed``."""
    import torch

    from . import masks, structured

    shrunk = structured.shrink(pruned_layers, layer_masks)
    out = structured.write_structured(dest / structured.STRUCTURED_DIR, src.path, shrunk)
    back = masks.extract_layers(_load_state(dest / structured.STRUCTURED_DIR / src.weights_file), src.name)
    for got, want in zip(back, shrunk):
        if not all(
            torch.equal(a, b.to(a.dtype)) for a, b in ((got.A, want.A), (got.B, want.B), (got.up_bias, want.up_bias))
        ):
            raise RuntimeError(
                f"{dest / structured.STRUCTURED_DIR}: {got.prefix} differs from the kept units after writing"
            )
    removed = [torch.nonzero(structured.removed_units(m)).flatten().tolist() for m in layer_masks]
    return {"structured_dir": structured.STRUCTURED_DIR, **out, "units_removed": removed}


def _keep_format(dest: Path, src: AdapterSource, fmt: str, info: dict) -> None:
    """For ``--format compact``: remove the dense weight file and the mask file from ``dest`` (both
    were needed for the checks and ``--evaluate``; the compact file holds the same tensors) and say
    so in ``info``."""
    if fmt != "compact":
        return
    for name in (src.weights_file, MASK_FILE):
        (dest / name).unlink()
    info.update(weights_file=None, mask_file=None, adapter_sha256=None)


# --------------------------------------------------------------------------- evaluation


@dataclass
class _Evaluator:
    """The backbone and the evaluation split, loaded once; scores saved adapter directories."""

    task: str
    split: str
    model: Any
    tokenizer: Any
    df: Any
    device: Any
    precision: str
    max_length: int
    batch_size: int
    progress: bool

    def score(self, adapter_dir: Path, name: str) -> dict[str, float]:
        """Load ``adapter_dir`` (adapter + head) with ``load_adapter``, score it, unload it."""
        from . import evaluation

        quiet = logging.getLogger("adapters")  # it warns that no adapter is active while it adds this one
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            loaded = self.model.load_adapter(str(adapter_dir), with_head=True, set_active=True, use_safetensors=True)
        finally:
            quiet.setLevel(level)
        try:
            if name not in self.model.heads:
                raise CliError(f"{adapter_dir}: load_adapter did not load a prediction head named {name!r}")
            self.model.active_head = name
            self.model.to(self.device)
            return evaluation.evaluate(
                self.model,
                self.tokenizer,
                self.df,
                self.task,
                batch_size=self.batch_size,
                max_length=self.max_length,
                device=self.device,
                progress=self.progress,
                precision=self.precision,
            )
        finally:
            self.model.delete_adapter(loaded)
            if name in self.model.heads:
                self.model.delete_head(name)


def _mirror(args) -> Path | None:
    """``--data-mirror`` (checked), or the default mirror when it exists, or None (the hub)."""
    if args.data_mirror is not None:
        mirror = Path(args.data_mirror)
        if not mirror.is_dir():
            raise CliError(f"--data-mirror {mirror}: no such directory")
        return mirror
    return DEFAULT_MIRROR if DEFAULT_MIRROR.is_dir() else None


def _check_evaluation(args, src: AdapterSource):
    """Checks and data loading for ``--evaluate`` (cheap; before the solve). Returns the data frame."""
    from .data import DataError, load_split

    check_head(src, args.evaluate)
    try:
        df = load_split(args.evaluate, args.split, mirror=_mirror(args), caps=args.max_examples)
    except (DataError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    return df


def _check_calibration(args, src: AdapterSource, methods: list[str]):
    """What the methods need for calibration in ``--scope`` (``adapter_pruning.methods``), checked before
    the solve: ``(calibration examples, statistics)``, or ``(None, [])`` when no method needs data. A
    method that needs data without ``--calibration`` is refused, naming it; ``taylor`` needs the head
    for the task."""
    from .data import DataError, load_split
    from .stages.calibrate import calibration_sample

    needed = _registry.calibration_needed(methods, args.scope)
    if not needed:
        if args.calibration is not None:
            log.info("--calibration %s: no method of --method needs calibration data; not used", args.calibration)
        return None, []
    if args.calibration is None:
        who = [m for m in methods if _registry.get(m).calibration_in(args.scope)]
        raise CliError(
            f"--method {' '.join(who)} needs calibration data ({', '.join(needed)}): pass --calibration TASK, "
            "the task whose training examples the adapter was trained for"
        )
    if "gradients" in needed:
        check_head(src, args.calibration, needed_by="--method taylor (the gradient of the task loss)")
    try:
        df = load_split(args.calibration, "train", mirror=_mirror(args))
    except (DataError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    return calibration_sample(df, args.calibration_examples, args.seed), needed


def _calibrate(args, src: AdapterSource, model_resolved: str, df, needed: list[str], layers) -> tuple[dict, dict]:
    """The calibration statistics ``needed`` of every adapter layer (in the order of ``layers``) from one
    pass of the backbone with the adapter (and its head, if saved) over ``df``; and what to record."""
    from .data import TASKS
    from .devices import DeviceError
    from .models import ModelError, _load_adapter_model, load_tokenizer, resolve_device
    from .precision import PrecisionError, check_precision
    from .stages.calibrate import calibration_statistics

    try:
        device = resolve_device(args.device)
        precision = check_precision(args.precision, device, what="--precision")
        model = _load_adapter_model(model_resolved)
        tokenizer = load_tokenizer(model_resolved)
    except (DeviceError, ModelError, PrecisionError) as exc:
        raise CliError(str(exc)) from exc
    quiet = logging.getLogger("adapters")  # it warns that no adapter is active while it adds this one
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        name = model.load_adapter(
            str(src.path),
            with_head=bool(src.head_files),
            set_active=True,
            use_safetensors=src.weights_file.endswith(".safetensors"),
        )
    finally:
        quiet.setLevel(level)
    if src.head_files and name in model.heads:
        model.active_head = name
    model.to(device)
    max_length = args.max_length or TASKS[args.calibration].recommended_max_length
    log.info("calibrating %s on %d %s training examples", ", ".join(needed), df.height, args.calibration)
    stats, n_tokens = calibration_statistics(
        model,
        tokenizer,
        name,
        df,
        statistics=needed,
        max_length=max_length,
        batch_size=args.batch_size,
        device=device,
        precision=precision,
    )
    out = {}
    for statistic, per_prefix in stats.items():
        missing = [layer.prefix for layer in layers if layer.prefix not in per_prefix]
        if missing:
            raise CliError(f"{src.path}: the loaded model has no adapter layer {missing[0]!r} to calibrate")
        out[statistic] = [per_prefix[layer.prefix] for layer in layers]
    record = {
        "task": args.calibration,
        "examples": df.height,
        "tokens": n_tokens,
        "seed": args.seed,
        "max_length": max_length,
        "precision": precision,
        "statistics": needed,
    }
    return out, record


def _make_evaluator(args, model_resolved: str, df) -> _Evaluator:
    from .data import TASKS
    from .devices import DeviceError
    from .models import ModelError, _load_adapter_model, load_tokenizer, resolve_device
    from .precision import PrecisionError, check_precision

    try:
        device = resolve_device(args.device)
        precision = check_precision(args.precision, device, what="--precision")
        model = _load_adapter_model(model_resolved)
        tokenizer = load_tokenizer(model_resolved)
    except (DeviceError, ModelError, PrecisionError) as exc:
        raise CliError(str(exc)) from exc
    model.eval()
    return _Evaluator(
        task=args.evaluate,
        split=args.split,
        model=model,
        tokenizer=tokenizer,
        df=df,
        device=device,
        precision=precision,
        max_length=args.max_length or TASKS[args.evaluate].recommended_max_length,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )


# --------------------------------------------------------------------------- main


def _check_out(out: Path, targets: list[Path]) -> None:
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: exists and is not a directory")
    for t in targets:
        if t.exists() and not (t.is_dir() and (t / "prune.json").is_file()):
            raise CliError(
                f"{t}: exists and is not an earlier adapter-prune output (no prune.json); not overwriting it"
            )


def run(args: argparse.Namespace) -> list[dict]:
    """Carry out a parsed command line; returns the rows of ``summary.json``. Raises ``CliError``."""
    from . import __version__
    from .io import atomic_dir, sha256_file, write_json

    progress = not args.quiet
    lam2 = args.lam if args.lam2 is None else args.lam2
    methods = list(dict.fromkeys(args.method))
    ps = list(dict.fromkeys(args.p))
    out = Path(args.out)
    targets = {(m, p): out / m / _format_p(p) for m in methods for p in ps}

    # 1. every check before the expensive work
    for method in methods:
        try:
            _registry.get(method).check_scope(args.scope)
        except ValueError as exc:
            raise CliError(f"--method {method} --scope {args.scope}: {exc}") from exc
    src = read_adapter_dir(args.adapter_dir)
    model_name, model_resolved = check_model(args.model, src)
    _check_out(out, list(targets.values()))
    df = _check_evaluation(args, src) if args.evaluate else None
    calibration_df, needed = _check_calibration(args, src, methods)
    evaluator = _make_evaluator(args, model_resolved, df) if args.evaluate else None

    from . import masks

    layers = masks.extract_layers(src.state, src.name)
    calibration, calibration_record = (
        _calibrate(args, src, model_resolved, calibration_df, needed, layers) if needed else ({}, None)
    )
    log.info(
        "%s: %s adapter %r, %d layers (d=%d, r=%s), weights %s",
        src.path,
        src.adapter_type,
        src.name,
        len(layers),
        layers[0].B.shape[0],
        sorted({l.A.shape[0] for l in layers}),
        src.weights_file,
    )

    # 2. solve once (when a method reads Â, B̂); masks for every method and p
    optimized, per_layer, groups = None, [{} for _ in layers], []
    if "optimized" in _registry.needs_of(methods, args.scope):
        try:
            optimized, per_layer, groups = solve_layers(
                layers,
                args.lam,
                lam2,
                solver=args.solver,
                steps=args.steps,
                tol=args.tol,
                lr=args.lr,
                progress=progress,
                allow_collapse=args.allow_collapse,
            )
        except ValueError as exc:  # e.g. a λ so large that a layer vanishes (tropical.solve / masks name it)
            raise CliError(f"tropical solve failed: {exc}") from exc

    rows: list[dict] = []
    base = {
        "tool": PROG,
        "version": __version__,
        "source": {
            "dir": str(src.path.resolve()),
            "weights_file": src.weights_file,
            "sha256": sha256_file(src.path / src.weights_file),
        },
        "adapter": src.name,
        "adapter_type": src.adapter_type,
        "model": model_name,
        "adapter_config": {
            k: src.config["config"].get(k)
            for k in (
                "non_linearity",
                "reduction_factor",
                "mh_adapter",
                "output_adapter",
                "is_parallel",
                "leave_out",
                "original_ln_before",
                "original_ln_after",
                "ln_after",
                "scaling",
                "init_weights",
            )
        },
        "scope": args.scope,
        "seed": args.seed,
        "calibration": calibration_record,
        "solver": {
            "method": args.solver,
            "lam_rel": args.lam,
            "lam2_rel": lam2,
            "max_steps": args.steps,
            "tol": args.tol,
            "lr": args.lr,
            "groups": groups,
        },
    }
    full_scores = None
    if evaluator is not None:
        log.info("scoring the unpruned adapter on %s/%s (%d examples)", args.evaluate, args.split, df.height)
        full_scores = evaluator.score(src.path, src.name)
        rows.append(
            {
                "method": "full",
                "p": 0.0,
                "retained": 1.0,
                "dense_bytes": (src.path / src.weights_file).stat().st_size,
                "compact_bytes": None,
                "structured_bytes": None,
                "dir": str(src.path),
                "scores": full_scores,
            }
        )

    inputs = _registry.PruneInputs(layers=layers, optimized=optimized, seed=args.seed, calibration=calibration)
    rankings: dict[str, Any] = {}
    jobs = [(m, p) for p in ps for m in methods]
    for method, p in maybe_tqdm(jobs, progress, desc="prune", unit="adapter"):
        spec = _registry.get(method)
        try:
            if method not in rankings:  # a method's scores do not depend on p
                rankings[method] = spec.ranking(inputs, args.scope)
            got = spec.masks(inputs, p, args.scope, rankings[method])
            pruned = spec.apply(inputs, got.masks)
        except ValueError as exc:
            raise CliError(f"method {method} at p={p:g}: {exc}") from exc
        chosen = got.masks
        agreement = masks.mask_agreement(chosen, got.reference)
        counts = [_layer_counts(m) | per_layer[k] for k, m in enumerate(chosen)]
        n_params = sum(c["n_params"] for c in counts)
        n_pruned = sum(c["n_pruned"] for c in counts)
        info = {
            **base,
            "method": method,
            "p": p,
            "n_params": n_params,
            "n_pruned": n_pruned,
            "retained": 1.0 - n_pruned / n_params,
            "values": spec.survivors,
            "jaccard_standard": agreement["jaccard_retained"],
            "pruned_outside_standard": agreement["pruned_outside"],
            "slack": got.slack,
            "layers": counts,
            "format": args.format,
            "weights_file": src.weights_file,
            "mask_file": MASK_FILE,
            "compact_file": None if args.format == "dense" else COMPACT_FILE,
            "structured_dir": None,
            "structured_bytes": None,
        }
        target = targets[(method, p)]
        with atomic_dir(target) as tmp:
            info.update(write_pruned(src, pruned, chosen, Path(tmp), args.format))
            if args.scope == _registry.UNIT_SCOPE:
                info.update(_write_structured(src, pruned, chosen, Path(tmp)))
            if evaluator is not None:
                info["evaluation"] = {
                    "task": args.evaluate,
                    "split": args.split,
                    "n_examples": df.height,
                    "scores": evaluator.score(Path(tmp), src.name),
                    "unpruned_scores": full_scores,
                }
            _keep_format(Path(tmp), src, args.format, info)
            write_json(info, Path(tmp) / "prune.json")
        row = {
            "method": method,
            "p": p,
            "retained": info["retained"],
            "n_pruned": n_pruned,
            "n_params": n_params,
            "dense_bytes": info["dense_bytes"],
            "compact_bytes": info["compact_bytes"],
            "structured_bytes": info["structured_bytes"],
            "dir": str(target),
        }
        if evaluator is not None:
            row["scores"] = info["evaluation"]["scores"]
        rows.append(row)
        log.info(
            "%s p=%g: pruned %d of %d adapter parameters (retained %.2f %%) -> %s",
            method,
            p,
            n_pruned,
            n_params,
            100 * info["retained"],
            target,
        )
    write_json(
        {
            "adapter_dir": str(src.path.resolve()),
            "model": model_name,
            "scope": args.scope,
            "evaluate": args.evaluate,
            "split": args.split if args.evaluate else None,
            "precision": args.precision if args.evaluate else None,
            "results": rows,
        },
        out / "summary.json",
    )
    return rows


def _print_table(rows: list[dict], metric: str | None) -> None:
    """One line per row: method, p, retained %, the bytes of the dense and the compact weight file
    (and of the structured one, when a row has it: ``--scope UN``), the score, the output folder."""

    def size(n, width=13):
        return f"{n:>{width},}" if n is not None else f"{'-':>{width}}"

    structured = any(r.get("structured_bytes") is not None for r in rows)
    head = f"{'method':<12} {'p':>6} {'retained %':>10} {'dense bytes':>13} {'compact bytes':>13}"
    head += f" {'structured bytes':>16}" if structured else ""
    print(head + (f" {metric:>10}" if metric else "") + "  output")
    for r in rows:
        score = f" {100 * r['scores'][metric]:>10.2f}" if metric else ""
        sizes = f"{size(r['dense_bytes'])} {size(r['compact_bytes'])}"
        sizes += f" {size(r.get('structured_bytes'), 16)}" if structured else ""
        print(f"{r['method']:<12} {r['p']:>6g} {100 * r['retained']:>10.2f} {sizes}{score}  {r['dir']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``adapter-prune``; returns the exit status (argparse exits 2 itself)."""
    args = build_parser().parse_args(argv)
    # Our own log lines only (the adapters library logs every load at INFO); the root logger is left alone.
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        if args.quiet:
            rows = run(args)
        else:
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm(loggers=[log]):
                rows = run(args)
    except CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    metric = None
    if args.evaluate:
        from .data import TASKS

        metric = TASKS[args.evaluate].metric
    _print_table(rows, metric)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
