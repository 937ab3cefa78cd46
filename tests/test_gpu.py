"""What the workflow runs on a GPU, on CUDA: the tropical solve and the masks (the CPU's results,
bit-reproducibly), a few training steps (recorded with the GPU's name, repeated bit for bit), loading a
trained adapter, scoring with row batches, the calibration hooks, and the tiny workflow with
``device: cuda`` whose ``results.parquet`` records the GPU.

Skipped where no CUDA device is present (CI has none). ``$ADAPTER_PRUNING_TEST_DEVICE=cpu`` runs the
same tests on the CPU instead (benchmarks/gpu_check.sh's CPU mode, which checks the check's plumbing).
Data: the mirror ``../shared/data``, or ``$ADAPTER_PRUNING_DATA``; the tiny models take MiniLM's
tokenizer from ``adapter_pruning.testing.minilm_files`` (``$ADAPTER_PRUNING_MINILM_DIR`` on a machine
without the packaged model). ``$GPU_CHECK_WORKDIR``: where the workflow test runs (``run1/``), so that
gpu_check.sh can run it again and compare. docs/benchmarks.md records the last run on a GPU.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adapter_pruning.masks import AdapterLayer, pruning_masks
from adapter_pruning.tropical import DEFAULT_LAM_REL, lambda_scale, solve

DEVICE = os.environ.get("ADAPTER_PRUNING_TEST_DEVICE", "cuda")
REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def device_name() -> str:
    from adapter_pruning.devices import describe

    return describe(DEVICE)["device_name"]


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
    first = _solve(A, B, DEVICE)
    for _ in range(5):
        again = _solve(A, B, DEVICE)
        assert again.steps == first.steps
        assert torch.equal(again.A_hat, first.A_hat)
        assert torch.equal(again.B_hat, first.B_hat)
        assert torch.equal(again.trace, first.trace)


def test_fast_solve_on_cuda_matches_cpu():
    A, B = adapter_like(seed=1)
    cpu, gpu = _solve(A, B, "cpu"), _solve(A, B, DEVICE)
    assert gpu.A_hat.device.type == DEVICE
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
    gpu_layers = [AdapterLayer(l.prefix, l.A.to(DEVICE), l.B.to(DEVICE), l.up_bias.to(DEVICE)) for l in cpu_layers]
    want = pruning_masks(cpu_layers, opt, 90, scope)
    got = pruning_masks(gpu_layers, opt, 90, scope)
    for method in ("tropical", "standard"):
        for w, g in zip(want[method], got[method]):
            assert g.A.device.type == DEVICE
            assert torch.equal(g.A.cpu(), w.A) and torch.equal(g.B.cpu(), w.B)
            assert torch.equal(g.up_bias.cpu(), w.up_bias)


# ------------------------------------------------------------------------------------------------
# The model side: training, loading, scoring, calibration, and the workflow.


@pytest.fixture(scope="module")
def data_dir() -> Path:
    path = Path(os.environ.get("ADAPTER_PRUNING_DATA", REPO.parent / "shared" / "data"))
    if not (path / "SHA256SUMS").is_file():
        pytest.skip(f"no data mirror at {path} (set ADAPTER_PRUNING_DATA)")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    if os.environ.get("GPU_CHECK_WORKDIR"):
        path = Path(os.environ["GPU_CHECK_WORKDIR"])
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("gpu")


@pytest.fixture(scope="module")
def tiny_dir(workdir) -> Path:
    """The tiny random BERT of the workflow tests (workflow_tests/helpers.py: make_tiny_model)."""
    from adapter_pruning.testing import make_tiny_bert

    path = workdir / "tiny-bert"
    if not (path / "config.json").is_file():
        make_tiny_bert(path, hidden_size=64, intermediate_size=128, max_position_embeddings=128)
    return path


@pytest.fixture(scope="module")
def trec(data_dir):
    from adapter_pruning.data import load_split

    caps = {"train": 256, "validation": 48, "test": 48}
    return {split: load_split("trec", split, mirror=data_dir, caps=caps) for split in caps}


def _train(tiny_dir, trec, out, **kw):
    from adapter_pruning.training import TrainConfig, train_adapter

    cfg = TrainConfig(
        steps=8, eval_every=4, batch_size=16, max_length=32, eval_batch_size=48, device=DEVICE, threads=1, **kw
    )
    cfg.progress = False
    return train_adapter(str(tiny_dir), "trec", trec["train"], trec["validation"], out, cfg)


@pytest.fixture(scope="module")
def trained(tiny_dir, trec, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "adapter"
    return out, _train(tiny_dir, trec, out)


def test_a_few_training_steps_record_the_gpu_and_repeat_bit_for_bit(tiny_dir, trec, trained, tmp_path):
    out, metrics = trained
    assert metrics["device"] == DEVICE and metrics["device_name"] == device_name()
    assert len(metrics["loss_curve"]) == 8 and np.isfinite(metrics["loss_curve"]).all()
    again = _train(tiny_dir, trec, tmp_path / "again")
    assert again["loss_curve"] == metrics["loss_curve"]
    for name in ("adapter.safetensors", "model_head.safetensors"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name


def test_bf16_training_steps(tiny_dir, trec, tmp_path):
    if DEVICE == "cuda" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    metrics = _train(tiny_dir, trec, tmp_path / "bf16", precision="bf16")
    assert metrics["precision"] == "bf16" and np.isfinite(metrics["loss_curve"]).all()


def test_a_trained_adapter_loads_and_scores_with_row_batches_like_on_the_cpu(tiny_dir, trec, trained):
    from adapter_pruning.evaluation import predict_logits, resolve_batch_tokens
    from adapter_pruning.models import load_trained

    out, _ = trained
    model, tok, _ = load_trained(str(tiny_dir), out, device=DEVICE)
    assert {p.device.type for p in model.parameters()} == {DEVICE}
    if DEVICE == "cuda":
        assert resolve_batch_tokens("auto", DEVICE) is None  # row batches on CUDA
    df = trec["test"]
    rows = predict_logits(model, tok, df, batch_size=48, max_length=32, device=DEVICE, batch_tokens="auto")
    small = predict_logits(model, tok, df, batch_size=7, max_length=32, device=DEVICE, batch_tokens=None)
    np.testing.assert_allclose(small, rows, rtol=1e-4, atol=1e-5)  # the batch layout changes nothing but rounding
    cpu_model, _, _ = load_trained(str(tiny_dir), out, device="cpu")
    cpu = predict_logits(cpu_model, tok, df, batch_size=48, max_length=32, device="cpu", batch_tokens=None)
    np.testing.assert_allclose(rows, cpu, rtol=1e-4, atol=1e-5)  # fp32: TF32 is off
    if DEVICE == "cuda" and torch.cuda.is_bf16_supported():
        bf16 = predict_logits(model, tok, df, batch_size=48, max_length=32, device=DEVICE, precision="bf16")
        assert np.isfinite(bf16).all() and np.abs(bf16 - rows).max() < 0.5


def test_calibration_hooks_on_cuda_match_the_cpu(tiny_dir, trec, trained):
    from adapter_pruning.models import load_trained
    from adapter_pruning.stages.calibrate import input_rms

    out, _ = trained
    got = {}
    for dev in (DEVICE, "cpu"):
        model, tok, name = load_trained(str(tiny_dir), out, device=dev)
        got[dev] = input_rms(model, tok, name, trec["train"][:64], max_length=32, batch_size=16, device=dev)
    (norms, n), (cpu_norms, cpu_n) = got[DEVICE], got["cpu"]
    assert n == cpu_n > 64 and norms.keys() == cpu_norms.keys()
    for prefix in norms:
        for a, b in zip(norms[prefix], cpu_norms[prefix]):
            assert a.device.type == "cpu" and a.dtype == torch.float64
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_scoring_records_the_gpu(tiny_dir, trec, trained, data_dir, tmp_path):
    import polars as pl

    from adapter_pruning.stages.evaluate import evaluate_states

    out, _ = trained
    paths = {}
    for split, df in trec.items():
        paths[split] = tmp_path / f"{split}.parquet"
        df.write_parquet(paths[split])
    evaluate_states(
        {"model": "tiny", "task": "trec", "seed": 0},
        {"model": str(tiny_dir), "max_length": 32},
        [out],
        {"validation": paths["validation"], "test": paths["test"]},
        [tmp_path / "scores.parquet"],
        [tmp_path / "pred.parquet"],
        device=DEVICE,
        batch_size=48,
    )
    rows = pl.read_parquet(tmp_path / "scores.parquet")
    assert rows.select("device", "device_name", "train_device", "train_device_name").unique().rows() == [
        (DEVICE, device_name(), DEVICE, device_name())
    ]


@pytest.mark.slow
def test_tiny_workflow_with_device_cuda_records_the_gpu(tiny_dir, data_dir, workdir):
    """The whole tiny workflow (per_sweep, all four methods: calibration too) with ``device: cuda``; at most
    8 GPU jobs at a time (--resources gpu=8). Every score row was computed on this GPU, every adapter
    trained on it, and each job logged it."""
    if importlib.util.find_spec("snakemake") is None:
        pytest.skip("snakemake is not installed")
    import polars as pl

    sys.path.insert(0, str(REPO / "workflow_tests"))
    from helpers import gpu_config, run_snakemake, write_config

    run = workdir / "run1"
    run.mkdir(exist_ok=True)
    cfg = write_config(run / "config.yaml", gpu_config(tiny_dir, data_dir, device=DEVICE))
    args = ("--cores", "8", "--resources", "gpu=8", "--scheduler", "greedy")
    proc = run_snakemake(run, cfg, *args, timeout=600)
    (run / "snakemake.log").write_text(proc.stdout + proc.stderr)
    assert f"device {DEVICE}: training, calibration and scoring run on" in proc.stdout + proc.stderr
    res = pl.read_parquet(run / "results" / "summary" / "results.parquet")
    assert res.select("device", "device_name", "train_device", "train_device_name").unique().rows() == [
        (DEVICE, device_name(), DEVICE, device_name())
    ]
    assert sorted(res["method"].unique()) == ["activation", "full", "random", "standard", "tropical"]
    logs = [p for rule in ("train_adapter", "calibrate", "evaluate") for p in (run / "logs" / rule).rglob("*.log")]
    assert len(logs) == 2 + 2 + 2 + 4  # 2 tasks trained, calibrated, scored in full; 4 sweeps (rt: 3 scopes)
    assert all(f"device {DEVICE}: " in p.read_text() for p in logs), [p for p in logs if DEVICE not in p.read_text()]
