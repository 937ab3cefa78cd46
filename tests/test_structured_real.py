"""Structured unit pruning on the real packaged MiniLM: a Rotten Tomatoes adapter trained by the package
on real data (``real_rt_adapter``), pruned with ``adapter-prune --scope UN``; each method's
``structured/`` folder, loaded with plain ``adapters`` code (``load_adapter``, with its head), is a
smaller standard adapter (per-layer ``reduction_factor``) whose logits on real validation examples equal
the masked dense adapter's to float tolerance."""

from __future__ import annotations

import json

import pytest
import torch

from adapter_pruning import structured

pytestmark = pytest.mark.slow

METHODS = ("standard", "tropical", "activation")


def _plain_model(minilm_path, folder):
    """``AutoAdapterModel`` + ``load_adapter(folder, with_head=True)``, nothing of this package."""
    from adapters import AutoAdapterModel

    model = AutoAdapterModel.from_pretrained(minilm_path)
    name = model.load_adapter(str(folder), with_head=True, set_active=True, use_safetensors=True)
    model.eval()
    return model, name


def test_structured_minilm_adapter_equals_the_masked_dense(real_rt_adapter, minilm_path, shared_data, tmp_path):
    from transformers import AutoTokenizer

    from adapter_pruning import cli

    adapter_dir, _, val, _ = real_rt_adapter
    out = tmp_path / "out"
    argv = [adapter_dir, "--model", "minilm", "--scope", "UN", "--method", *METHODS, "--p", 50, 90, "--out", out]
    argv += ["--calibration", "rotten_tomatoes", "--calibration-examples", 32, "--data-mirror", shared_data]
    assert cli.main([str(a) for a in argv] + ["--quiet"]) == 0
    tok = AutoTokenizer.from_pretrained(minilm_path)
    batch = tok(val["text"].to_list()[:48], padding=True, truncation=True, max_length=64, return_tensors="pt")
    full_bytes = (adapter_dir / "adapter.safetensors").stat().st_size
    for p, width in ((50, 12), (90, 3)):  # r = 24: 12 and 21 units removed per layer
        for method in METHODS:
            d = out / method / f"p{p}"
            info = json.loads((d / "prune.json").read_text())
            assert info["widths"] == [width] * 6 and info["n_pruned"] == 6 * (24 - width) * (385 + 384)
            structured.verify_beside(d, info)
            cfg = json.loads((d / "structured" / "adapter_config.json").read_text())
            assert cfg["config"]["reduction_factor"] == {str(i): 384 / (width + 0.5) for i in range(6)}
            assert info["structured_bytes"] < full_bytes * (width + 1) / 24
            dense, name = _plain_model(minilm_path, d)
            small, small_name = _plain_model(minilm_path, d / "structured")
            assert small_name == name
            n = {k: v.shape for k, v in small.named_parameters() if f".adapters.{name}." in k}
            assert n[f"bert.encoder.layer.0.output.adapters.{name}.adapter_down.0.weight"] == (width, 384)
            assert n[f"bert.encoder.layer.5.output.adapters.{name}.adapter_up.weight"] == (384, width)
            with torch.no_grad():
                want, got = dense(**batch).logits, small(**batch).logits
            assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (method, p, (got - want).abs().max())
            assert torch.equal(got.argmax(-1), want.argmax(-1))
