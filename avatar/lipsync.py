"""Mouth controls for one video frame from its own audio slice and, when the TTS gave them, visemes.

Lag is zero by construction: a frame's opening comes from a window centred on that frame's audio
(half a frame either side, the look-ahead taken from audio already queued). Silence is gated with
hysteresis, so a quiet stretch gives exactly the closed mouth and no twitching.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import erf

from core.events import Viseme

GATE_ON_DB = -44.0
GATE_OFF_DB = -50.0
FLOOR_DB = -50.0
COARTICULATION_SECONDS = 0.035
"""Each viseme's influence spreads over a Gaussian this wide: shapes blend instead of snapping."""
VISEME_LEAD_SECONDS = 0.04
"""Visemes are looked up this far ahead of the frame's centre. The engines stamp phonemes late
(espeak's events ~30 ms after the sound starts; piper's alignment ~one phoneme coarse), and lips
shape a sound slightly before it is heard. Measured on piper speech with the landmark detector on the
output: lag +1 → 0 frames, correlation within speech 0.35-0.63 → 0.53-0.69."""
CLOSURE_SECONDS = 0.015
"""A p/b/m's much narrower spread: its dominance must shut the lips during the closure without holding
back the vowel that follows (the 'a' of "my" must still open fully)."""
TONGUE_VISEMES = frozenset({Viseme.TH, Viseme.DD, Viseme.NN})
"""l, n, d, t and th: the tongue's tip rises to the teeth, and shows between parted lips."""
COLOUR_SECONDS = 4.0
"""How long the driver averages a voice's vowel colour over: rounded and spread are judged against that voice's
own average, since what is a low F2 for one voice is a middling one for another."""
COLOUR_MEAN = -0.45
COLOUR_SPREAD = 0.3
"""Starting guesses for log10(mid/low band energy) of voiced frames, mean and standard deviation (measured on
the test recordings and piper's voice: means -0.6 … -0.3, deviations 0.25 … 0.35)."""
RELAX_ATTACK_SECONDS = 0.8
RELAX_RELEASE_SECONDS = 1.5
"""A smile relaxes over about a second of talking and comes back over a little longer once the talking stops."""

# (opening -0.25 pressed … 1 wide, shape -1 rounded … +1 spread, dominance)
VISEME_TARGETS: dict[Viseme, tuple[float, float, float]] = {
    Viseme.SIL: (0.0, 0.0, 0.6),
    Viseme.PP: (-0.25, 0.0, 4.0),
    Viseme.FF: (0.08, 0.3, 2.0),
    Viseme.TH: (0.25, 0.2, 1.0),
    Viseme.DD: (0.35, 0.2, 0.8),
    Viseme.KK: (0.45, 0.1, 0.7),
    Viseme.CH: (0.3, -0.5, 1.2),
    Viseme.SS: (0.15, 0.6, 1.2),
    Viseme.NN: (0.25, 0.1, 0.8),
    Viseme.RR: (0.3, -0.5, 1.0),
    Viseme.AA: (1.0, 0.0, 1.0),
    Viseme.E: (0.6, 0.85, 1.0),
    Viseme.IH: (0.4, 1.0, 1.0),
    Viseme.OH: (0.75, -0.8, 1.2),
    Viseme.OU: (0.35, -1.0, 1.5),
}


@dataclass(frozen=True)
class MouthState:
    opening: float
    """-0.25 (pressed) … 0 (closed) … 1 (wide open)."""
    shape: float
    energy: float
    """0..1 loudness of the frame, for head motion."""
    voiced: bool
    tongue: float = 0.0
    """0 (on the floor of the mouth) … 1 (tip raised to the teeth: l, n, d, t, th)."""
    relax: float = 0.0
    """0 … 1: how long the avatar has been talking, smoothed; a smiling photo's smile relaxes with it."""


EASE_OUT = 0.4
"""When speech stops (or is interrupted) an open mouth closes over one in-between frame instead of snapping shut."""


class MouthDriver:
    def __init__(self, sample_rate: int, samples_per_frame: int) -> None:
        self.sample_rate = sample_rate
        self.spf = samples_per_frame
        self._gate = False
        self._last = MouthState(0.0, 0.0, 0.0, False)
        self._easing = False
        self._relax = 0.0
        self._colour_mean = COLOUR_MEAN
        self._colour_var = COLOUR_SPREAD**2
        frame_seconds = samples_per_frame / sample_rate
        self._colour_rate = 1.0 - float(np.exp(-frame_seconds / COLOUR_SECONDS))
        self._attack = 1.0 - float(np.exp(-frame_seconds / RELAX_ATTACK_SECONDS))
        self._release = 1.0 - float(np.exp(-frame_seconds / RELAX_RELEASE_SECONDS))
        n = 2 * samples_per_frame
        self._window = np.hanning(n).astype(np.float32)
        self._freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        self._low = (self._freqs >= 150) & (self._freqs < 900)
        self._mid = (self._freqs >= 900) & (self._freqs < 2600)
        self._high = (self._freqs >= 3000) & (self._freqs < 8000)

    def reset(self) -> None:
        self._gate = False

    def step(self, window: np.ndarray, visemes: list[tuple[Viseme, float, float]], centre: float) -> MouthState:
        """`window`: float audio of two frames centred on this frame; `visemes`: (class, start, end) in seconds
        on the same timeline as `centre` (the frame's centre time)."""
        state = self._measure(window, visemes, centre)
        rate = self._attack if state.voiced else self._release
        self._relax += (float(state.voiced) - self._relax) * rate
        state = replace(state, relax=self._relax)
        last = self._last
        easing = state.opening == 0.0 and last.opening > 0.15 and not self._easing
        if easing:
            state = replace(
                state, opening=last.opening * EASE_OUT, shape=last.shape * EASE_OUT, tongue=last.tongue * EASE_OUT
            )
        self._last, self._easing = state, easing
        return state

    def _measure(self, window: np.ndarray, visemes: list[tuple[Viseme, float, float]], centre: float) -> MouthState:
        x = window * self._window
        rms = float(np.sqrt(np.mean(x * x) * 1.6 + 1e-12))
        db = 20.0 * np.log10(rms + 1e-9)
        self._gate = db > (GATE_OFF_DB if self._gate else GATE_ON_DB)
        if not self._gate:
            return MouthState(0.0, 0.0, 0.0, False)
        level = float(np.clip((db - FLOOR_DB) / 34.0, 0.0, 1.0))
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        low = float(spectrum[self._low].sum()) + 1e-9
        mid = float(spectrum[self._mid].sum()) + 1e-9
        high = float(spectrum[self._high].sum()) + 1e-9
        hiss = high / (low + mid + high)
        tongue = 0.0
        if visemes:
            opening, shape, tongue = _from_visemes(visemes, centre + VISEME_LEAD_SECONDS)
            opening = opening * (0.55 + 0.6 * level) if opening > 0 else opening
        else:
            opening = level**1.3 * (1.0 - 0.6 * hiss)
            shape = self._vowel_shape(float(np.log10(mid / low)), hiss)
        return MouthState(float(np.clip(opening, -0.25, 1.0)), shape, level, True, tongue=tongue)

    def _vowel_shape(self, colour: float, hiss: float) -> float:
        """Rounded (-1) … spread (+1) from a voiced frame's vowel colour (log10 of mid over low band energy: a
        high second formant is a spread vowel), relative to this voice's running average; hiss (s, sh) spreads."""
        deviation = colour - self._colour_mean
        self._colour_mean += self._colour_rate * deviation
        self._colour_var += self._colour_rate * (deviation * deviation - self._colour_var)
        shape = deviation / (1.2 * float(np.sqrt(self._colour_var)) + 1e-6)
        return float(np.clip(shape + 0.8 * hiss, -1.0, 1.0))


def _from_visemes(visemes: list[tuple[Viseme, float, float]], centre: float) -> tuple[float, float, float]:
    """(opening, shape, tongue): dominance-weighted Gaussian blend of the viseme targets around `centre`
    (coarticulation)."""
    weights, opens, shapes, tongues = [], [], [], []
    covered = 0.0
    for viseme, start, end in visemes:
        scale = np.sqrt(2.0) * (CLOSURE_SECONDS if viseme == Viseme.PP else COARTICULATION_SECONDS)
        share = 0.5 * (erf((end - centre) / scale) - erf((start - centre) / scale))
        if share <= 1e-4:
            continue
        o, s, dominance = VISEME_TARGETS[viseme]
        covered += share
        weights.append(share * dominance)
        opens.append(o)
        shapes.append(s)
        tongues.append(1.0 if viseme in TONGUE_VISEMES else 0.0)
    rest = max(0.0, 1.0 - covered)
    o, s, dominance = VISEME_TARGETS[Viseme.SIL]
    weights.append(rest * dominance)
    opens.append(o)
    shapes.append(s)
    tongues.append(0.0)
    w = np.asarray(weights)
    total = float(w.sum())
    if total <= 0:
        return 0.0, 0.0, 0.0
    return (
        float(w @ np.asarray(opens) / total),
        float(w @ np.asarray(shapes) / total),
        float(w @ np.asarray(tongues) / total),
    )
