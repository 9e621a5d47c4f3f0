"""Exact piecewise-affine mesh warps and smooth displacement fill-in, used at preparation time.

A face deformation is specified on a few control vertices (lips, lids, brows, jaw line); the rest of
the mesh follows by harmonic interpolation, and the deformed mesh is rasterised into a dense
backward map for `cv2.remap`. This is too slow per frame (milliseconds), which is why the renderer
only does it while preparing its patch banks.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve
from scipy.spatial import Delaunay

MAX_STRETCH = 25.0
"""Destination triangles smaller than their source by more than this (area) are left to their neighbours."""


def rect_ring(width: int, height: int, per_side: int) -> np.ndarray:
    """Points along the border of a width×height patch (pixel-centre coordinates), corners included."""
    xs = np.linspace(0.0, width - 1.0, per_side + 1)
    ys = np.linspace(0.0, height - 1.0, per_side + 1)
    top = np.stack([xs, np.zeros_like(xs)], axis=1)
    bottom = np.stack([xs, np.full_like(xs, height - 1.0)], axis=1)
    left = np.stack([np.zeros_like(ys[1:-1]), ys[1:-1]], axis=1)
    right = np.stack([np.full_like(ys[1:-1], width - 1.0), ys[1:-1]], axis=1)
    return np.concatenate([top, bottom, left, right]).astype(np.float64)


def triangulate(points: np.ndarray) -> np.ndarray:
    return Delaunay(points).simplices.astype(np.int32)


def _edges(triangles: np.ndarray) -> np.ndarray:
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    e.sort(axis=1)
    return np.unique(e, axis=0)


def harmonic_fill(n_points: int, triangles: np.ndarray, fixed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Displacements for every vertex: `values` on the `fixed` ones, the graph-harmonic blend elsewhere.

    Harmonic interpolation has no overshoot, so a free vertex never moves further than the controls
    around it: the cheeks follow the mouth corners and the neck the chin, fading to zero at the
    patch border (whose ring is fixed at zero), and nothing folds over.
    """
    edges = _edges(triangles)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_points, n_points))
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    laplacian = sparse.diags(degree) - adjacency
    free = ~fixed
    out = np.zeros((n_points, values.shape[1]), dtype=np.float64)
    out[fixed] = values[fixed]
    if free.any():
        lff = laplacian[free][:, free].tocsc()
        rhs = -laplacian[free][:, fixed] @ out[fixed]
        solved = spsolve(lff, rhs)
        out[free] = solved.reshape(-1, values.shape[1])
    return out


def backward_map(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Dense (h, w, 2) float32 map: for each pixel of the deformed patch, where to sample the source.

    Each destination triangle is rasterised with its index; every pixel then applies its triangle's
    affine dst→src transform, which is exact piecewise-affine warping (shared edges agree, so there
    are no cracks). Pixels no triangle covers keep the identity.

    Rasterising thin triangles (lips pressed together, a stretched lid) can miss single pixels between
    them; those take a neighbouring triangle's transform (`_close_cracks`), since keeping the identity
    there would drop a speck of the unwarped photo into the warped patch.
    """
    width, height = size
    ids = np.full((height, width), -1, dtype=np.int32)
    dst_tri = dst[triangles]
    src_tri = src[triangles]
    e1, e2 = dst_tri[:, 1] - dst_tri[:, 0], dst_tri[:, 2] - dst_tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    s1, s2 = src_tri[:, 1] - src_tri[:, 0], src_tri[:, 2] - src_tri[:, 0]
    src_area = s1[:, 0] * s2[:, 1] - s1[:, 1] * s2[:, 0]
    # A triangle squashed (almost) flat, e.g. between lips pressed together, has an exploding inverse: its
    # few pixels would sample from far away (an eye in the middle of the lips). Its neighbours cover it.
    # A flipped triangle (the warp folded the mesh over itself there) is dropped too.
    good = (np.abs(area) > 1e-6) & (np.abs(src_area) < MAX_STRETCH * np.abs(area)) & (area * src_area > 0)
    for t in np.flatnonzero(good):
        poly = np.round(dst_tri[t] * 16.0).astype(np.int32)
        cv2.fillConvexPoly(ids, poly, int(t), lineType=cv2.LINE_8, shift=4)
    ids = _close_cracks(ids)
    homogeneous = np.concatenate([dst_tri, np.ones((len(triangles), 3, 1))], axis=2)
    safe = homogeneous.copy()
    safe[~good] = np.eye(3)
    affine = np.linalg.solve(safe, src_tri)  # (T, 3, 2): [x y 1] @ affine = src
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.stack([xs, ys], axis=2)
    covered = ids >= 0
    a = affine[ids[covered]]
    px, py = xs[covered], ys[covered]
    out[covered, 0] = px * a[:, 0, 0] + py * a[:, 1, 0] + a[:, 2, 0]
    out[covered, 1] = px * a[:, 0, 1] + py * a[:, 1, 1] + a[:, 2, 1]
    return _despeckle(out.astype(np.float32), np.stack([xs, ys], axis=2).astype(np.float32))


def _despeckle(maps: np.ndarray, identity: np.ndarray, tolerance: float = 2.0) -> np.ndarray:
    """Pixels whose displacement jumps away from all their neighbours' (slivers of triangles that fold over
    crowded lip landmarks) take the neighbours' median: each would show as a speck from elsewhere."""
    disp = maps - identity
    out = maps.copy()
    for c in range(2):
        median = cv2.medianBlur(np.ascontiguousarray(disp[..., c]), 3)
        odd = np.abs(disp[..., c] - median) > tolerance
        out[..., c][odd] = identity[..., c][odd] + median[odd]
    return out


def _close_cracks(ids: np.ndarray, passes: int = 3) -> np.ndarray:
    """`ids` with uncovered pixels (-1) next to covered ones given a neighbour's triangle."""
    out = ids.copy()
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(passes):
        missing = out < 0
        if not missing.any():
            break
        grown = cv2.dilate(out.astype(np.float32), kernel).astype(np.int32)
        out[missing] = grown[missing]
    return out
