"""Teeth, tongue and cavity as drawn: sampled from the rendered mouth along lines through the opening the
rig asked for (the rig locates the opening; the pixels are what is judged)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatar import mouth_build
from avatar.face_rig import MouthRig, face_frame
from avatar.lipsync import MouthDriver, MouthState
from avatar.mouth_bank import mouth_patch
from avatar.prepare import PreparedAvatar
from core.events import Viseme


@pytest.fixture
def closed_photo(neutral_portrait: PreparedAvatar) -> PreparedAvatar:
    return neutral_portrait


@pytest.fixture
def toothy_photo(smiling_portrait: PreparedAvatar) -> PreparedAvatar:
    return smiling_portrait


def drawn(avatar: PreparedAvatar, opening: float, tongue: float = 0.0) -> np.ndarray:
    image = avatar.image.copy()
    x0, y0, x1, y1 = avatar.mouth_rect
    image[y0:y1, x0:x1] = mouth_patch(avatar, MouthState(opening, 0.0, 0.5, True, tongue=tongue))
    return image


def sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Luminance and BGR at sub-pixel image points."""
    pts = points.astype(np.float32)
    return cv2.remap(image, pts[None, :, 0], pts[None, :, 1], cv2.INTER_LINEAR)[0].astype(np.float64)


def down_the_opening(avatar: PreparedAvatar, opening: float, across: float, tongue: float = 0.0):
    """(v of each sample in face px, BGR samples) from the upper lip to the lower one at `across` half widths."""
    xy = avatar.points[:, :2].astype(np.float64)
    frame = face_frame(xy)
    rig = MouthRig(xy, frame)
    _, _, targets = rig.controls(opening, 0.0)
    u = across * rig.half_width * targets.width_scale
    v = np.linspace(np.interp(u, targets.upper_u, targets.upper_v), np.interp(u, targets.lower_u, targets.lower_v), 96)
    return v, sample(drawn(avatar, opening, tongue), frame.to_image(np.full_like(v, u), v))


def teeth_edges(v: np.ndarray, bgr: np.ndarray) -> tuple[float, float]:
    """(where the upper teeth end, where the lower teeth begin) going down the opening, in face px."""
    lum = bgr.mean(axis=1)
    upper = lum[: len(lum) // 4].max()
    end_upper = v[int(np.argmax(lum < 0.5 * upper))]
    bottom = lum[-len(lum) // 4 :]
    lower_peak = len(lum) - len(bottom) + int(np.argmax(bottom))
    below = np.flatnonzero(lum[:lower_peak] < 0.7 * lum[lower_peak])
    return float(end_upper), float(v[below[-1] + 1])


def test_synthesised_teeth_stay_with_their_jaws(closed_photo: PreparedAvatar) -> None:
    """Opening wider drops the jaw: the lower teeth go down with it, the upper ones stay under the upper lip."""
    upper_a, lower_a = teeth_edges(*down_the_opening(closed_photo, 0.75, 0.11))
    upper_b, lower_b = teeth_edges(*down_the_opening(closed_photo, 1.0, 0.11))
    assert abs(upper_b - upper_a) < 1.5, (upper_a, upper_b)
    assert lower_b - lower_a > 2.5, (lower_a, lower_b)
    assert lower_b > upper_b + 3  # two rows with the mouth between them


def test_the_cavity_is_dark_between_lit_teeth(closed_photo: PreparedAvatar) -> None:
    _, bgr = down_the_opening(closed_photo, 1.0, 0.11)
    lum = bgr.mean(axis=1)
    assert lum.min() < 0.25 * lum[: len(lum) // 4].max()


def test_synthesised_teeth_are_told_apart(closed_photo: PreparedAvatar) -> None:
    """Across the upper row the brightness dips where neighbouring teeth meet: separate teeth, not a band."""
    xy = closed_photo.points[:, :2].astype(np.float64)
    frame = face_frame(xy)
    rig = MouthRig(xy, frame)
    _, _, targets = rig.controls(1.0, 0.0)
    u = np.linspace(-0.75, 0.75, 300) * rig.half_width * targets.width_scale
    v = np.interp(u, targets.upper_u, targets.upper_v) + 0.04 * frame.iod
    lum = sample(drawn(closed_photo, 1.0), frame.to_image(u, v)).mean(axis=1)
    inner = lum[1:-1]
    dips = np.flatnonzero((inner < lum[:-2]) & (inner <= lum[2:]) & (inner < np.maximum.accumulate(lum)[1:-1] - 2))
    assert len(dips) >= 6, len(dips)


@pytest.mark.parametrize("opening", [0.35, 0.8])
def test_the_tongue_shows_on_tongue_sounds(closed_photo: PreparedAvatar, opening: float) -> None:
    """Its tip at the teeth's edge even when the jaw has barely dropped; more of it in a wider mouth."""
    _, plain = down_the_opening(closed_photo, opening, 0.0)
    _, raised = down_the_opening(closed_photo, opening, 0.0, tongue=1.0)
    changed = np.abs(raised - plain).max(axis=1) > 12
    assert changed.sum() >= 5
    tongue = raised[changed]
    assert (tongue[:, 2] > tongue[:, 0] + 15).all()  # pink, not grey
    covered = plain[changed]
    assert (tongue[:, 2] - tongue[:, 0]).mean() > (covered[:, 2] - covered[:, 0]).mean()  # pinker than what it covers


def test_the_driver_raises_the_tongue_for_l_n_d_t_th() -> None:
    driver = MouthDriver(24000, 960)
    t = np.arange(1920) / 24000
    voice = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for viseme, raised in ((Viseme.NN, True), (Viseme.TH, True), (Viseme.DD, True), (Viseme.AA, False)):
        driver.reset()
        state = driver.step(voice, [(viseme, 0.0, 0.4)], 0.2)
        assert (state.tongue > 0.5) is raised, (viseme, state.tongue)


def test_reused_photo_teeth_keep_their_texture(toothy_photo: PreparedAvatar) -> None:
    """The photo's own teeth, moved into a wider opening, keep the fine detail they had (no smearing)."""
    assert toothy_photo.teeth.startswith("reused")
    xy = toothy_photo.points[:, :2].astype(np.float64)
    frame = face_frame(xy)
    rig = MouthRig(xy, frame)

    def detail(image: np.ndarray, opening: float) -> float:
        _, _, targets = rig.controls(opening, 0.0)
        u = np.linspace(-0.5, 0.5, 200) * rig.half_width * targets.width_scale
        top = np.interp(u, targets.upper_u, targets.upper_v)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        rows = [sample(grey[..., None].repeat(3, axis=2), frame.to_image(u, top + d))[:, 0] for d in (2.0, 3.0, 4.0)]
        return float(np.mean([np.abs(np.diff(r)).mean() for r in rows]))

    photo_opening = float(np.clip(rig.centre_gap / (0.34 * frame.iod), 0.0, 1.0))
    photo = detail(toothy_photo.image, photo_opening)
    assert detail(drawn(toothy_photo, 0.8), 0.8) > 0.6 * photo


def test_painting_only_the_changed_box_gives_the_same_banks(
    closed_photo: PreparedAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed-up that paints each mouth interior in a box must not change a single pixel of any bank."""
    xy = closed_photo.points[:, :2].astype(np.float64)
    frame = face_frame(xy)
    image = closed_photo.image
    boxed = mouth_build.build_mouth_banks(image, xy, frame, closed_photo.mouth_rect, lambda done: None)
    monkeypatch.setattr(
        mouth_build, "_paint_box", lambda frame, targets, leftovers, rect: (0, 0, *leftovers.shape[::-1])
    )
    whole = mouth_build.build_mouth_banks(image, xy, frame, closed_photo.mouth_rect, lambda done: None)
    np.testing.assert_array_equal(boxed.mouth_bank, whole.mouth_bank)
    np.testing.assert_array_equal(boxed.smile_bank, whole.smile_bank)
    np.testing.assert_array_equal(boxed.tongue_bank, whole.tongue_bank)
