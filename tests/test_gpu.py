"""CUDA checks: the solver and the masks give the CPU's results on a GPU, bit-reproducibly.

Skipped where no CUDA device is present (CI has none); run them on a GPU machine with
``pytest tests/test_gpu.py``. docs/benchmarks.md records the last run.
"""

from __future__ import annotations

import pytest
import torch

from adapter_pruning.masks import AdapterLayer, pruning_masks
from adapter_pruning.tropical import DEFAULT_LAM_REL, lambda_scale, solve

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def adapter_like(L=6, d=384, r=24, seed=0):
    """Trained-adapter-like weights: heavy-tailed, no exact ties (float64)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(L, r, d + 1, generator=g, dtype=torch.float64) * torch.rand(
        L, r, 1, generator=g, dtype=torch.float64
    )
    B = torch.randn(L, d, r, generator=g, dtype=torch.float64) ** 3 * 0.05
    return A, B


def _solve(A, B, device):
    lam = DEFAULT_LAM_REL * lambda_scale(A, B)
    return solve(A.to(device), B.to(device), lam1=lam.to(device), lam2=lam.to(device), steps=300)


def test_fast_solve_is_bit_reproducible_on_cuda():
    A, B = adapter_like()
    first = _solve(A, B, "cuda")
    for _ in range(5):
        again = _solve(A, B, "cuda")
        assert again.steps == first.steps
        assert torch.equal(again.A_hat, first.A_hat)
        assert torch.equal(again.B_hat, first.B_hat)
        assert torch.equal(again.trace, first.trace)


def test_fast_solve_on_cuda_matches_cpu():
    A, B = adapter_like(seed=1)
    cpu, gpu = _solve(A, B, "cpu"), _solve(A, B, "cuda")
    assert gpu.A_hat.device.type == "cuda"
    assert gpu.steps == cpu.steps
    torch.testing.assert_close(gpu.trace.cpu(), cpu.trace, rtol=1e-10, atol=0)
    torch.testing.assert_close(gpu.A_hat.cpu(), cpu.A_hat, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.B_hat.cpu(), cpu.B_hat, rtol=1e-9, atol=1e-12)
    assert torch.equal(gpu.A_hat.cpu() == 0, cpu.A_hat == 0)  # the same exact zeros


@pytest.mark.parametrize("scope", ["CU", "CB", "CN"])
def test_masks_for_a_model_on_cuda_with_optimized_weights_on_cpu(scope):
    """Masks of layers on the GPU with Â/B̂ read from disk on the CPU (the masks module's contract: it
    moves the optimized tensors to each layer's device; rule prune itself works on the CPU)."""
    A, B = adapter_like(L=3, d=64, r=4, seed=2)
    res = _solve(A, B, "cpu")
    opt = [(res.A_hat[k].float(), res.B_hat[k].float()) for k in range(3)]
    cpu_layers = [AdapterLayer(f"l{k}", A[k].float(), B[k].float(), torch.linspace(-1, 1, 64)) for k in range(3)]
    gpu_layers = [AdapterLayer(l.prefix, l.A.cuda(), l.B.cuda(), l.up_bias.cuda()) for l in cpu_layers]
    want = pruning_masks(cpu_layers, opt, 90, scope)
    got = pruning_masks(gpu_layers, opt, 90, scope)
    for method in ("tropical", "standard"):
        for w, g in zip(want[method], got[method]):
            assert g.A.device.type == "cuda"
            assert torch.equal(g.A.cpu(), w.A) and torch.equal(g.B.cpu(), w.B)
            assert torch.equal(g.up_bias.cpu(), w.up_bias)
