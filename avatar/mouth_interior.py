"""What shows between parted lips: upper teeth on the upper jaw, lower teeth and tongue on the lower
jaw, a dark cavity behind, all with soft edges.

The photo's own teeth are reused when it shows them (the sample point moves with the upper lip,
so they stay on the upper jaw); otherwise teeth are synthesised and colour-matched to the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar.face_rig import FaceFrame, LipTargets, MouthRig

CAVITY_TINT = np.array([0.7, 0.72, 1.15])
"""The cavity is the lips' colour, darker and redder (BGR gains): a mouth is dark red inside, not grey."""
MIN_TEETH_GAP = 0.05
"""A photo's lip gap (face units) from which its visible teeth are reused."""


IVORY = np.array([0.86, 0.93, 0.98])
"""BGR of teeth under white light: warm white, never bluish."""


def _light_tint(skin: np.ndarray) -> np.ndarray:
    """The colour of the photo's light, as BGR gains ≤ 1, judged from the skin: teeth must be lit like the face.

    Untinted teeth next to skin under warm light read as grey-blue, the tell-tale of a pasted mouth.
    """
    gains = np.clip(skin / max(float(skin.max()), 1.0), 0.2, 1.0)
    return gains**0.3


@dataclass(frozen=True)
class MouthColours:
    lips: np.ndarray
    skin: np.ndarray
    teeth: np.ndarray
    reuse_teeth: bool


def _mean_in(image: np.ndarray, polygon: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
    if exclude is not None:
        cv2.fillPoly(mask, [np.round(exclude).astype(np.int32)], 0)
    if mask.sum() == 0:
        return np.array([90.0, 100.0, 150.0])
    return np.array(cv2.mean(image, mask)[:3])


def analyse_mouth(image: np.ndarray, xy: np.ndarray, rig: MouthRig) -> MouthColours:
    """Lip, skin and teeth colours, and whether the photo shows teeth worth reusing."""
    lips = _mean_in(image, xy[lm.LIPS_OUTER], xy[lm.LIPS_INNER])
    skin = np.median(image[np.round(xy[lm.CHEEKS, 1]).astype(int), np.round(xy[lm.CHEEKS, 0]).astype(int)], axis=0)
    skin = skin.astype(np.float64)
    reuse = False
    teeth = np.clip(IVORY * _light_tint(skin) * min(240.0, 1.15 * skin.max()), 60, 245)
    if rig.centre_gap > MIN_TEETH_GAP * rig.iod:
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(xy[lm.LIPS_INNER]).astype(np.int32)], 255)
        inner = image[mask > 0].astype(np.float64)
        if len(inner) >= 8:
            bright = inner[inner.sum(axis=1) >= np.percentile(inner.sum(axis=1), 70)]
            if bright.mean() > 0.85 * skin.mean():
                reuse = True
                teeth = bright.mean(axis=0)
    return MouthColours(lips=lips, skin=skin, teeth=teeth, reuse_teeth=reuse)


def opening_mask(image: np.ndarray, xy: np.ndarray, colours: MouthColours, iod: float) -> np.ndarray:
    """uint8 mask of everything in the photo's mouth that looks like its interior (teeth, dark corners),
    including what lies outside the detector's inner-lip contour: smile corners often show teeth and
    shadow beyond it. Deliberately generous, unlike `lip_contour.opening_region` (which must find the
    lip edge precisely): whatever it marks is painted over when the lips close."""
    h, w = image.shape[:2]
    radius = max(1, round(0.06 * iod))
    outer_poly = np.round(xy[lm.LIPS_OUTER]).astype(np.int32)
    inner_poly = np.round(xy[lm.LIPS_INNER]).astype(np.int32)
    # Only the lips (and the inner contour's dilation) can be marked: the rest of a large photo is skipped.
    corners = np.concatenate([outer_poly, inner_poly])
    x0, y0 = np.clip(corners.min(axis=0) - radius - 1, 0, (w, h))
    x1, y1 = np.clip(corners.max(axis=0) + radius + 2, 0, (w, h))
    mask = np.zeros((h, w), np.uint8)
    if x1 <= x0 or y1 <= y0:
        return mask
    origin = np.array([x0, y0], np.int32)
    box = (y1 - y0, x1 - x0)
    outer = np.zeros(box, np.uint8)
    cv2.fillPoly(outer, [outer_poly - origin], 255)
    inner = np.zeros(box, np.uint8)
    cv2.fillPoly(inner, [inner_poly - origin], 255)
    inner = cv2.dilate(inner, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    pixels = image[y0:y1, x0:x1].astype(np.float32)
    luminance = pixels.mean(axis=2)
    lip_luminance = float(colours.lips.mean())
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    dark = (luminance < 0.6 * lip_luminance) & (outer > 0)
    bright = (
        (luminance > 1.1 * lip_luminance)
        & (saturation < 0.6 * (colours.lips.max() - colours.lips.min()) + 10)
        & (inner > 0)
    )
    mask[y0:y1, x0:x1] = (dark | bright) * 255
    return mask


def _smooth(edge: np.ndarray, width: float) -> np.ndarray:
    """0 → 1 ramp of `width` px centred on 0 (anti-aliased edges)."""
    return np.clip(edge / max(width, 1e-6) + 0.5, 0.0, 1.0)


def paint_interior(
    patch: np.ndarray,
    origin: tuple[int, int],
    image: np.ndarray,
    frame: FaceFrame,
    rig: MouthRig,
    targets: LipTargets,
    colours: MouthColours,
    leftovers: np.ndarray,
    tongue: float = 0.0,
) -> None:
    """Paint the mouth opening of one mouth shape into `patch` (in place).

    `tongue` raises the tongue's tip from the floor of the mouth (0) to the back of the upper teeth (1), as for
    l, n, d, t and th.

    `leftovers` is the photo's opening mask carried through this shape's warp: where it lands
    outside the new opening (teeth specks and dark corners of a smile being closed), the lips are
    filled in from around them.
    """
    h, w = patch.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = frame.to_face(np.stack([xs + origin[0], ys + origin[1]], axis=2))
    left, right = targets.upper_u[0], targets.upper_u[-1]
    inside_u = (u > left) & (u < right)
    top = np.interp(u, targets.upper_u, targets.upper_v)
    bottom = np.interp(u, targets.lower_u, targets.lower_v)
    gap = bottom - top
    depth = v - top  # below the upper lip
    height = bottom - v  # above the lower lip
    # A gap under about a pixel shows no teeth, only the shadow between the lips (`_lip_line`): painting
    # into it would leave specks of teeth along a closed mouth.
    alpha = np.minimum(_smooth(depth, 1.3), _smooth(height, 1.3)) * inside_u * np.clip(gap - 0.4, 0.0, 1.0)
    stray = ((leftovers > 64) & (alpha < 0.5)).astype(np.uint8)
    if colours.reuse_teeth and stray.any():
        # Only a photo that shows its mouth interior leaves teeth and shadow outside a smaller opening; a
        # closed photo's leftovers are its lip line, a natural crease. The new opening is masked too, so the
        # fill comes from the lips and skin around it, not from the photo's teeth inside it.
        unknown = cv2.dilate(stray | (alpha > 0.0), np.ones((3, 3), np.uint8))
        patch[:] = cv2.inpaint(patch, unknown, 2, cv2.INPAINT_TELEA)
    _lip_line(patch, v - (top + bottom) / 2, gap, u, left, right, colours)
    if not alpha.any():
        return
    iod = frame.iod
    k = targets.width_scale
    u_src = u / k
    lateral = np.clip(np.abs(u_src) / rig.half_width, 0.0, 1.0)

    lateral_room = np.minimum(u - left, right - u) * 0.5
    shadow_colour = colours.lips * CAVITY_TINT * 0.4
    # Lit to dark: light from the front reaches just inside the lips (most from below, where the upper lip
    # casts no shadow); the back of the mouth and its corners stay dark.
    inside = np.maximum(np.minimum(np.minimum(1.6 * depth, height), lateral_room), 0.0)
    cavity_shade = (0.1 + 0.4 * np.exp(-inside / max(0.05 * iod, 1.0))) * (1.0 - 0.45 * lateral**2)
    cavity = (colours.lips * CAVITY_TINT)[None, None, :] * cavity_shade[..., None]
    out = np.broadcast_to(cavity, (h, w, 3)).copy()

    open_gap = np.maximum(gap, 0.0)
    centre_top = float(np.interp(0.0, targets.upper_u, targets.upper_v))
    centre_bottom = float(np.interp(0.0, targets.lower_u, targets.lower_v))
    centre_gap = max(centre_bottom - centre_top, 1e-6)
    out = _paint_tongue(out, u, v, rig.half_width * k, centre_bottom, centre_gap, iod, tongue, colours)

    lower_length, lower_shade = _teeth(
        u_src / 0.85, rig.half_width, np.minimum(LOWER_TOOTH_LENGTH * iod, 0.22 * open_gap), LOWER_TEETH
    )
    lower_a = _smooth(lower_length - height, 1.0) * np.clip((open_gap - 0.08 * iod) / (0.06 * iod), 0.0, 1.0)
    lower_a *= lower_length > 0
    # The lower teeth sit behind the lower lip and under the upper teeth: lit less than the upper row.
    lower = _shaded(colours, 0.9 * lower_shade * (0.8 + 0.2 * np.clip(height / max(0.03 * iod, 1.0), 0.0, 1.0)))
    out = out + (lower - out) * lower_a[..., None]

    if colours.reuse_teeth:
        # The photo's teeth thin out towards its mouth corners, where its lip gap closes; an opened mouth's
        # gap does not, so sampling at the same place would frame the teeth with dark cavity on every side.
        # Instead the teeth row is stretched across the opening, and sampled from just inside the photo's
        # lip edge (the edge pixels themselves are half lip, half shadow).
        span = _teeth_span(rig)
        u_teeth = np.clip(u_src / (REUSED_TEETH_SPAN * rig.half_width), -1.0, 1.0) * span
        src_gap = rig.gap_at(u_teeth)
        upper_height = np.maximum(0.8 * src_gap, 0.8 * rig.centre_gap * (1.0 - lateral**4))
        upper_height *= np.abs(u_src) < REUSED_TEETH_SPAN * rig.half_width
        sample_depth = np.clip(depth + 1.0, 1.0, np.maximum(0.7 * src_gap, 1.0))
        src_v = np.interp(u_teeth, rig.upper_u, rig.upper_v) + sample_depth
        pts = frame.to_image(u_teeth, src_v).astype(np.float32)
        upper = cv2.remap(image, pts[..., 0], pts[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        upper = upper.astype(np.float64)
        lip_shadow = 0.88 + 0.12 * np.clip(depth / max(0.03 * iod, 1.0), 0.0, 1.0)
    else:
        upper_height, tooth_shade = _teeth(u_src, rig.half_width, 0.11 * iod, UPPER_TEETH)
        tip = np.clip(depth / np.maximum(upper_height, 1e-6), 0.0, 1.0)
        # Brightest at mid-height, where a tooth's front faces the light; the biting edge is thin enamel.
        vertical = 1.0 - 0.06 * (1.0 - tip) ** 2 - 0.14 * tip**6
        upper = _shaded(colours, tooth_shade * vertical)
        # In a narrow slit the teeth sit in the lips' shadow: a pale line between the lips reads as paint.
        slit = np.clip((open_gap - 0.05 * iod) / (0.1 * iod), 0.0, 1.0)
        lip_shadow = (0.3 + 0.7 * slit) * (0.75 + 0.25 * np.clip(depth / max(0.03 * iod, 1.0), 0.0, 1.0))
    upper = shadow_colour + (upper - shadow_colour) * lip_shadow[..., None]
    upper_a = _smooth(upper_height - depth, 1.2)
    out = out + (upper - out) * upper_a[..., None]
    if tongue > 0:
        # The raised tip shows at the upper teeth's edge (between the teeth on th), even when the jaw has
        # barely dropped and the rest of the tongue is hidden behind the teeth.
        teeth_length = 0.8 * rig.centre_gap if colours.reuse_teeth else 0.11 * iod
        tip_v = centre_top + min(teeth_length, 0.7 * centre_gap)
        out = _paint_tongue_tip(out, u, v, rig.half_width * k, tip_v, teeth_length, iod, tongue, colours)

    # The lips' wet inner edge: the opening shades from lip colour into the cavity instead of meeting it at
    # a hard dark outline.
    rim = np.exp(-np.maximum(np.minimum(height, lateral_room), 0.0) / max(0.025 * iod, 0.7))
    rim *= 1.0 - upper_a
    out = out + (colours.lips * CAVITY_TINT * 0.75 - out) * (0.6 * rim)[..., None]

    base = patch.astype(np.float64)
    blended = base + (out - base) * alpha[..., None]
    patch[:] = np.clip(np.round(blended), 0, 255).astype(np.uint8)


REUSED_TEETH_SPAN = 0.9
"""Reused teeth reach this far towards the corners of the opening (half mouth widths); beyond, the photo's
own dark mouth corners."""


def _teeth_span(rig: MouthRig) -> float:
    """How far from the centre (face px) the photo's lip gap still shows teeth: at least a third of its peak."""
    u = np.linspace(0.0, rig.half_width, 64)
    gap = np.maximum(rig.gap_at(u), rig.gap_at(-u))
    wide = u[gap >= gap.max() / 3.0]
    return float(wide.max()) if len(wide) else rig.half_width


def _lip_line(
    patch: np.ndarray,
    offset: np.ndarray,
    gap: np.ndarray,
    u: np.ndarray,
    left: float,
    right: float,
    colours: MouthColours,
) -> None:
    """The soft dark line where closed lips meet (without it a closed mouth looks painted over)."""
    along = np.clip(1.0 - (2.0 * u - (left + right)) ** 2 / max((right - left) ** 2, 1e-6), 0.0, 1.0) ** 0.35
    strength = 0.45 * along * np.clip(1.0 - gap / 1.5, 0.0, 1.0) * np.exp(-((offset / 0.7) ** 2))
    if not (strength > 0.02).any():
        return
    line = colours.lips * 0.45
    base = patch.astype(np.float64)
    patch[:] = np.clip(np.round(base + (line - base) * strength[..., None]), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class TeethRow:
    """One jaw's row of synthesised teeth, from the mouth centre outwards, in half mouth widths."""

    edges: np.ndarray
    """Where neighbouring teeth meet."""
    length: np.ndarray
    """Each tooth's visible length relative to the row's."""
    shade: np.ndarray
    """Each tooth's brightness: the further back, the darker."""


UPPER_TEETH = TeethRow(
    edges=np.array([0.0, 0.22, 0.4, 0.56, 0.7, 0.82, 0.93]),
    length=np.array([1.0, 0.93, 0.95, 0.8, 0.68, 0.58]),
    shade=np.array([1.0, 0.95, 0.88, 0.78, 0.66, 0.55]),
)
LOWER_TEETH = TeethRow(
    edges=np.array([0.0, 0.15, 0.3, 0.45, 0.59, 0.72, 0.83, 0.93]),
    length=np.array([1.0, 1.0, 0.95, 0.85, 0.72, 0.6, 0.5]),
    shade=np.array([0.95, 0.93, 0.86, 0.76, 0.66, 0.56, 0.48]),
)
LOWER_TOOTH_LENGTH = 0.06
"""Visible length of the lower incisors in a wide-open mouth (face units): less than the upper ones show."""
INTERDENTAL = 0.055
"""Half-width of the shadow where two teeth meet, as a share of the row's central tooth width."""


def _shaded(colours: MouthColours, shade: np.ndarray) -> np.ndarray:
    """Teeth colour darkened towards the mouth's own warm shadow, not towards grey."""
    shadow = colours.lips * CAVITY_TINT * 0.4
    return colours.teeth * shade[..., None] + shadow * (1.0 - shade[..., None])


def _teeth(
    u_src: np.ndarray, half_width: float, length: float | np.ndarray, row: TeethRow
) -> tuple[np.ndarray, np.ndarray]:
    """(visible length, shade) of a row of synthesised teeth at each pixel column.

    Each tooth is a rounded tab: shorter at its own sides (so the biting edge is scalloped), rounded across
    (lit in its middle, darker where it turns away), with a thin shadow where it meets its neighbour, and
    darker the further back it sits. Neighbours are told apart by shape and shading, never by drawn lines.
    """
    a = np.abs(u_src) / half_width
    index = np.clip(np.searchsorted(row.edges, a, side="right") - 1, 0, len(row.length) - 1)
    lo, hi = row.edges[index], row.edges[index + 1]
    across = np.clip((a - lo) / (hi - lo), 0.0, 1.0) * 2.0 - 1.0
    inside = a < row.edges[-1]
    # Even powers by multiplication: numpy's pow of negative numbers is ~100x slower, and this is the mouth
    # bank's inner loop.
    squared = across * across
    visible = length * row.length[index] * (1.0 - 0.06 * squared * squared) * inside
    seam = np.minimum(a - lo, hi - a)
    contact = np.exp(-((seam / (INTERDENTAL * row.edges[1])) ** 2))
    shade = row.shade[index] * (1.0 - 0.2 * squared * squared * squared) * (1.0 - 0.12 * contact)
    return visible, shade


TONGUE_COLOUR = np.array([105.0, 110.0, 190.0])
"""BGR a tongue leans towards from the lips' colour: pinker and lighter than the cavity."""


def _paint_tongue_tip(
    out: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    half_width: float,
    tip_v: float,
    teeth_length: float,
    iod: float,
    tongue: float,
    colours: MouthColours,
) -> np.ndarray:
    """The tongue's tip over the upper teeth's biting edge: a small lit rounded lobe in the middle."""
    across = u / (0.26 * half_width)
    down = (v - tip_v) / max(0.4 * teeth_length, 1.0)
    r = np.sqrt(across * across + down * down)
    alpha = _smooth(1.0 - r, 0.3) * tongue
    if not alpha.any():
        return out
    colour = 0.55 * colours.lips + 0.45 * TONGUE_COLOUR
    shade = 0.95 - 0.25 * np.clip(r, 0.0, 1.0) - 0.1 * np.clip(down, 0.0, 1.0)
    return out + (colour[None, None, :] * shade[..., None] - out) * alpha[..., None]


def _paint_tongue(
    out: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    half_width: float,
    centre_bottom: float,
    centre_gap: float,
    iod: float,
    tongue: float,
    colours: MouthColours,
) -> np.ndarray:
    """The tongue over the cavity: a broad mound on the floor of the mouth at rest; raised (l, n, d, t, th) a
    narrower tip that reaches up to the upper teeth, lit on top and shaded towards its sides and root."""
    radius = (0.62 - 0.2 * tongue) * half_width
    rise = (0.5 + 0.42 * tongue) * centre_gap
    across = np.clip(u / radius, -1.0, 1.0)
    top = centre_bottom - rise * np.sqrt(np.clip(1.0 - across * across, 0.0, 1.0))
    below = v - top
    shows = np.clip((centre_gap - (0.08 - 0.04 * tongue) * iod) / (0.05 * iod), 0.0, 1.0)
    alpha = _smooth(below, 1.2) * (np.abs(u) < radius) * shows
    if not alpha.any():
        return out
    colour = 0.55 * colours.lips + 0.45 * TONGUE_COLOUR
    lit = np.exp(-np.maximum(below, 0.0) / max(0.04 * iod, 1.0))
    groove = 1.0 - 0.12 * np.exp(-((u / max(0.08 * radius, 0.5)) ** 2)) * (1.0 - tongue)
    shade = (0.6 + 0.35 * lit) * (1.0 - 0.35 * across * across) * groove
    return out + (colour[None, None, :] * shade[..., None] - out) * alpha[..., None]
