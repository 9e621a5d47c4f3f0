"""What the head follows in speech, frame by frame: loudness, the pitch contour, phrase starts and ends, stresses.

People nod on stressed syllables, lift the head with a rising pitch, turn a little at the start of a phrase and
settle at its end. All of it is read causally from each frame's own audio window (plus the half frame of
look-ahead the renderer already has), so the head can never drift out of step with the voice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

F0_MIN, F0_MAX = 70.0, 400.0
"""Voice pitch search range (Hz)."""
VOICING = 0.45
"""Normalised autocorrelation peak above which a window counts as voiced (has a pitch)."""
PAUSE_SECONDS = 0.25
"""Silence at least this long ends a phrase; speech after it starts a new one."""
STRESS_RISE = 0.18
"""A stress is loudness rising this far (0..1 energy) above its own slow average within a short time."""
STRESS_GAP_SECONDS = 0.3
"""Stresses are syllables: at most one this close to the previous."""


@dataclass(frozen=True)
class Prosody:
    energy: float
    """0..1 loudness (the mouth driver's)."""
    pitch: float
    """Voice pitch in semitones above (+) or below (-) the speaker's running median; 0 unvoiced."""
    voiced: bool
    phrase_start: bool
    """True on the first speaking frame after a pause."""
    phrase_end: bool
    """True on the first frame of a pause that ends a phrase."""
    stress: float
    """0 on most frames; on a stressed syllable's onset frame its strength 0..1."""


DECIMATE = 3
"""Pitch is searched at a third of the rate (8 kHz for 24 kHz audio): a voice's fundamental is far below."""


@functools.cache
def _taper(n: int) -> np.ndarray:
    return np.hanning(n)


def pitch_hz(window: np.ndarray, sample_rate: int) -> float | None:
    """The fundamental of a window (float samples), or None when it is unvoiced or silent."""
    usable = len(window) - len(window) % DECIMATE
    x = np.asarray(window[:usable], np.float64).reshape(-1, DECIMATE).mean(axis=1)
    sample_rate /= DECIMATE
    x = x - x.mean()
    energy = float(x @ x)
    if energy < 1e-6:
        return None
    n = 1 << int(np.ceil(np.log2(2 * len(x))))
    spectrum = np.fft.rfft(x * _taper(len(x)), n)
    ac = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, n)[: len(x)]
    lo, hi = int(sample_rate / F0_MAX), min(int(sample_rate / F0_MIN), len(x) - 2)
    if hi <= lo + 2 or ac[0] <= 0:
        return None
    lag = lo + int(np.argmax(ac[lo:hi]))
    if ac[lag] / ac[0] < VOICING:
        return None
    # Parabolic interpolation of the peak: a whole-sample lag is 1.5% of the pitch at 250 Hz.
    a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
    offset = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c < 0 else 0.0
    return sample_rate / (lag + offset)


class ProsodyTracker:
    """Prosody of successive frames; `step` once per rendered frame."""

    def __init__(self, fps: int, sample_rate: int) -> None:
        self.fps = fps
        self.sample_rate = sample_rate
        self._pitches: list[float] = []
        self._silent_frames = 10**6
        self._in_phrase = False
        self._slow = 0.0
        self._since_stress = 10**6

    def reset(self) -> None:
        """An interrupt: the phrase ends now; the speaker's pitch range is kept."""
        self._silent_frames = 10**6
        self._in_phrase = False
        self._slow = 0.0

    def step(self, window: np.ndarray, energy: float, speaking: bool) -> Prosody:
        voiced_now = speaking and energy > 0.05
        hz = pitch_hz(window, self.sample_rate) if voiced_now else None
        pitch = 0.0
        if hz is not None:
            semitones = 12.0 * np.log2(hz)
            self._pitches = [*self._pitches[-199:], semitones]
            pitch = float(np.clip(semitones - np.median(self._pitches), -12.0, 12.0))
        start = end = False
        if voiced_now:
            start = not self._in_phrase and self._silent_frames >= PAUSE_SECONDS * self.fps
            self._in_phrase = True
            self._silent_frames = 0
        else:
            self._silent_frames += 1
            if self._in_phrase and self._silent_frames >= PAUSE_SECONDS * self.fps:
                self._in_phrase, end = False, True
        stress = 0.0
        rise = energy - self._slow
        self._slow += (energy - self._slow) * (1.0 - np.exp(-1.0 / (0.3 * self.fps)))
        self._since_stress += 1
        if voiced_now and rise > STRESS_RISE and self._since_stress >= STRESS_GAP_SECONDS * self.fps:
            stress = float(np.clip(rise / (2 * STRESS_RISE), 0.0, 1.0))
            self._since_stress = 0
        return Prosody(float(energy), pitch, hz is not None, start, end, stress)
