"""RTMP push against a real RTMP server: FFmpeg's own (PyAV's bundled build) listening on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from core.errors import UserError
from core.events import Frame
from streaming.rtmp import RtmpSink, mask_url
from streaming.rtmp_worker import AAC_PRIMING, AUDIO_RATE, FlvPush
from tests.rtmp_helpers import KEY, Listener, free_port

FPS, RATE = 25, 24_000
SPF = RATE // FPS
SIZE = (256, 256)
AAC_BLOCK_MS = 1024 / AUDIO_RATE * 1000
PROMPT_SECONDS = 1.0
"""What a write() may take. It only appends under a lock (microseconds); the bound is generous for a loaded
2-core machine, yet far below the 5 s-to-forever freeze of opening an RTMP URL while holding the GIL,
which is what these tests guard against."""


@pytest.fixture(scope="module")
def face(astronaut: Path) -> np.ndarray:
    return cv2.resize(cv2.imread(str(astronaut)), SIZE, interpolation=cv2.INTER_AREA)


def frame_at(face: np.ndarray, index: int, flash: int | None = None) -> Frame:
    """The portrait with quiet noise; at `flash` a white picture and a loud tone start together."""
    rng = np.random.default_rng(index)
    if index == flash:
        tone = np.sin(np.arange(SPF) * 2 * np.pi * 440 / RATE) * 16000
        return Frame(index=index, image=np.full_like(face, 255), audio=tone.astype(np.int16))
    return Frame(index=index, image=face.copy(), audio=rng.normal(0, 300, SPF).astype(np.int16))


def write_timed(sink: RtmpSink, frame: Frame, slow: list[float]) -> None:
    start = time.perf_counter()
    sink.write(frame, 1, frame.index * SPF)
    if (took := time.perf_counter() - start) > PROMPT_SECONDS:
        slow.append(took)


async def test_listener_gets_h264_and_aac_in_sync_with_matching_durations(face: np.ndarray) -> None:
    listener = Listener(free_port())
    sink = RtmpSink(listener.url, FPS, SIZE, RATE, max_queue_frames=200)
    count, flash = 75, 30
    for i in range(count):
        sink.write(frame_at(face, i, flash), 1, i * SPF)
    for _ in range(600):  # up to a minute: the worker process starts on a loaded machine
        if sink.stats["frames_sent"] == count:
            break
        await asyncio.sleep(0.1)
    await sink.aclose()
    listener.join()
    stats = sink.stats
    assert stats["frames_sent"] == count and stats["frames_dropped"] == stats["audio_frames_dropped"] == 0, stats
    assert listener.codecs == {"video": "h264", "audio": "aac"}
    assert len(listener.video) == count
    offset_ms = AAC_PRIMING / AUDIO_RATE * 1000
    pts = [p for p, _ in listener.video]
    assert pts == [round(offset_ms + i * 1000 / FPS) for i in range(count)], "video timestamps from pts"
    video_ms = count * 1000 / FPS
    samples = np.concatenate([a for _, a in listener.audio])
    assert listener.audio[0][0] == 0, "the AAC priming block starts the timeline"
    audio_ms = len(samples) / AUDIO_RATE * 1000 - offset_ms
    assert abs(audio_ms - video_ms) <= AAC_BLOCK_MS, (audio_ms, video_ms)
    # Sync: the white frame and the tone's onset land at the same moment on the receiver's clock.
    flash_ms = max(listener.video, key=lambda v: v[1])[0]
    onset_ms = listener.audio[0][0] + np.argmax(np.abs(samples) > 0.25) / AUDIO_RATE * 1000
    assert abs(onset_ms - flash_ms) <= 5, (onset_ms, flash_ms)


async def test_reconnects_when_the_listener_goes_away_and_comes_back(
    face: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streaming.rtmp")
    port = free_port()
    first = Listener(port, stop_after=20)
    sink = RtmpSink(first.url, FPS, SIZE, RATE, reconnect_backoff=(0.2, 1.0))
    slow: list[float] = []
    second: Listener | None = None
    index = 0
    deadline = time.monotonic() + 60  # generous: each attempt starts a Python worker on a loaded machine
    while time.monotonic() < deadline and not (second and len(second.video) >= 20):
        write_timed(sink, frame_at(face, index), slow)
        index += 1
        if second is None and first.done:
            second = Listener(port)  # the ingest is back, on the same address
        await asyncio.sleep(1 / FPS)
    stats = sink.stats
    await sink.aclose()
    assert second is not None
    second.join()
    assert slow == [], f"{len(slow)} of {index} writes took over {PROMPT_SECONDS} s"
    assert len(first.video) >= 20 and len(second.video) >= 20
    assert stats["reconnects"] == 1 and stats["connected"], stats
    assert stats["last_error"], "the lost connection is reported"
    # One timeline across connections: the second stream starts where the session was, later than the first ended.
    assert second.video[0][0] > first.video[-1][0] + 1000 / FPS
    assert second.codecs == {"video": "h264", "audio": "aac"}
    messages = [r.getMessage() for r in caplog.records]
    assert any("reconnected" in m for m in messages)
    assert any("retrying in" in m for m in messages)
    assert not any(KEY in m for m in messages), "the stream key stays out of the logs"


async def test_refused_connection_never_blocks_or_raises_and_memory_stays_bounded(face: np.ndarray) -> None:
    url = f"rtmp://127.0.0.1:{free_port()}/live/{KEY}"  # nothing listens there
    sink = RtmpSink(url, FPS, SIZE, RATE, max_queue_frames=10, reconnect_backoff=(0.2, 0.4))
    slow: list[float] = []
    for i in range(150):
        write_timed(sink, frame_at(face, i), slow)
        assert sink.stats["queued_frames"] <= 10
        await asyncio.sleep(0.01)
    await sink.aclose()
    stats = sink.stats
    assert slow == []
    assert not stats["connected"] and stats["frames_sent"] == 0
    assert stats["frames_dropped"] == stats["audio_frames_dropped"] == 150, "every frame is accounted for"
    assert "refused" in str(stats["last_error"]).lower() and KEY not in str(stats["last_error"]), stats


async def test_a_silent_ingest_is_given_up_without_freezing_the_process(face: np.ndarray) -> None:
    """A server that accepts TCP but never answers the RTMP handshake: the worker's alarm ends the attempt."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"rtmp://127.0.0.1:{server.getsockname()[1]}/live/{KEY}"
        sink = RtmpSink(url, FPS, SIZE, RATE, max_queue_frames=10, stall_seconds=1.0, reconnect_backoff=(5.0, 5.0))
        slow: list[float] = []
        ticks = 0
        while sink.stats["last_error"] is None and ticks < 1500:  # ~15 s of ticks, a generous ceiling
            write_timed(sink, frame_at(face, ticks), slow)
            ticks += 1
            await asyncio.sleep(0.01)
        stats = sink.stats
        await sink.aclose()
    assert slow == [], "a write waited for the network"
    assert "accepted nothing for 1 s" in str(stats["last_error"]), stats
    assert not stats["connected"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://example.com/live/{KEY}", "not an RTMP URL"),
        ("rtmp://", "no valid host"),
        (f"rtmp://example.com:99999/live/{KEY}", "no valid host or port"),
        ("rtmp://example.com/live", "needs an app and a stream key"),
        (f"rtmp://example.com/live/{KEY} x", "spaces"),
    ],
)
def test_bad_urls_are_refused_in_one_line(url: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        RtmpSink(url, FPS, SIZE, RATE)
    assert "\n" not in str(info.value)
    assert KEY not in str(info.value)


def test_stream_keys_are_masked() -> None:
    assert mask_url("rtmps://user:pw@live.example.com:443/app/abc123?token=x") == "rtmps://live.example.com:443/app/***"
    assert mask_url("rtmp://a.rtmp.youtube.com/live2/xxxx-yyyy") == "rtmp://a.rtmp.youtube.com/live2/***"


def test_worker_keeps_one_timeline_over_dropped_frames(face: np.ndarray, tmp_path: Path) -> None:
    """The worker's FLV writer, on a file: frames whose image was dropped still carry their audio, and
    frames dropped whole leave silence of their length, so audio stays continuous and in step with video."""
    path = tmp_path / "push.flv"
    push = FlvPush(str(path), FPS, SIZE, RATE, None)
    kept = [i for i in range(50) if not 20 <= i < 30]  # frames 20..29 dropped whole
    for i in kept:
        frame = frame_at(face, i)
        push.write(i * SPF, None if 10 <= i < 15 else frame.image, frame.audio)  # 10..14: audio only
    push.close()
    with av.open(str(path)) as container:
        video = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    with av.open(str(path)) as container:
        samples = sum(f.samples for f in container.decode(container.streams.audio[0]))
    offset_ms = AAC_PRIMING / AUDIO_RATE * 1000
    assert video == [round(offset_ms + i * 1000 / FPS) for i in kept if not 10 <= i < 15]
    audio_ms = samples / AUDIO_RATE * 1000 - offset_ms
    assert abs(audio_ms - 50 * 1000 / FPS) <= AAC_BLOCK_MS, audio_ms
