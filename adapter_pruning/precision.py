"""Numeric precision of the model's forward (and backward) passes: training, calibration, scoring.

Three settings, each a context manager around the model's passes (:func:`autocast`):

* ``"fp32"`` (default): plain float32; on CUDA TF32 is switched off for the duration (matmuls and
  cuDNN), so a GPU computes what a CPU computes up to summation order.
* ``"bf16"``: ``torch.autocast(device_type, dtype=torch.bfloat16)`` on the CPU and on CUDA. Weights,
  optimizer state, gradients of parameters and the loss stay float32; matmuls and linear layers run
  in bfloat16 (autocast's op lists; softmax, layer norm and the cross-entropy run in float32). On a
  CPU with AVX512-BF16 or AMX this is the fast path (docs/benchmarks.md, "bf16 compute"); a CPU
  without them emulates it slowly (:func:`check_precision` logs a warning). No loss scaling is needed
  for bf16 (its exponent range is float32's).
* ``"tf32"`` (CUDA only): float32 tensors, with matmuls and cuDNN allowed to use TF32 tensor cores
  (``torch.set_float32_matmul_precision("high")``).

The precision is part of what defines a trained adapter and a score: the workflow puts it in the
params of ``train_adapter`` (``training.precision``), ``calibrate`` and the scoring rules
(``evaluation.precision``), and every score row records it (``results.SCHEMA``: ``precision``,
``train_precision``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

# torch is imported inside the functions: the CLI and the config checks read PRECISIONS without it.

__all__ = [
    "PRECISIONS",
    "DEFAULT_PRECISION",
    "PrecisionError",
    "check_precision",
    "autocast",
    "float32_matmul",
    "native_bf16",
]

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "tf32")
DEFAULT_PRECISION = "fp32"


class PrecisionError(ValueError):
    """A precision that is unknown or that the device cannot run."""


def native_bf16(device="cpu") -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (CPU: AVX512-BF16 or AMX; CUDA: sm80+)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    cpu = getattr(torch.backends, "cpu", None)
    capability = cpu.get_cpu_capability() if cpu is not None and hasattr(cpu, "get_cpu_capability") else ""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    return bool(avx512_bf16() or amx()) or "AMX" in capability.upper()


def check_precision(precision: str, device, *, what: str = "precision") -> str:
    """Return ``precision`` if ``device`` can run it; otherwise raise :class:`PrecisionError` naming
    ``what`` (e.g. the config key). ``tf32`` needs CUDA; ``bf16`` on CUDA needs bf16 support (sm80+);
    ``bf16`` on a CPU without native support runs (emulated) with a warning."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"{what}: {precision!r} is not one of {list(PRECISIONS)}")
    import torch

    device = torch.device(device)
    if precision == "tf32" and device.type != "cuda":
        raise PrecisionError(f"{what}: 'tf32' is a CUDA precision, but this job runs on {device} (use fp32 or bf16)")
    if precision == "bf16" and not native_bf16(device):
        if device.type == "cuda":
            raise PrecisionError(f"{what}: 'bf16' needs a GPU with bfloat16 support (compute capability >= 8.0)")
        log.warning("%s bf16: this CPU has no native bfloat16 matmuls (AVX512-BF16/AMX); expect it to be slow", what)
    return precision


@contextlib.contextmanager
def float32_matmul(precision: str) -> Iterator[None]:
    """The float32 matmul setting of ``precision`` for the enclosed code, restored on exit:
    TF32 allowed (``torch.set_float32_matmul_precision("high")`` and cuDNN's flag) for ``tf32``,
    exact float32 (``"highest"``, cuDNN TF32 off) otherwise. :func:`autocast` includes it; wrap a
    backward pass (which runs outside autocast) in it so that it computes like its forward pass."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision {precision!r} is not one of {list(PRECISIONS)}")
    import torch

    value = "high" if precision == "tf32" else "highest"
    old, old_cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision(value)
    torch.backends.cudnn.allow_tf32 = value != "highest"
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
        torch.backends.cudnn.allow_tf32 = old_cudnn


@contextlib.contextmanager
def autocast(precision: str, device) -> Iterator[None]:
    """Run the enclosed forward passes in ``precision`` on ``device`` (see the module docstring).
    Backward passes belong outside it (PyTorch's autocast rule), inside :func:`float32_matmul`. Call
    :func:`check_precision` once beforehand: this only refuses an unknown value."""
    import torch

    with float32_matmul(precision):
        if precision == "bf16":
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                yield
        else:
            yield
