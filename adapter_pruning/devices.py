"""Where the torch jobs run: the run's device plan, why CUDA is not usable, the device a job used,
and deterministic CUDA settings.

Two steps, so that a GPU run never falls back to the CPU without saying so:

1. **Plan, when the workflow is parsed** (``rules/common.smk``, torch-free): the main Snakemake process
   turns the configuration's ``device`` into the one device kind, ``"cpu"`` or ``"cuda"``, that
   training, calibration and scoring use in this run (:func:`run_device`). ``cpu`` and ``cuda`` are
   taken as given; ``auto`` means CUDA when a GPU is visible on the machine Snakemake runs on
   (:func:`gpu_visible_here`), else the CPU: on a cluster login node without GPUs, the CPU
   (``device: cuda`` puts the torch rules on GPU nodes). The plan is handed to the job processes
   (:data:`PLAN_VARIABLE`), enters the params of those rules (switching it reruns them), and makes
   each of them ask for ``gpu`` 1 when it is ``cuda``. ``cuda`` with a CPU-only torch is refused
   before any job runs; a job that a profile gives a GPU while the run plans the CPU under ``auto``
   fails at its start (:func:`check_job_resources`).
2. **Resolve, when a job starts** (:func:`resolve`, imports torch): ``cuda`` must be usable or the job
   fails before it loads anything, with the reason (:func:`cuda_problem`: a CPU-only torch build, a
   driver too old for the build, no device visible); the device a job uses is logged with its name
   (:func:`describe`: ``device`` ``cpu``/``cuda`` and ``device_name``, the GPU or CPU model) and
   recorded (training's ``metrics.json``, the calibration file, every score row). On CUDA it also
   switches on PyTorch's deterministic algorithms (:func:`set_deterministic`).

``auto`` is only resolved by :func:`resolve` when a package function is called directly (the CLI,
benchmarks); then it logs what it chose and why.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "DEVICES",
    "DeviceError",
    "plan_device",
    "run_device",
    "plan_message",
    "PLAN_VARIABLE",
    "gpu_visible_here",
    "torch_cuda_build",
    "asks_for_gpu",
    "check_job_resources",
    "cuda_problem",
    "resolve",
    "describe",
    "cpu_name",
    "set_deterministic",
    "CUBLAS_WORKSPACE",
]

log = logging.getLogger(__name__)

#: The values of the configuration key ``device``.
DEVICES = ("auto", "cpu", "cuda")
#: cuBLAS workspace setting that makes cuBLAS deterministic (PyTorch's "Reproducibility" notes; the
#: smaller ``:16:8`` costs speed, this one about 24 MiB of GPU memory).
CUBLAS_WORKSPACE = ":4096:8"


class DeviceError(ValueError):
    """The requested device cannot be used here; the message says why and what to do."""


# ------------------------------------------------------------------------------------------------
# Planning (torch-free: runs when Snakemake parses the workflow, also on login nodes and dry runs).


def torch_cuda_build() -> str | None | bool:
    """The CUDA version the installed torch was built for, read from ``torch/version.py`` without
    importing torch: a version string, ``None`` for a CPU-only build, ``False`` when torch is not
    installed or the file cannot be read."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = Path(next(iter(spec.submodule_search_locations)), "version.py").read_text()
    except OSError:
        return False
    m = re.search(r"^cuda(?:\s*:\s*[^=]+)?\s*=\s*(None|'([^']*)'|\"([^\"]*)\")", text, re.M)
    if not m:
        return False
    return None if m.group(1) == "None" else (m.group(2) or m.group(3))


def _nvidia_device_files() -> list[str]:
    return sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))


def gpu_visible_here() -> tuple[bool, str]:
    """Whether this machine shows an NVIDIA GPU to its processes, without importing torch or CUDA:
    ``/dev/nvidia<N>`` exists and ``CUDA_VISIBLE_DEVICES`` does not hide every device. Returns
    ``(visible, what was seen)``. Whether torch can *use* it is :func:`cuda_problem`'s question."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1", "NoDevFiles"):
        return False, f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    files = _nvidia_device_files()
    if not files:
        return False, "no NVIDIA GPU here (no /dev/nvidia<N>)"
    return True, f"NVIDIA GPU device file(s) {', '.join(files)}"


def plan_device(device: str, *, probe=gpu_visible_here) -> tuple[str, str]:
    """The device kind of a run's torch jobs (training, calibration, scoring) as planned on this
    machine: ``("cpu" | "cuda", reason)``. ``cpu`` and ``cuda`` as given; ``auto``: ``cuda`` when
    ``probe()`` sees a GPU here, else ``cpu``."""
    if device not in DEVICES:
        raise DeviceError(f"device {device!r}: use one of {list(DEVICES)}")
    if device != "auto":
        return device, f"device: {device}"
    visible, seen = probe()
    return ("cuda" if visible else "cpu"), f"device: auto, {seen}"


#: Environment variable that hands the main Snakemake process's plan to the job processes (local
#: subprocesses and cluster jobs inherit the environment; snakemake-executor-plugin-slurm submits with
#: --export=ALL), so that a job re-reading the workflow on another machine plans what the main process
#: planned instead of probing its own host.
PLAN_VARIABLE = "ADAPTER_PRUNING_DEVICE_PLAN"


def run_device(device: str, *, main: bool, check_torch: bool = True, environ=None, probe=gpu_visible_here) -> str:
    """The planned device kind of this run (``rules/common.smk``). The main Snakemake process (``main``)
    plans it (:func:`plan_device`), refuses ``cuda`` with a CPU-only torch (``check_torch``: the jobs
    use this environment's torch, i.e. no ``--use-conda``) and exports it in ``environ`` (default
    ``os.environ``, :data:`PLAN_VARIABLE`); a job process takes the exported plan (or plans itself
    when there is none)."""
    environ = os.environ if environ is None else environ
    if not main and environ.get(PLAN_VARIABLE) in ("cpu", "cuda"):
        return environ[PLAN_VARIABLE]
    kind, why = plan_device(device, probe=probe)
    if main and kind == "cuda" and check_torch and torch_cuda_build() is None and device == "auto":
        # auto asks for a GPU only if one is usable: the CPU, said loudly (an explicit cuda is refused below)
        log.warning(
            "%s, but the installed torch is a CPU-only build: training, calibration and scoring run on the CPU; "
            "to use the GPU install a CUDA build (e.g. TORCH_SPEC='torch==2.13.0 --index-url "
            "https://download.pytorch.org/whl/cu126' bash install.sh) or set device: cuda to make this an error",
            why,
        )
        kind = "cpu"
    if main and kind == "cuda" and check_torch and torch_cuda_build() is None:
        raise DeviceError(
            f"{why}: training, calibration and scoring are to run on CUDA, but the installed torch is a CPU-only "
            "build; install a CUDA build (e.g. TORCH_SPEC='torch==2.13.0 --index-url "
            "https://download.pytorch.org/whl/cu126' bash install.sh) or set device: cpu"
        )
    if main:
        environ[PLAN_VARIABLE] = kind
    return kind


def plan_message(device: str, kind: str) -> str:
    """The line the main Snakemake process prints about the plan."""
    if device == "auto":
        planned, why = plan_device(device)
        cpu_torch = "; the installed torch is a CPU-only build" if planned != kind else ""
        where = f"auto -> {kind} ({why.split(', ', 1)[1]}{cpu_torch})"
    else:
        where = kind
    gpu = (
        "; each of their jobs asks for resources gpu=1 (local runs: cap concurrent GPU jobs with --resources gpu=N)"
        if kind == "cuda"
        else ""
    )
    return (
        f"device {where}: training, calibration and scoring run on {kind.upper() if kind == 'cuda' else 'the CPU'}{gpu}"
    )


def asks_for_gpu(resources: Mapping) -> bool:
    """Whether a job's resources ask the scheduler for a GPU: ``gpu`` > 0, a ``gpu_model``, or a
    ``gres`` naming ``gpu`` (the resources snakemake-executor-plugin-slurm turns into --gpus/--gres)."""
    try:
        if int(resources.get("gpu") or 0) > 0:
            return True
    except (TypeError, ValueError):
        return True  # a non-numeric gpu value (e.g. "a100:1") still asks for one
    if resources.get("gpu_model"):
        return True
    return "gpu" in str(resources.get("gres") or "").lower()


def check_job_resources(planned: str, configured: str, resources: Mapping, rule: str) -> None:
    """Refuse a job that was given a GPU by the profile while the run plans the CPU under
    ``device: auto`` (it would hold the GPU and compute on the CPU); warn for an explicit
    ``device: cpu``. Called by the scripts of the torch rules before anything is loaded."""
    if planned != "cpu" or not asks_for_gpu(resources):
        return
    asked = {k: resources.get(k) for k in ("gpu", "gpu_model", "gres") if resources.get(k)}
    if configured == "auto":
        raise DeviceError(
            f"rule {rule} was given a GPU ({asked}), but this run plans the CPU for training, calibration and "
            "scoring (device: auto, and no GPU where Snakemake runs); set device: cuda to use the GPUs, "
            "or remove the GPU from the profile's set-resources"
        )
    log.warning("rule %s was given a GPU (%s), but device: cpu: the job runs on the CPU", rule, asked)


# ------------------------------------------------------------------------------------------------
# Resolving (imports torch: runs inside a job).


def cuda_problem() -> str | None:
    """Why CUDA cannot be used in this process, or None when it can: a CPU-only torch build, a driver
    too old for the build, no NVIDIA driver, no device visible, or another initialisation error
    (torch's own message is kept)."""
    import torch

    build = torch.version.cuda
    if not torch.backends.cuda.is_built() or build is None:
        return (
            f"torch {torch.__version__} is a CPU-only build; install a CUDA build of torch, e.g. "
            "TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126' bash install.sh"
        )
    where = f"torch {torch.__version__} built for CUDA {build}"
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None:
        where += f", CUDA_VISIBLE_DEVICES={hidden!r}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.cuda.init()
    except Exception as exc:  # torch raises RuntimeError, or AssertionError for a build without CUDA
        msg = " ".join(str(exc).split())
        low = msg.lower()
        if "too old" in low:
            why = (
                "the NVIDIA driver is too old for this torch build (update the driver, or install a torch "
                "build for an older CUDA: install.sh's TORCH_SPEC with that index URL)"
            )
        elif "no nvidia driver" in low or "nvidia driver on your system" in low:
            why = "no NVIDIA driver found"
        elif "no cuda gpus are available" in low or "no cuda-capable device" in low:
            why = "no CUDA device visible to this process"
        else:
            why = "CUDA failed to initialise"
        return f"{why} ({where}): {msg}"
    if torch.cuda.device_count() < 1:
        return f"no CUDA device visible to this process ({where})"
    return None


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` or the machine type elsewhere)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(device) -> dict[str, str]:
    """``{"device": "cpu" | "cuda", "device_name": the GPU's name or the CPU's model}``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return {"device": "cuda", "device_name": torch.cuda.get_device_name(dev)}
    return {"device": dev.type, "device_name": cpu_name()}


def set_deterministic() -> None:
    """Ask PyTorch for deterministic CUDA computations (its "Reproducibility" notes): cuBLAS with a
    fixed workspace (``CUBLAS_WORKSPACE_CONFIG``, unless already set; read when cuBLAS first runs, so
    call this before any CUDA matmul), ``torch.use_deterministic_algorithms(True, warn_only=True)``
    (deterministic kernels where PyTorch has them; an op without one warns in the job's log instead
    of failing the job), cuDNN deterministic and without autotuning (``benchmark`` off). The cost:
    some kernels are slower (docs/benchmarks.md, the GPU check measures it). Changes process-wide
    state; the workflow's jobs call it once, through :func:`resolve`."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def resolve(device="auto", *, deterministic: bool = True):
    """The ``torch.device`` to use for ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
    ``torch.device``), logged with its name.

    ``"cuda"`` that cannot be used raises :class:`DeviceError` with :func:`cuda_problem`'s reason (never
    a fallback to the CPU); ``"auto"`` takes CUDA when it is usable and otherwise logs why it takes the
    CPU. On CUDA, ``deterministic`` calls :func:`set_deterministic`. A ``torch.device`` is returned
    as it is (already resolved, not logged again)."""
    import torch

    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise DeviceError(f"device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device == "auto":
        problem = cuda_problem()
        if problem is not None:
            dev = torch.device("cpu")
            log.info("device auto -> cpu (%s): CUDA not usable: %s", cpu_name(), problem)
            return dev
        dev = torch.device("cuda")
        how = "device auto -> cuda"
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise DeviceError(f"device {device!r}: not a valid torch device (use 'auto', 'cpu' or 'cuda')") from exc
        if dev.type not in ("cpu", "cuda"):
            raise DeviceError(f"device {device!r}: only 'auto', 'cpu' and 'cuda[:N]' are supported")
        if dev.type == "cuda":
            problem = cuda_problem()
            if problem is not None:
                raise DeviceError(f"device {device!r} requested, but CUDA is not usable here: {problem}")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise DeviceError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        how = f"device {device}"
    if dev.type == "cpu":
        log.info("%s: %s, %d torch threads", how, cpu_name(), torch.get_num_threads())
        return dev
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    if deterministic:
        set_deterministic()
    log.info(
        "%s: cuda:%d %s (%.0f GiB, compute capability %d.%d; torch %s, CUDA %s; deterministic algorithms %s)",
        how,
        index,
        props.name,
        props.total_memory / 2**30,
        props.major,
        props.minor,
        torch.__version__,
        torch.version.cuda,
        "on" if deterministic else "off",
    )
    return dev
