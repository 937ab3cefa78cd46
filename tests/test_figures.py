"""Zonotope geometry used by Fig. 2, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from adapter_pruning.figures import zonotope_vertices_2d


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
