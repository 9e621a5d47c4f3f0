"""What the head follows in speech: the voice's pitch, phrase starts and ends, stresses, on real recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar.lipsync import MouthDriver
from avatar.prosody import ProsodyTracker, pitch_hz
from core.audio import read_audio_file
from core.events import CANONICAL_SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent
SR = CANONICAL_SAMPLE_RATE
SPF = SR // 25


def test_pitch_of_a_voice_like_tone() -> None:
    t = np.arange(2 * SPF) / SR
    for f0 in (90.0, 150.0, 240.0):
        tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
        assert abs(pitch_hz(tone.astype(np.float64), SR) - f0) < 0.02 * f0
    assert pitch_hz(np.random.default_rng(0).standard_normal(2 * SPF), SR) is None, "noise has no pitch"
    assert pitch_hz(np.zeros(2 * SPF), SR) is None


def _track(pcm: np.ndarray) -> list:
    driver, tracker = MouthDriver(SR, SPF), ProsodyTracker(25, SR)
    audio = np.concatenate([np.zeros(SPF // 2), pcm.astype(np.float64) / 32768.0, np.zeros(SPF)])
    out = []
    for k in range(len(pcm) // SPF):
        window = audio[k * SPF : k * SPF + 2 * SPF]
        state = driver.step(window, [], (k + 0.5) / 25)
        out.append(tracker.step(window, state.energy, bool(np.any(pcm[k * SPF : (k + 1) * SPF]))))
    return out


def test_phrases_stresses_and_pitch_on_real_speech() -> None:
    pause = np.zeros(SR, np.int16)
    words = [
        read_audio_file(ROOT / "tests" / "data" / "audio" / "en" / f"{n}.wav", SR) for n in ("hello_world", "counting")
    ]
    track = _track(np.concatenate([pause, words[0], pause, words[1], pause]))
    assert sum(p.phrase_start for p in track) == 2
    assert sum(p.phrase_end for p in track) == 2
    stresses = [i for i, p in enumerate(track) if p.stress > 0]
    assert len(stresses) >= 4, "counting one to ten stresses most numbers"
    assert all(track[i].voiced or track[i].energy > 0.05 for i in stresses)
    assert all(p.stress == 0 and p.pitch == 0 for p in track[:25]), "the leading second of silence"
    voiced = [p.pitch for p in track if p.voiced]
    assert len(voiced) > 40
    assert np.ptp(voiced) > 3.0, "the voice's pitch moves by semitones"
