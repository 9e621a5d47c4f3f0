"""The fast paths of avatar preparation compute exactly what the plain library calls they replace do."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.linalg import spsolve

from avatar.head_mask import dilate_ellipse
from avatar.mesh_warp import MeshWarp, rect_ring, triangulate


@pytest.mark.parametrize("seed", range(12))
def test_elliptical_dilation_matches_opencv_pixel_for_pixel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(5, 240, 2))
    if seed % 3 == 0:  # a polygon reaching past the picture's edges, like a face oval near the border
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [rng.integers(-30, max(h, w) + 30, (9, 2)).astype(np.int32)], 255)
    else:
        mask = (rng.random((h, w)) < (0.002, 0.05)[seed % 2]).astype(np.uint8) * 255
    radius = int(rng.integers(1, 140))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    np.testing.assert_array_equal(dilate_ellipse(mask, radius), cv2.dilate(mask, kernel))


def test_elliptical_dilation_of_an_empty_mask_is_empty() -> None:
    assert not dilate_ellipse(np.zeros((30, 40), np.uint8), 7).any()


def _mesh(seed: int) -> MeshWarp:
    rng = np.random.default_rng(seed)
    ring = rect_ring(120, 90, 8)
    inner = rng.uniform((10, 10), (110, 80), (40, 2))
    points = np.concatenate([inner, ring])
    return MeshWarp(points, triangulate(points), (120, 90))


def _laplacian_solution(mesh: MeshWarp, fixed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The harmonic fill solved from scratch with scipy's spsolve, the way it was before caching."""
    n = len(mesh.points)
    tri = mesh.triangles
    edges = np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1), axis=0)
    rows, cols = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    laplacian = sparse.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency
    out = np.zeros_like(values)
    out[fixed] = values[fixed]
    free = ~fixed
    out[free] = spsolve(laplacian[free][:, free].tocsc(), -laplacian[free][:, fixed] @ out[fixed])
    return out


def test_cached_harmonic_fill_matches_a_fresh_solve_for_each_set_of_fixed_vertices() -> None:
    mesh = _mesh(1)
    rng = np.random.default_rng(2)
    n = len(mesh.points)
    border = np.arange(n) >= 40
    for pins in ([0, 5, 9], [0, 5, 9], [3, 17], [0, 5, 9]):  # repeats hit the cache, the others must not
        fixed = border.copy()
        fixed[pins] = True
        values = np.where(fixed[:, None], rng.normal(0.0, 3.0, (n, 2)), 0.0)
        values[border] = 0.0
        np.testing.assert_array_equal(mesh.harmonic_fill(fixed, values), _laplacian_solution(mesh, fixed, values))


def test_backward_map_of_an_undeformed_mesh_is_the_pixel_grid() -> None:
    mesh = _mesh(3)
    maps = mesh.backward_map(mesh.points.copy())
    ys, xs = np.mgrid[0:90, 0:120].astype(np.float32)
    np.testing.assert_allclose(maps[..., 0], xs, atol=1e-3)
    np.testing.assert_allclose(maps[..., 1], ys, atol=1e-3)
