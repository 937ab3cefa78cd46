"""adapter_pruning.models: name/device resolution, building and reloading adapter models."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from adapter_pruning.devices import DeviceError
from adapter_pruning.models import (
    ADAPTER_FILES,
    ModelError,
    build_adapter_model,
    load_tokenizer,
    load_trained,
    resolve_device,
    resolve_model,
    supported_model_types,
)


def test_resolve_model(minilm_path, tiny_model_dir, tmp_path, monkeypatch):
    assert resolve_model("minilm") == minilm_path
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    monkeypatch.chdir(tiny_model_dir.parent)
    assert resolve_model(f"./{tiny_model_dir.name}") == str(tiny_model_dir.resolve())
    for bad in ("./no-such-model", str(tmp_path / "missing"), "~/no/such/model"):
        with pytest.raises(ModelError, match="no such model directory") as err:
            resolve_model(bad)
        assert bad in str(err.value)
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model(str(tmp_path))
    # conftest sets HF_HUB_OFFLINE: an uncached hub id is refused up front, by name.
    with pytest.raises(ModelError, match=r"'acme/not-a-model'.*offline"):
        resolve_model("acme/not-a-model")
    with pytest.raises(ModelError, match="neither an alias"):
        resolve_model("what is this?")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not usable here"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="'tpu'"):
        resolve_device("tpu")


def test_build_freezes_backbone_and_names_adapter(tiny_model_dir):
    model = build_adapter_model(str(tiny_model_dir), "trec", 6, label_names=list("abcdef"))
    trainable = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    for k in range(2):
        prefix = f"bert.encoder.layer.{k}.output.adapters.trec"
        assert trainable.pop(f"{prefix}.adapter_down.0.weight") == (2, 32)  # r = 32 / 16
        assert trainable.pop(f"{prefix}.adapter_down.0.bias") == (2,)
        assert trainable.pop(f"{prefix}.adapter_up.weight") == (32, 2)
        assert trainable.pop(f"{prefix}.adapter_up.bias") == (32,)
    assert trainable == {
        "heads.trec.1.weight": (32, 32),
        "heads.trec.1.bias": (32,),
        "heads.trec.4.weight": (6, 32),
        "heads.trec.4.bias": (6,),
    }
    assert model.active_head == "trec"
    assert model.config.prediction_heads["trec"]["label2id"] == {c: i for i, c in enumerate("abcdef")}
    # Same seed, same initialisation; another seed, another one.
    again = build_adapter_model(str(tiny_model_dir), "trec", 6, seed=0)
    other = build_adapter_model(str(tiny_model_dir), "trec", 6, seed=1)
    name = "heads.trec.4.weight"
    assert torch.equal(dict(model.named_parameters())[name], dict(again.named_parameters())[name])
    assert not torch.equal(dict(model.named_parameters())[name], dict(other.named_parameters())[name])


def test_build_rejects_bad_requests(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="'gelu'.*ReLU"):
        build_adapter_model(str(tiny_model_dir), "rt", 2, non_linearity="gelu")
    with pytest.raises(ModelError, match="does not divide hidden size 32"):
        build_adapter_model(str(tiny_model_dir), "rt", 2, reduction_factor=5)
    with pytest.raises(ModelError, match="num_labels"):
        build_adapter_model(str(tiny_model_dir), "rt", 1)
    from transformers import SqueezeBertConfig

    assert "squeezebert" not in supported_model_types()
    SqueezeBertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"model_type 'squeezebert'\) is not supported by the adapters") as err:
        build_adapter_model(str(tmp_path), "rt", 2)
    assert str(tmp_path) in str(err.value)


def test_save_and_load_trained_roundtrip(tiny_model_dir, tmp_path):
    model = build_adapter_model(str(tiny_model_dir), "rotten_tomatoes", 2)
    with torch.no_grad():  # move away from the initialisation so the check is not trivial
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    model.save_adapter(str(tmp_path / "ad"), "rotten_tomatoes", use_safetensors=True)
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == sorted(ADAPTER_FILES)
    tok = load_tokenizer(str(tiny_model_dir))
    batch = tok(["a fine film", "dull and long, a waste"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**batch).logits
    loaded, tokenizer, name = load_trained(str(tiny_model_dir), tmp_path / "ad", device="cpu")
    assert name == "rotten_tomatoes" and not loaded.training
    assert loaded.active_head == "rotten_tomatoes"
    assert tokenizer.vocab == tok.vocab
    with torch.inference_mode():
        assert torch.equal(loaded(**batch).logits, expected)
    (tmp_path / "ad" / "model_head.safetensors").unlink()
    with pytest.raises(ModelError, match=r"missing \['model_head.safetensors'\]"):
        load_trained(str(tiny_model_dir), tmp_path / "ad")


@pytest.mark.slow
def test_minilm_adapter_layout_matches_design(tmp_path):
    """The real offline model: parameter names/shapes and saved keys as docs/DESIGN.md states."""
    model = build_adapter_model("minilm", "meld", 7)
    trainable = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 6 * 4 + 4
    for k in range(6):
        prefix = f"bert.encoder.layer.{k}.output.adapters.meld"
        assert trainable[f"{prefix}.adapter_down.0.weight"] == (24, 384)
        assert trainable[f"{prefix}.adapter_down.0.bias"] == (24,)
        assert trainable[f"{prefix}.adapter_up.weight"] == (384, 24)
        assert trainable[f"{prefix}.adapter_up.bias"] == (384,)
    assert trainable["heads.meld.4.weight"] == (7, 384)
    model.save_adapter(str(tmp_path), "meld", use_safetensors=True)
    saved = set(load_file(tmp_path / "adapter.safetensors")) | set(load_file(tmp_path / "model_head.safetensors"))
    assert saved == set(trainable)
    config = json.loads((tmp_path / "adapter_config.json").read_text())["config"]
    assert (config["reduction_factor"], config["non_linearity"]) == (16, "relu")


@pytest.mark.slow
def test_loading_the_model_skips_unused_transformers_extras():
    """lean_transformers: building the packaged MiniLM adapter model and its tokenizer (what every
    train / calibrate / evaluate job does) imports neither scikit-learn nor scipy, which are installed
    here (sentence-transformers needs them) and cost about 1.4 s per job (docs/benchmarks.md); a later
    transformers that renames the flags fails this test instead of silently getting slow again."""
    import importlib.util
    import subprocess
    import sys

    for extra in ("sklearn", "scipy"):
        if importlib.util.find_spec(extra) is None:
            pytest.skip(f"{extra} is not installed, so nothing can import it")
    code = (
        "import sys\n"
        "from adapter_pruning import models\n"
        "model = models.build_adapter_model('minilm', 'a', 2)\n"
        "models.load_tokenizer('minilm')\n"
        "import transformers.generation.candidate_generator, transformers.loss.loss_for_object_detection\n"
        "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
