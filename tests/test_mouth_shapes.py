"""Mouth shapes read off the drawn pixels by the face-mesh detector: width with rounding, spreading and
pressing, and the smile axis (neutral from a smiling photo, a smile from a neutral one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar import landmarks as lm
from avatar.lipsync import MouthDriver, MouthState
from avatar.mouth_bank import mouth_patch, smile_amount
from avatar.prepare import PreparedAvatar
from core.audio import read_audio_file
from core.events import CANONICAL_SAMPLE_RATE


@pytest.fixture
def neutral(neutral_portrait: PreparedAvatar) -> PreparedAvatar:
    return neutral_portrait


@pytest.fixture
def smiling(smiling_portrait: PreparedAvatar) -> PreparedAvatar:
    return smiling_portrait


def drawn(avatar: PreparedAvatar, state: MouthState, smile: float = 0.0) -> np.ndarray:
    image = avatar.image.copy()
    x0, y0, x1, y1 = avatar.mouth_rect
    image[y0:y1, x0:x1] = mouth_patch(avatar, state, smile)
    return image


def measured(image: np.ndarray) -> tuple[float, float, float]:
    """(mouth width, corner lift above the lip centre, lips' outer height), in eye distances, as the detector
    sees them."""
    faces = lm.detect_faces(image)
    assert faces, "the detector lost the face"
    xy = faces[0].xy.astype(np.float64)
    right, left = xy[lm.RIGHT_EYE].mean(axis=0), xy[lm.LEFT_EYE].mean(axis=0)
    iod = float(np.linalg.norm(left - right))
    down = np.array([-(left - right)[1], (left - right)[0]]) / iod
    corners = xy[lm.MOUTH_CORNERS]
    lift = float((xy[[13, 14]].mean(axis=0) - corners.mean(axis=0)) @ down) / iod
    height = float((xy[17] - xy[0]) @ down) / iod
    return float(np.linalg.norm(corners[1] - corners[0])) / iod, lift, height


def state(opening: float, shape: float = 0.0, tongue: float = 0.0, relax: float = 0.0) -> MouthState:
    return MouthState(opening, shape, 0.5, True, tongue=tongue, relax=relax)


@pytest.mark.parametrize("who", ["neutral", "smiling"])
def test_rounded_vowels_narrow_spread_ones_widen_closures_press(who: str, request: pytest.FixtureRequest) -> None:
    """Widths are compared at the same opening: a smile's open mouth reads wider than its closed one."""
    avatar = request.getfixturevalue(who)
    middle, _, _ = measured(drawn(avatar, state(0.45)))
    rounded, _, _ = measured(drawn(avatar, state(0.45, -1.0)))
    spread, _, _ = measured(drawn(avatar, state(0.45, 1.0)))
    assert rounded < 0.85 * middle, (rounded, middle)
    assert spread > 1.04 * middle, (spread, middle)
    closed_width, _, closed_lips = measured(drawn(avatar, state(0.0)))
    pressed_width, _, pressed_lips = measured(drawn(avatar, state(-0.25)))
    assert pressed_lips < closed_lips - 0.01, (pressed_lips, closed_lips)  # the lips roll in
    assert pressed_width > 0.98 * closed_width, (pressed_width, closed_width)


def test_a_smiling_photo_can_be_made_neutral(smiling: PreparedAvatar) -> None:
    assert smiling.photo_smile > 0.6
    width_own, own, _ = measured(drawn(smiling, state(0.0)))
    width_neutral, neutral, _ = measured(drawn(smiling, state(0.0), smile=-1.0))
    assert neutral < own - 0.05, (neutral, own)
    assert width_neutral < width_own  # the corners come in as they come down


def test_a_neutral_photo_can_smile(neutral: PreparedAvatar) -> None:
    assert neutral.photo_smile < 0.2
    _, own, _ = measured(drawn(neutral, state(0.0)))
    _, smile, _ = measured(drawn(neutral, state(0.0), smile=1.0))
    assert smile > own + 0.05, (smile, own)


def test_the_photos_own_expression_is_its_own_bank(smiling: PreparedAvatar) -> None:
    """Weight 0 draws exactly the photo's own smile layer: the expression track costs nothing until it is used."""
    x0, y0, x1, y1 = smiling.mouth_rect
    np.testing.assert_array_equal(drawn(smiling, state(0.0), 0.0)[y0:y1, x0:x1], smiling.mouth_bank[1, 2])


def test_expression_weights_give_smile_amounts() -> None:
    assert smile_amount(0.8, -1.0, 0.0) == pytest.approx(0.0)
    assert smile_amount(0.8, 0.0, 0.0) == pytest.approx(0.8)
    assert smile_amount(0.8, 1.0, 0.0) == pytest.approx(1.0)
    assert smile_amount(0.0, 0.0, 1.0) == pytest.approx(0.0)  # a neutral photo has no smile to relax
    assert smile_amount(1.0, 0.0, 1.0) == pytest.approx(0.5)  # a talking smile is half a smile
    assert smile_amount(0.0, 1.0, 1.0) == pytest.approx(0.5)


def test_a_talking_smile_rests_on_a_bank_layer(smiling: PreparedAvatar, neutral: PreparedAvatar) -> None:
    """A smile that has relaxed while talking is drawn from one layer, not a blend of two far-apart smiles
    (which would double the mouth corners)."""
    for avatar, cue in ((smiling, 0.0), (neutral, 1.0)):
        amount = smile_amount(avatar.photo_smile, cue, 1.0)
        assert np.abs(avatar.smile_levels - amount).min() < 1e-6, (amount, avatar.smile_levels)


def test_a_smiling_photo_relaxes_while_talking(smiling: PreparedAvatar) -> None:
    _, resting, _ = measured(drawn(smiling, state(0.0, relax=0.0)))
    _, talking, _ = measured(drawn(smiling, state(0.0, relax=1.0)))
    assert talking < resting - 0.02, (talking, resting)


def test_the_driver_relaxes_over_a_second_of_talking_and_recovers_in_silence() -> None:
    rate, spf = 24000, 960
    driver = MouthDriver(rate, spf)
    t = np.arange(2 * spf) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    silence = np.zeros(2 * spf, np.float32)
    relax = [driver.step(tone, [], 0.0).relax for _ in range(25)]
    assert relax == sorted(relax) and 0.6 < relax[-1] < 1.0
    after = [driver.step(silence, [], 0.0).relax for _ in range(25)]
    assert after == sorted(after, reverse=True) and after[-1] < 0.6 * relax[-1]


def test_recorded_speech_gives_both_rounded_and_spread_mouths() -> None:
    """Without visemes the driver judges each vowel against the voice's own average: on real recordings the
    frames with the highest second-formant energy come out spread and those with the lowest rounded."""
    rate, spf = CANONICAL_SAMPLE_RATE, CANONICAL_SAMPLE_RATE // 25
    clips = sorted((Path(__file__).parent / "data" / "audio" / "en").glob("*.wav"))
    pcm = np.concatenate([read_audio_file(p, rate) for p in clips]).astype(np.float32) / 32768.0
    driver = MouthDriver(rate, spf)
    shapes, colours = [], []
    freqs = np.fft.rfftfreq(2 * spf, 1.0 / rate)
    for start in range(spf // 2, len(pcm) - 2 * spf, spf):
        window = pcm[start : start + 2 * spf]
        state = driver.step(window, [], 0.0)
        if not state.voiced or state.energy < 0.5:
            continue
        power = np.abs(np.fft.rfft(window * np.hanning(len(window)))) ** 2
        low = power[(freqs >= 200) & (freqs < 1000)].sum()
        mid = power[(freqs >= 1000) & (freqs < 3000)].sum()
        shapes.append(state.shape)
        colours.append(np.log10(mid / low))
    shapes_a, colours_a = np.array(shapes), np.array(colours)
    low_q, high_q = np.percentile(colours_a, [25, 75])
    assert np.median(shapes_a[colours_a >= high_q]) > 0.2
    assert np.median(shapes_a[colours_a <= low_q]) < -0.3
