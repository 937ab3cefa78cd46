"""Zonotope geometry used by Fig. 2, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from adapter_pruning.figures.zonotope import zonotope_vertices_2d


@pytest.mark.parametrize("m, seed", [(1, 0), (2, 1), (5, 2), (9, 3)])
def test_zonotope_vertices_equal_convex_hull_of_all_sums(m, seed):
    g = np.random.default_rng(seed).normal(size=(m, 2))
    pts = np.array([np.array(lam) @ g for lam in itertools.product([0, 1], repeat=m)])
    v = zonotope_vertices_2d(g)
    if m == 1:
        assert {tuple(np.round(x, 12)) for x in v} == {tuple(np.round(x, 12)) for x in pts}
        return
    hull = pts[ConvexHull(pts).vertices]
    assert len(v) == len(hull) == 2 * m
    assert {tuple(np.round(x, 9)) for x in v} == {tuple(np.round(x, 9)) for x in hull}
    # counter-clockwise: positive signed area
    x, y = v[:, 0], v[:, 1]
    assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0


def test_zonotope_of_zero_generators_is_the_origin():
    assert np.array_equal(zonotope_vertices_2d(np.zeros((3, 2))), np.zeros((1, 2)))


def test_degeneracy_point_segment_polygon():
    from adapter_pruning.figures.zonotope import zonotope_degeneracy

    assert zonotope_degeneracy(np.zeros((4, 5))) == "point"
    seg = np.outer([1.0, -2.0, 0.0, 0.5], [0.3, 0.1, -0.2, 0.0, 1.0])
    assert zonotope_degeneracy(seg) == "segment"
    assert zonotope_degeneracy(np.random.default_rng(0).normal(size=(4, 5))) is None


def _write_adapter(tmp_path, A, B, up_bias, name="t"):
    import json

    from safetensors.torch import save_file

    from adapter_pruning import artifacts
    from adapter_pruning.masks import AdapterLayer, layers_to_state_dict

    layer = AdapterLayer(prefix=f"bert.encoder.layer.0.output.adapters.{name}", A=A, B=B, up_bias=up_bias)
    d = tmp_path / "adapter"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"name": name}))
    save_file(layers_to_state_dict([layer]), str(d / "adapter.safetensors"))
    return d, layer, lambda Ah, Bh, path: artifacts.write_optimized(path, Ah[None], Bh[None], [layer.prefix])


def test_zonotope_figure_marks_collapsed_panels_and_picks_an_informative_node(tmp_path):
    import torch

    from adapter_pruning.figures.zonotope import zonotope_figure, zonotope_node

    g = torch.Generator().manual_seed(0)
    A, B, ub = torch.randn(4, 7, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    adapter, layer, write_opt = _write_adapter(tmp_path, A, B, ub)
    # optimized: node 0 keeps a single negative generator (G2 collapses to a segment), others stay rich
    A_hat, B_hat = A.clone(), B.clone()
    B_hat[0] = torch.where(B[0] < 0, 0.0, B[0])
    neg = int(torch.nonzero(B[0] < 0)[0]) if (B[0] < 0).any() else 0
    B_hat[0, neg] = -abs(float(B[0, neg])) if (B[0] < 0).any() else B_hat[0, neg]
    write_opt(A_hat, B_hat, tmp_path / "opt.safetensors")
    out = {ext: tmp_path / f"z.{ext}" for ext in ("png", "svg")}
    chosen = zonotope_node(B, B_hat)
    assert chosen != 0  # node 0's G2 panel would collapse; the default avoids it
    info = zonotope_figure(adapter, tmp_path / "opt.safetensors", out)
    assert info["node"] == chosen and info["G1"] is None and info["G2"] is None
    assert out["png"].stat().st_size > 0 and out["svg"].stat().st_size > 0
    info0 = zonotope_figure(adapter, tmp_path / "opt.safetensors", out, node=0)
    assert info0["G2"] in ("segment", "point", "empty")
    # everything zero after optimisation: both panels collapse to a point, and the figure says so
    write_opt(torch.zeros_like(A), torch.zeros_like(B), tmp_path / "zero.safetensors")
    info_z = zonotope_figure(adapter, tmp_path / "zero.safetensors", out)
    assert {info_z["G1"], info_z["G2"]} <= {"point", "empty"} and "point" in (info_z["G1"], info_z["G2"])
    assert "collapsed to a point" in out["svg"].read_text()
