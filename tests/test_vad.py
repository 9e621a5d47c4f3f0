"""Streaming Silero VAD and turn detection on real recorded speech."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from core.audio import read_audio_file, resample
from core.config import VADConfig
from core.errors import UserError
from speech.vad import FRAME, SileroVAD, TurnDetector, UserPaused, UserStartedSpeaking, UserStoppedSpeaking

AUDIO = Path(__file__).parent / "data" / "audio"
RATE = 16_000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return read_audio_file(AUDIO / "en" / "quick_brown_fox.wav", RATE)


@pytest.fixture(scope="module")
def padded(speech: np.ndarray) -> np.ndarray:
    """1 s of silence, the sentence, 1.5 s of silence."""
    return np.concatenate([np.zeros(RATE, np.int16), speech, np.zeros(RATE * 3 // 2, np.int16)])


def run(detector: TurnDetector, audio: np.ndarray, sizes: list[int] | None = None) -> list:
    events = []
    pos = 0
    for size in sizes or [len(audio)]:
        events += detector.feed(audio[pos : pos + size])
        pos += size
    if pos < len(audio):
        events += detector.feed(audio[pos:])
    return events + detector.flush()


def speech_span(speech: np.ndarray) -> tuple[float, float]:
    """Where the recording's energy is (independent of the VAD): first/last 10 ms above -40 dBFS."""
    hop = RATE // 100
    rms = np.sqrt(np.mean((speech[: len(speech) // hop * hop].reshape(-1, hop) / 32768.0) ** 2, axis=1))
    loud = np.flatnonzero(rms > 0.01)
    return loud[0] / 100, (loud[-1] + 1) / 100


def test_streaming_matches_faster_whisper_batch(padded: np.ndarray) -> None:
    """Frame-by-frame with carried state gives exactly faster-whisper's own whole-file probabilities."""
    from faster_whisper.vad import get_vad_model

    audio = padded[: len(padded) // FRAME * FRAME].astype(np.float32) / 32768.0
    whole = get_vad_model()(audio).reshape(-1)
    vad = SileroVAD()
    streamed = np.concatenate([vad(audio[i : i + 3 * FRAME]) for i in range(0, len(audio), 3 * FRAME)])
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert whole.max() > 0.9 and whole[:25].max() < 0.1


def test_utterance_gives_start_then_stop(speech: np.ndarray, padded: np.ndarray) -> None:
    cfg = VADConfig()
    events = run(TurnDetector(cfg), padded)
    assert [type(e) for e in events] == [UserStartedSpeaking, UserPaused, UserStoppedSpeaking]
    started, paused, stopped = events
    lo, hi = speech_span(speech)
    assert abs(started.start - (1.0 + lo)) < 0.15
    assert started.at == pytest.approx(started.start + cfg.min_speech_ms / 1000, abs=0.04)
    assert stopped.start == started.start
    assert abs(stopped.end - (1.0 + hi)) < 0.3
    assert stopped.at - stopped.end == pytest.approx(cfg.end_of_turn_ms / 1000, abs=0.04)
    assert not stopped.truncated and stopped.sample_rate == RATE
    # The pause comes 200 ms (post-roll) into the silence with exactly the audio the turn ends with.
    assert (paused.start, paused.end) == (stopped.start, stopped.end)
    assert paused.at == pytest.approx(paused.end + 0.2, abs=0.04) and paused.at < stopped.at
    np.testing.assert_array_equal(paused.audio, stopped.audio)
    # The utterance keeps ~0.3 s of pre-roll so the first phoneme is not clipped, and all the speech.
    assert stopped.duration >= (stopped.end - stopped.start) + 0.25
    first_loud = np.flatnonzero(np.abs(stopped.audio) > 328)[0] / RATE
    assert first_loud >= 0.25


@pytest.mark.parametrize("kind", ["silence", "noise", "hum"])
def test_no_speech_no_events(kind: str) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(RATE * 4) / RATE
    audio = {
        "silence": np.zeros(RATE * 4),
        "noise": rng.normal(0, 0.03, RATE * 4),
        "hum": 0.2 * np.sin(2 * np.pi * 50 * t) + 0.05 * np.sin(2 * np.pi * 150 * t),
    }[kind]
    detector = TurnDetector()
    assert run(detector, (audio * 32767).astype(np.int16), [700] * 100) == []
    assert not detector.speaking


def test_burst_shorter_than_min_speech_is_ignored(speech: np.ndarray) -> None:
    lo, _ = speech_span(speech)
    burst = speech[int((lo + 0.3) * RATE) : int((lo + 0.42) * RATE)]
    audio = np.concatenate([np.zeros(RATE, np.int16), burst, np.zeros(RATE, np.int16)])
    assert run(TurnDetector(VADConfig(min_speech_ms=300)), audio) == []


def test_chunking_does_not_change_events(padded: np.ndarray) -> None:
    reference = run(TurnDetector(), padded)
    rng = random.Random(5)
    for sizes in ([160] * 500, [rng.randint(1, 3000) for _ in range(200)], [511, 513] * 200):
        events = run(TurnDetector(), padded, sizes)
        assert [type(e) for e in events] == [type(e) for e in reference]
        for a, b in zip(events, reference, strict=True):
            assert (a.start, a.at) == (b.start, b.at)
            if isinstance(a, UserStoppedSpeaking):
                np.testing.assert_array_equal(a.audio, b.audio)


@pytest.mark.parametrize(
    ("rate", "layout"), [(8000, "mono"), (44100, "interleaved"), (48000, "frames"), (22050, "planar")]
)
def test_any_rate_and_channel_layout(padded: np.ndarray, rate: int, layout: str) -> None:
    reference = run(TurnDetector(), padded)
    mono = resample(padded.astype(np.float32) / 32768.0, RATE, rate)
    stereo = np.stack([mono, mono * 0.5], axis=1)
    audio = {"mono": mono, "interleaved": stereo.reshape(-1), "frames": stereo, "planar": stereo.T}[layout]
    channels = 1 if layout == "mono" else 2
    detector = TurnDetector(sample_rate=rate, channels=channels)
    events, step = [], rate // 50
    for i in range(0, len(mono), step):
        if layout == "interleaved":
            events += detector.feed(audio[i * 2 : (i + step) * 2])
        elif layout == "planar":
            events += detector.feed(audio[:, i : i + step])
        else:
            events += detector.feed(audio[i : i + step])
    events += detector.flush()
    turn = [e for e in events if not isinstance(e, UserPaused)]  # a short gap inside the sentence may pause
    assert [type(e) for e in turn] == [UserStartedSpeaking, UserStoppedSpeaking]
    assert isinstance(events[-2], UserPaused)
    assert abs(turn[0].start - reference[0].start) < 0.1
    assert abs(turn[1].end - reference[2].end) < 0.15


def test_long_speech_is_capped(speech: np.ndarray) -> None:
    lo, hi = speech_span(speech)
    voiced = speech[int(lo * RATE) : int(hi * RATE)]
    talk = np.concatenate([voiced] * 6)  # ~15 s without a pause
    detector = TurnDetector(max_utterance_s=4.0)
    events = run(detector, np.concatenate([np.zeros(RATE // 2, np.int16), talk, np.zeros(RATE, np.int16)]), [4000] * 80)
    stops = [e for e in events if isinstance(e, UserStoppedSpeaking)]
    assert len(stops) >= 3
    assert all(s.truncated for s in stops[:-1]) and not stops[-1].truncated
    assert all(s.duration <= 4.0 + 0.05 for s in stops)
    assert isinstance(events[0], UserStartedSpeaking)


def test_hysteresis_pause_and_end_of_turn_logic() -> None:
    """The state machine on its own, fed speech probabilities frame by frame (32 ms each)."""
    detector = TurnDetector(VADConfig(threshold=0.5, min_speech_ms=96, end_of_turn_ms=256), post_roll_ms=192)
    frame = np.zeros(FRAME, np.int16)
    probs = [0.1, 0.6, 0.45, 0.4, 0.36, 0.3, 0.2, 0.4, *[0.1] * 10, 0.6, 0.2, 0.1, 0.1]
    events = []
    for p in probs:
        if (e := detector._step(frame, p)) is not None:
            events.append((detector._frames_seen, e))
        detector._frames_seen += 1
    # Starts at 0.6 (frame 1) and holds through 0.45..0.36 (below the threshold, above 0.35): confirmed
    # after 3 frames. The 0.4 after the dip still counts as speech (frame 7). The pause comes 6 frames
    # of silence later, the end of turn 8 frames later. The lone 0.6 at frame 18 is a click.
    assert [(k, type(e)) for k, e in events] == [
        (3, UserStartedSpeaking),
        (13, UserPaused),
        (15, UserStoppedSpeaking),
    ]
    assert events[0][1].start == pytest.approx(1 * FRAME / RATE)
    assert events[2][1].end == pytest.approx(8 * FRAME / RATE)
    assert len(events[2][1].audio) == (1 + 7 + 6) * FRAME  # pre-roll frame 0, speech 1-7, 6 frames post-roll


@pytest.mark.parametrize(
    ("kwargs", "audio"),
    [
        ({"channels": 2}, np.zeros(1001, np.int16)),
        ({"channels": 2}, np.zeros((100, 3), np.int16)),
        ({}, np.zeros((2, 2, 2), np.int16)),
    ],
)
def test_bad_audio_is_a_user_error(kwargs: dict, audio: np.ndarray) -> None:
    with pytest.raises(UserError):
        TurnDetector(**kwargs).feed(audio)


def test_bad_format_is_a_user_error() -> None:
    with pytest.raises(UserError):
        TurnDetector(sample_rate=0)
