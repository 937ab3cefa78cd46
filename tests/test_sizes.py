"""Score against bytes on disk (adapter_pruning.sizes): a hand-made results frame, exact rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from adapter_pruning.results import score_frame
from adapter_pruning.sizes import score_vs_bytes, write_score_vs_bytes

PROV = {"device": "cpu", "torch": "t", "transformers": "x", "adapters": "a"}


def _state(seed, method, score, *, scope=None, p=0.0, n_pruned=0, lam=None, width=4, dense=1000, **sizes):
    return score_frame(
        {"model": "m", "task": "trec", "seed": seed},
        {"test": {"accuracy": score, "macro_f1": 0.01}, "validation": {"accuracy": 0.02}},
        scope=scope,
        method=method,
        p=p,
        n_params=100,
        n_pruned=n_pruned,
        primary_metric="accuracy",
        provenance=PROV,
        lam=lam,
        width=width,
        dense_bytes=dense,
        **sizes,
    )


def _results() -> pl.DataFrame:
    frames = []
    for seed, d in enumerate((0.0, 0.1)):
        frames += [
            _state(seed, "full", 0.8 + d),
            _state(seed, "dense_small", 0.6 + d, p=75.0, n_pruned=75, width=1, dense=300),
            _state(seed, "standard", 0.7 + d, scope="CU", p=90.0, n_pruned=90, lam=0.5, compact_bytes=200 + 10 * seed),
            _state(seed, "tropical", 0.5 + d, scope="CU", p=90.0, n_pruned=90, lam=0.5, compact_bytes=220),
            # another λ: left out at lam=0.5
            _state(seed, "tropical", 0.4, scope="CU", p=90.0, n_pruned=90, lam=1.0, compact_bytes=230),
            # UN: the structured adapter's bytes (its compact file is not the one shown)
            _state(
                seed,
                "standard",
                0.3 + d,
                scope="UN",
                p=50.0,
                n_pruned=50,
                lam=0.5,
                compact_bytes=900,
                structured_bytes=520,
            ),
            # no compact file: left out
            _state(seed, "random", 0.2, scope="CU", p=90.0, n_pruned=90, lam=0.5),
        ]
    return pl.concat(frames)


def test_score_vs_bytes_by_hand():
    got = score_vs_bytes(_results(), lam=0.5)
    keys = ["output", "scope", "method", "lam", "p", "width", "n_seeds", "bytes", "dense_bytes"]
    assert got.select(keys).rows() == [
        ("full", None, "full", None, 0.0, 4, 2, 1000.0, 1000.0),
        ("dense_small", None, "dense_small", None, 75.0, 1, 2, 300.0, 300.0),
        ("compact", "CU", "standard", 0.5, 90.0, 4, 2, 205.0, 1000.0),
        ("compact", "CU", "tropical", 0.5, 90.0, 4, 2, 220.0, 1000.0),
        ("structured", "UN", "standard", 0.5, 50.0, 4, 2, 520.0, 1000.0),
    ]
    assert got["model"].unique().to_list() == ["m"] and got["task"].unique().to_list() == ["trec"]
    assert got["metric"].unique().to_list() == ["accuracy"]
    assert got["mean"].to_list() == pytest.approx([0.85, 0.65, 0.75, 0.55, 0.35])
    assert got["std"].to_list() == pytest.approx([np.std([0.0, 0.1], ddof=1)] * 5)
    assert got["retained"].to_list() == pytest.approx([1.0, 0.25, 0.1, 0.1, 0.5])
    assert got["share"].to_list() == pytest.approx([1.0, 1.0, 0.205, 0.22, 0.52])
    # every λ: the λ = 1 tropical state appears too
    assert score_vs_bytes(_results()).height == 6


def test_write_score_vs_bytes(tmp_path):
    frame = score_vs_bytes(_results(), lam=0.5)
    out = {"md": tmp_path / "t.md", "csv": tmp_path / "t.csv"}
    write_score_vs_bytes(frame, out, lam=0.5)
    back = pl.read_csv(out["csv"])
    assert back.height == 5 and back["bytes"].to_list() == frame["bytes"].to_list()
    md = out["md"].read_text()
    assert "| m | trec | structured | UN | standard | 0.5 | 50 | 4 | 50.0% | 0.5 | 52.0% | 35.00 ± 7.07 |" in md
    assert "tropical λ = 0.5" in md


def test_score_vs_bytes_figure(tmp_path):
    from adapter_pruning.figures.sizes import score_vs_bytes_figure

    frame = score_vs_bytes(_results(), lam=0.5)
    frame.write_csv(tmp_path / "t.csv")
    out = {ext: tmp_path / f"f.{ext}" for ext in ("png", "svg")}
    score_vs_bytes_figure(tmp_path / "t.csv", out, scope="CU")
    assert all(p.stat().st_size > 1000 for p in out.values())
    # an empty table still draws
    frame.clear().write_csv(tmp_path / "e.csv")
    score_vs_bytes_figure(tmp_path / "e.csv", out, scope="CU")
    assert all(p.stat().st_size > 1000 for p in out.values())
