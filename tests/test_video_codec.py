"""Live video encoders, checked by decoding their output with a real decoder (FFmpeg's, through PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from core.errors import UserError
from streaming.video_codec import create_encoder, h264_level

FPS = 25
STAMP_BITS = 7
NAL_SLICE, NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS = 1, 5, 6, 7, 8


@pytest.fixture(scope="module")
def face(astronaut: Path) -> np.ndarray:
    return cv2.imread(str(astronaut))


def moving(face: np.ndarray, count: int) -> list[np.ndarray]:
    """The portrait with a small sub-pixel drift and a changing mouth-sized patch: like a talking head."""
    frames = []
    h, w = face.shape[:2]
    for i in range(count):
        shift = np.float32([[1, 0, 0.7 * np.sin(i / 4)], [0, 1, 0.5 * np.cos(i / 5)]])
        image = cv2.warpAffine(face, shift, (w, h), borderMode=cv2.BORDER_REFLECT)
        cv2.ellipse(image, (w // 2, int(h * 0.62)), (24, 4 + i % 9), 0, 0, 360, (40, 30, 90), -1)
        for bit in range(STAMP_BITS):
            image[:16, 16 * bit : 16 * bit + 16] = 255 if i >> bit & 1 else 0
        frames.append(image)
    return frames


def stamp(image: np.ndarray) -> int:
    """The frame number drawn into the top-left corner by `moving`."""
    return sum(1 << bit for bit in range(STAMP_BITS) if image[4:12, 16 * bit + 4 : 16 * bit + 12].mean() > 128)


def nal_units(access_unit: bytes) -> list[bytes]:
    """Annex B: units follow 00 00 01 start codes; a 4-byte start code leaves a zero on the unit before."""
    return [u.rstrip(b"\x00") for u in access_unit.split(b"\x00\x00\x01") if u.rstrip(b"\x00")]


def nal_types(access_unit: bytes) -> list[int]:
    return [u[0] & 0x1F for u in nal_units(access_unit)]


def live_decoder() -> av.VideoCodecContext:
    """One decoding thread: frame threading would hold frames back and hide an encoder delay."""
    ctx = av.CodecContext.create("h264", "r")
    ctx.thread_count = 1
    return ctx


def decode_now(ctx: av.VideoCodecContext, data: bytes) -> list[np.ndarray]:
    return [f.to_ndarray(format="bgr24") for f in ctx.decode(av.Packet(data))]


def test_one_access_unit_per_frame_without_delay_and_keyframes_on_request(face: np.ndarray) -> None:
    frames = moving(face, 60)
    encoder = create_encoder("h264", 512, 512, FPS, keyframe_seconds=0.8)  # a keyframe every 20 frames
    requested = {13, 14, 41}
    decoder = live_decoder()
    keyframes, scores = [], []
    for i, image in enumerate(frames):
        out = encoder.encode(image, keyframe=i in requested)
        types = nal_types(out.data)
        assert out.data.startswith(b"\x00\x00\x00\x01"), "Annex B start code"
        if out.keyframe:
            keyframes.append(i)
            assert {NAL_SPS, NAL_PPS, NAL_IDR} <= set(types), f"frame {i} keyframe without SPS/PPS: {types}"
        else:
            assert set(types) <= {NAL_SLICE, NAL_SEI}, f"frame {i}: {types}"
        decoded = decode_now(decoder, out.data)
        # The decoder hands back this very frame at once: no encoder delay.
        assert len(decoded) == 1, f"frame {i} gave {len(decoded)} decoded frames"
        assert stamp(decoded[0]) == i, f"frame {i} decoded as frame {stamp(decoded[0])}"
        scores.append(cv2.PSNR(decoded[0], image))
    assert list(decoder.decode(None)) == []
    # Requests are honoured exactly; the regular interval restarts from the last keyframe.
    assert keyframes == [0, 13, 14, 34, 41]
    assert np.mean(scores) > 33, f"mean PSNR {np.mean(scores):.1f} dB"
    assert min(scores) > 31


def test_every_keyframe_decodes_alone(face: np.ndarray) -> None:
    frames = moving(face, 30)
    encoder = create_encoder("h264", 512, 512, FPS)
    outs = [encoder.encode(image, keyframe=i == 17) for i, image in enumerate(frames)]
    for i in (0, 17):
        assert outs[i].keyframe
        decoded = decode_now(live_decoder(), outs[i].data)
        assert len(decoded) == 1
        assert cv2.PSNR(decoded[0], frames[i]) > 33
    # A delta frame alone is not a picture: the decoder refuses or waits, which is why keyframes matter.
    assert not outs[5].keyframe
    try:
        alone = decode_now(live_decoder(), outs[5].data)
    except av.error.InvalidDataError:
        alone = []
    assert alone == [] or cv2.PSNR(alone[0], frames[5]) < 20


def test_codec_string_is_the_stream_profile_and_level(face: np.ndarray) -> None:
    for width, height, level in ((512, 512, 0x1E), (1920, 1080, 0x28)):
        encoder = create_encoder("h264", width, height, FPS)
        out = encoder.encode(cv2.resize(face, (width, height)))
        sps = next(u for u in nal_units(out.data) if u[0] & 0x1F == NAL_SPS)
        assert encoder.codec_string == f"avc1.{sps[1:4].hex().upper()}"
        assert sps[1] == 0x42, "baseline profile"
        assert sps[3] == level


def test_colour_signalling_is_complete(face: np.ndarray) -> None:
    """Chromium's WebCodecs decodes as BT.709 unless primaries, transfer and matrix are all signalled
    (measured: a BT.601 matrix alone turned 255 green into 216); the pixels are converted with BT.601."""
    ctx = live_decoder()
    decode_now(ctx, create_encoder("h264", 512, 512, FPS).encode(face).data)
    assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == (6, 1, 1, 1), (
        "matrix BT.601 (smpte170m), primaries and transfer BT.709, limited range"
    )


def test_levels_follow_size_and_rate() -> None:
    assert h264_level(512, 512, 25, 1_000) == 30
    assert h264_level(1280, 720, 30, 2_000) == 31
    assert h264_level(1920, 1080, 25, 8_000) == 40
    assert h264_level(1920, 1080, 25, 30_000) == 41  # the bitrate cap also needs room
    assert h264_level(1920, 1080, 60, 8_000) == 42
    with pytest.raises(UserError, match=r"level 5\.2"):
        h264_level(8192, 8192, 25, 8_000)


def test_odd_sizes_are_padded_by_one_pixel(face: np.ndarray) -> None:
    image = np.ascontiguousarray(face[:509, :511])
    encoder = create_encoder("h264", 511, 509, FPS)
    assert (encoder.width, encoder.height) == (512, 510)
    decoded = decode_now(live_decoder(), encoder.encode(image).data)[0]
    assert decoded.shape == (510, 512, 3)
    assert cv2.PSNR(decoded[:509, :511], image) > 33


def test_jpeg_round_trip(face: np.ndarray) -> None:
    encoder = create_encoder("jpeg", 512, 512, FPS, jpeg_quality=80)
    assert (encoder.codec, encoder.codec_string) == ("jpeg", "jpeg")
    out = encoder.encode(face)
    assert out.keyframe and out.data[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(out.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == face.shape
    assert cv2.PSNR(decoded, face) > 30
    smaller = create_encoder("jpeg", 512, 512, FPS, jpeg_quality=30).encode(face)
    assert len(smaller.data) < len(out.data)


def test_bad_settings_and_frames_are_refused(face: np.ndarray) -> None:
    with pytest.raises(UserError, match="unknown video codec 'vp9'"):
        create_encoder("vp9", 512, 512, FPS)
    with pytest.raises(UserError, match="jpeg codec"):
        create_encoder("h264", 8192, 8192, FPS)
    with pytest.raises(UserError, match="JPEG quality"):
        create_encoder("jpeg", 512, 512, FPS, jpeg_quality=0)
    with pytest.raises(UserError, match="bitrate"):
        create_encoder("h264", 512, 512, FPS, bitrate=10)
    for codec in ("h264", "jpeg"):
        encoder = create_encoder(codec, 256, 256, FPS)
        with pytest.raises(ValueError, match="256×256"):
            encoder.encode(face)
    closed = create_encoder("h264", 512, 512, FPS)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.encode(face)
