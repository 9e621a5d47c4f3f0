"""Exact piecewise-affine mesh warps and smooth displacement fill-in, used at preparation time.

A face deformation is specified on a few control vertices (lips, lids, brows, jaw line); the rest of
the mesh follows by harmonic interpolation, and the deformed mesh is rasterised into a dense
backward map for `cv2.remap`. This is too slow per frame (milliseconds), which is why the renderer
only does it while preparing its patch banks.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu
from scipy.spatial import Delaunay

MAX_STRETCH = 25.0
"""Destination triangles smaller than their source by more than this (area) are left to their neighbours."""
SUBPIXEL = 16.0
"""Triangles are rasterised at 1/16 px (4 fractional bits)."""


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


def _laplacian(n_points: int, triangles: np.ndarray) -> sparse.csr_matrix:
    """The graph Laplacian of the mesh's edges."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    e.sort(axis=1)
    edges = np.unique(e, axis=0)
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_points, n_points))
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return (sparse.diags(degree) - adjacency).tocsr()


class MeshWarp:
    """Warps of one triangulated patch, which a patch bank deforms hundreds of times.

    Everything that depends only on the mesh is computed once: the Laplacian, its factorisation for
    each set of fixed vertices (a rig pins the same vertices for every shape, only their displacements
    change) and the pixel grid.
    """

    def __init__(self, points: np.ndarray, triangles: np.ndarray, size: tuple[int, int]) -> None:
        self.points = points
        self.triangles = triangles
        self.size = size
        self._laplacian = _laplacian(len(points), triangles)
        self._systems: dict[bytes, tuple[Callable[[np.ndarray], np.ndarray], sparse.csr_matrix]] = {}
        width, height = size
        self._xs, self._ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        self._grid32 = (self._xs.astype(np.float32), self._ys.astype(np.float32))

    def harmonic_fill(self, fixed: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Displacements for every vertex: `values` on the `fixed` ones, the graph-harmonic blend elsewhere.

        Harmonic interpolation has no overshoot, so a free vertex never moves further than the controls
        around it: the cheeks follow the mouth corners and the neck the chin, fading to zero at the
        patch border (whose ring is fixed at zero), and nothing folds over.
        """
        out = np.zeros((len(self.points), values.shape[1]), dtype=np.float64)
        out[fixed] = values[fixed]
        free = ~fixed
        if free.any():
            solve, coupling = self._system(fixed)
            out[free] = solve(-(coupling @ out[fixed])).reshape(-1, values.shape[1])
        return out

    def _system(self, fixed: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], sparse.csr_matrix]:
        """(solver of the free vertices' equations, their coupling to the fixed ones) for this set of fixed
        vertices, factorised on first use."""
        key = fixed.tobytes()
        if key not in self._systems:
            free = ~fixed
            rows = self._laplacian[free]
            self._systems[key] = (splu(rows[:, free].tocsc()).solve, rows[:, fixed])
        return self._systems[key]

    def backward_map(self, dst: np.ndarray) -> np.ndarray:
        """Dense (h, w, 2) float32 map: for each pixel of the patch deformed to `dst`, where to sample the source.

        Each destination triangle is rasterised with its index; every pixel then applies its triangle's
        affine dst→src transform, which is exact piecewise-affine warping (shared edges agree, so there
        are no cracks). Pixels no triangle covers keep the identity.

        Rasterising thin triangles (lips pressed together, a stretched lid) can miss single pixels between
        them; those take a neighbouring triangle's transform (`_close_cracks`), since keeping the identity
        there would drop a speck of the unwarped photo into the warped patch.
        """
        width, height = self.size
        n = len(self.triangles)
        ids = np.full((height, width), -1, dtype=np.int32)
        dst_tri = dst[self.triangles]
        src_tri = self.points[self.triangles]
        e1, e2 = dst_tri[:, 1] - dst_tri[:, 0], dst_tri[:, 2] - dst_tri[:, 0]
        area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        s1, s2 = src_tri[:, 1] - src_tri[:, 0], src_tri[:, 2] - src_tri[:, 0]
        src_area = s1[:, 0] * s2[:, 1] - s1[:, 1] * s2[:, 0]
        # A triangle squashed (almost) flat, e.g. between lips pressed together, has an exploding inverse: its
        # few pixels would sample from far away (an eye in the middle of the lips). Its neighbours cover it.
        # A flipped triangle (the warp folded the mesh over itself there) is dropped too.
        good = (np.abs(area) > 1e-6) & (np.abs(src_area) < MAX_STRETCH * np.abs(area)) & (area * src_area > 0)
        drawn = np.flatnonzero(good)
        polygons = np.round(dst_tri[drawn] * SUBPIXEL).astype(np.int32)
        for t, polygon in zip(drawn.tolist(), polygons, strict=True):
            cv2.fillConvexPoly(ids, polygon, t, lineType=cv2.LINE_8, shift=4)
        ids = _close_cracks(ids)
        homogeneous = np.concatenate([dst_tri, np.ones((n, 3, 1))], axis=2)
        homogeneous[~good] = np.eye(3)
        affine = np.linalg.solve(homogeneous, src_tri)  # (T, 3, 2): [x y 1] @ affine = src
        # Pixels no triangle covers take an extra identity transform, which reproduces x and y exactly.
        affine = np.concatenate([affine, [[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]])
        ids[ids < 0] = n
        pixels = ids.ravel()
        planes = []
        for c, grid in enumerate(self._grid32):
            ax, ay, a1 = np.ascontiguousarray(affine[:, :, c].T)
            # x·ax + y·ay + a1 per pixel, in float64 and in that order, with no temporaries beyond two planes.
            mapped = ax.take(pixels).reshape(height, width)
            mapped *= self._xs
            along_y = ay.take(pixels).reshape(height, width)
            along_y *= self._ys
            mapped += along_y
            mapped += a1.take(pixels).reshape(height, width)
            planes.append(_despeckle(mapped.astype(np.float32), grid))
        return cv2.merge(planes)


def _despeckle(plane: np.ndarray, identity: np.ndarray, tolerance: float = 2.0) -> np.ndarray:
    """`plane` (one coordinate of a map, changed in place) with pixels whose displacement jumps away from all
    their neighbours' (slivers of triangles that fold over crowded lip landmarks) given the neighbours'
    median: each would show as a speck from elsewhere."""
    disp = plane - identity
    median = cv2.medianBlur(disp, 3)
    odd = np.abs(disp - median) > tolerance
    plane[odd] = identity[odd] + median[odd]
    return plane


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
