"""The CPU real-time renderer's contract and its lip-sync, on the real sample portrait and real speech."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from avatar.lipsync import VISEME_LEAD_SECONDS
from avatar.prepare import PreparedAvatar, prepare_avatar
from avatar.realtime import RealtimeRenderer
from core.audio import read_audio_file
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, Viseme, VisemeEvent

ROOT = Path(__file__).resolve().parent.parent
SPEECH = sorted((ROOT / "tests" / "data" / "audio" / "en").glob("*.wav"))
SPF = CANONICAL_SAMPLE_RATE // 25


@pytest.fixture(scope="module")
def avatar(astronaut: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedAvatar:
    prepared, _ = prepare_avatar(astronaut, tmp_path_factory.mktemp("cache"))
    return prepared


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return read_audio_file(ROOT / "tests" / "data" / "audio" / "en" / "quick_brown_fox.wav", CANONICAL_SAMPLE_RATE)


def _outside_roi(image: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = roi
    masked = image.copy()
    masked[y0:y1, x0:x1] = 0
    return masked


def test_every_frame_carries_exactly_its_own_audio(avatar: PreparedAvatar) -> None:
    r = RealtimeRenderer(avatar, seed=0)
    assert r.frame_size == (512, 512)
    pcm = (np.arange(SPF + SPF // 3) % 200 - 100).astype(np.int16) * 50
    r.feed(pcm)
    assert r.queued_samples == len(pcm)
    first, second, idle = r.render_next(), r.render_next(), r.render_next()
    np.testing.assert_array_equal(first.audio, pcm[:SPF])
    assert len(second.audio) == SPF
    np.testing.assert_array_equal(second.audio[: SPF // 3], pcm[SPF:])
    assert not second.audio[SPF // 3 :].any(), "the last partial frame is zero-padded"
    assert first.speaking and second.speaking and not idle.speaking
    assert not idle.audio.any() and len(idle.audio) == SPF
    assert [f.index for f in (first, second, idle)] == [0, 1, 2]
    assert first.image.shape == (512, 512, 3) and first.image.dtype == np.uint8
    assert r.queued_samples == 0


@pytest.mark.parametrize("fps", [20, 30, 40])
def test_other_frame_rates(avatar: PreparedAvatar, fps: int) -> None:
    r = RealtimeRenderer(avatar, fps=fps, seed=0)
    r.feed(np.ones(CANONICAL_SAMPLE_RATE, np.int16))
    frames = [r.render_next() for _ in range(fps)]
    assert all(len(f.audio) == CANONICAL_SAMPLE_RATE // fps for f in frames)
    assert r.queued_samples == 0


def test_idle_without_audio_is_closed_and_static(avatar: PreparedAvatar) -> None:
    r = RealtimeRenderer(avatar, liveliness=0.0, seed=0)
    frames = [r.render_next() for _ in range(10)]
    r.feed(np.zeros(SPF * 10, np.int16))  # fed digital silence behaves the same
    frames += [r.render_next() for _ in range(10)]
    assert all(f.mouth_open == 0.0 for f in frames)
    for f in frames[1:]:
        np.testing.assert_array_equal(f.image, frames[0].image)


def test_pixels_outside_the_head_region_never_change(avatar: PreparedAvatar, speech: np.ndarray) -> None:
    r = RealtimeRenderer(avatar, liveliness=1.0, seed=3)
    r.feed(speech)
    reference = _outside_roi(avatar.image, avatar.roi)
    moved = 0
    while r.queued_samples:
        frame = r.render_next()
        np.testing.assert_array_equal(_outside_roi(frame.image, avatar.roi), reference)
        moved += int(not np.array_equal(frame.image, avatar.image))
    assert moved > 0


def test_alive_when_idle_blinks_and_moves(avatar: PreparedAvatar) -> None:
    r = RealtimeRenderer(avatar, liveliness=1.0, seed=5)
    frames = [r.render_next() for _ in range(25 * 12)]
    blinks = np.array([f.extras["blink"] for f in frames])
    starts = np.flatnonzero((blinks[1:] > 0.5) & (blinks[:-1] <= 0.5))
    assert 2 <= len(starts) <= 8, f"{len(starts)} blinks in 12 s"
    assert blinks.max() == 1.0
    assert all(f.mouth_open == 0.0 for f in frames)
    diffs = [np.abs(a.image.astype(int) - b.image.astype(int)).max() for a, b in itertools.pairwise(frames)]
    assert max(diffs) > 0, "idle frames must not be a frozen picture"


def test_reset_drops_queued_audio_and_visemes(avatar: PreparedAvatar, speech: np.ndarray) -> None:
    r = RealtimeRenderer(avatar, liveliness=0.0, seed=0)
    r.feed(speech, [VisemeEvent(Viseme.AA, 0.0, len(speech) / CANONICAL_SAMPLE_RATE)])
    talking = [r.render_next() for _ in range(12)]
    assert max(f.mouth_open for f in talking) > 0.3
    r.reset()
    assert r.queued_samples == 0
    after = [r.render_next() for _ in range(4)]
    assert not any(f.speaking for f in after)
    assert not any(f.audio.any() for f in after)
    assert after[-1].mouth_open == 0.0 and after[-2].mouth_open == 0.0
    assert after[0].mouth_open <= talking[-1].mouth_open, "closing after an interrupt eases, it never opens"


def test_feed_rejects_wrong_audio(avatar: PreparedAvatar) -> None:
    r = RealtimeRenderer(avatar)
    with pytest.raises(UserError, match="int16"):
        r.feed(np.zeros(100, np.float32))
    with pytest.raises(UserError, match="mono"):
        r.feed(np.zeros((100, 2), np.int16))
    r.feed(np.zeros(0, np.int16))
    assert r.queued_samples == 0
    with pytest.raises(UserError, match="fps"):
        RealtimeRenderer(avatar, fps=7)


def _render(avatar: PreparedAvatar, pcm: np.ndarray, visemes: list[VisemeEvent] | None = None) -> list:
    r = RealtimeRenderer(avatar, liveliness=0.0, seed=0)
    r.feed(pcm, visemes or [])
    frames = []
    while r.queued_samples:
        frames.append(r.render_next())
    return frames


@pytest.mark.parametrize("wav", SPEECH, ids=[p.stem for p in SPEECH])
def test_mouth_follows_speech_energy_at_lag_zero(avatar: PreparedAvatar, wav: Path) -> None:
    pcm = read_audio_file(wav, CANONICAL_SAMPLE_RATE)
    pcm = np.concatenate([np.zeros(SPF * 8, np.int16), pcm, np.zeros(SPF * 8, np.int16)])
    frames = _render(avatar, pcm)
    opening = np.array([f.mouth_open for f in frames])
    audio = np.stack([f.audio.astype(np.float64) for f in frames])
    db = 10 * np.log10(np.mean(audio**2, axis=1) + 1.0)
    loud = db > db.max() - 40
    energy = np.where(loud, db, db.max() - 40)

    def corr(lag: int) -> float:
        a, b = (energy[: len(energy) - lag], opening[lag:]) if lag >= 0 else (energy[-lag:], opening[:lag])
        return float(np.corrcoef(a, b)[0, 1])

    r0 = corr(0)
    assert r0 > 0.6, f"mouth vs energy correlation {r0:.2f}"
    assert r0 >= max(corr(-2), corr(2), corr(-3), corr(3)), "the mouth leads or lags the sound"
    silent = db < db.max() - 60
    assert silent[:8].all() and (opening[:8] == 0).all(), "silence before speech: mouth exactly closed"
    assert (opening[-4:] == 0).all(), "silence after speech: mouth exactly closed"


def test_visemes_shape_the_mouth(avatar: PreparedAvatar, speech: np.ndarray) -> None:
    """Same audio, two viseme timelines: a wide vowel opens, a bilabial holds the lips shut."""
    seconds = 1.2
    pcm = speech[int(0.2 * CANONICAL_SAMPLE_RATE) : int((0.2 + seconds) * CANONICAL_SAMPLE_RATE)]
    span = seconds + VISEME_LEAD_SECONDS  # the renderer looks this far ahead in the viseme timeline
    vowel = _render(avatar, pcm, [VisemeEvent(Viseme.AA, 0.0, span)])
    lips = _render(avatar, pcm, [VisemeEvent(Viseme.PP, 0.0, span)])
    voiced = [i for i, f in enumerate(vowel) if f.extras["energy"] > 0.3]
    assert len(voiced) > 5
    assert np.mean([vowel[i].mouth_open for i in voiced]) > 0.4
    assert all(lips[i].mouth_open == 0.0 for i in voiced)
    rounded = _render(avatar, pcm, [VisemeEvent(Viseme.OU, 0.0, span)])
    spread = _render(avatar, pcm, [VisemeEvent(Viseme.E, 0.0, span)])
    assert all(rounded[i].extras["shape"] < -0.5 < 0.5 < spread[i].extras["shape"] for i in voiced)


def test_long_speech_keeps_memory_bounded(avatar: PreparedAvatar) -> None:
    r = RealtimeRenderer(avatar, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(100):  # 100 chunks of 0.4 s streamed while rendering: 40 s of audio
        r.feed((rng.standard_normal(SPF * 10) * 3000).astype(np.int16), [VisemeEvent(Viseme.AA, 0.0, 0.4)])
        for _ in range(10):
            r.render_next()
        assert r.queued_samples == 0
        assert len(r._visemes) <= 3
