"""How far a face in an output frame is turned, nodded and tilted relative to the photo, read from the face mesh.

`FaceLandmarks.pose` reads pitch off the forehead-to-chin axis, so every opening of the jaw reads as a nod
(±1° of noise on a still head that only talks). Here only points that do not move with the mouth, brows or
lids are used (nose, forehead, temples, upper cheeks, eye corners), fitted rigidly (rotation and scale)
to the same points in the photo, so what is left is the head's own rotation.
"""

from __future__ import annotations

import numpy as np

from avatar.landmarks import FaceLandmarks

RIGID = np.array(
    [168, 6, 197, 195, 5, 4, 1, 10, 151, 9, 8, 33, 133, 362, 263, 234, 454, 127, 356, 93, 323, 21, 251, 116, 345],
    dtype=np.intp,
)


def relative_pose(face: FaceLandmarks, reference: FaceLandmarks) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of `face` relative to `reference`: positive yaw turns the face towards the
    image's right, positive pitch lowers the chin, positive roll tilts it clockwise on the image."""
    p = reference.points[RIGID].astype(np.float64)
    q = face.points[RIGID].astype(np.float64)
    p -= p.mean(axis=0)
    q -= q.mean(axis=0)
    u, _, vt = np.linalg.svd(p.T @ q)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    # x right, y down, z away from the camera: the nose (z < 0) moving right is a turn to the right.
    yaw = np.degrees(np.arctan2(-r[0, 2], r[2, 2]))
    pitch = np.degrees(np.arctan2(-r[1, 2], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)
