"""Hostile photos and clips, prepared for real: turned, tilted, cropped, cut-off, huge, odd-sized and short.

Each either gives a correct avatar (checked against the upright original) or one clear `UserError`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar import landmarks as lm
from avatar.orientation import turn, upright_turns
from avatar.prepare import PreparedAvatar, find_upright_face, prepare_avatar
from avatar.source import load_source
from core.errors import UserError
from tests import hostile_material as hm


@pytest.fixture(scope="module")
def upright(tmp_path_factory: pytest.TempPathFactory) -> PreparedAvatar:
    avatar, _ = prepare_avatar(hm.ASTRONAUT, tmp_path_factory.mktemp("cache"))
    return avatar


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_turned_photo_is_prepared_upright(tmp_path: Path, upright: PreparedAvatar, degrees: int) -> None:
    """A phone photo that lost its EXIF rotation gets the very avatar of the upright photo: same picture,
    same landmarks, same size of mouth shapes (not teeth on the forehead nor 4×40 px mouths)."""
    path = hm.write(tmp_path / "phone.png", cv2.rotate(hm.astronaut(), hm.TURNS[degrees]))
    avatar, notices = prepare_avatar(path, tmp_path / "cache")
    way = "upside down" if degrees == 180 else "on its side"
    assert notices == [f"the face in phone.png was {way}: the picture was turned upright"]
    assert np.array_equal(avatar.image, upright.image)
    assert np.abs(avatar.points[:, :2] - upright.points[:, :2]).max() < 4.0
    assert avatar.mouth_bank.shape == upright.mouth_bank.shape
    assert avatar.mouth_rect == upright.mouth_rect


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_turned_closed_mouth_portrait_is_found_upright(degrees: int) -> None:
    """The second portrait (closed mouth, glasses): the quarter turns that undo the rotation are found."""
    photo = cv2.rotate(hm.grace(), hm.TURNS[degrees])
    faces = lm.detect_faces(photo)
    assert faces
    undo = {90: 1, 180: 2, 270: 3}[degrees]  # counter-clockwise quarter turns
    assert upright_turns(photo, faces[0]) == undo
    assert abs(lm.detect_faces(turn(photo, undo))[0].pose()[2]) < 10


@pytest.mark.parametrize("photo", ["astronaut", "grace"])
def test_any_tilt_gives_an_upright_face_or_a_clear_refusal(photo: str) -> None:
    """Every 30° round the clock: the face comes out within the tilt the renderer handles, or the photo is
    refused as tilted; never an upside-down fit."""
    image = getattr(hm, photo)()
    outcomes = []
    for degrees in range(0, 360, 30):
        try:
            _, _, face, _ = find_upright_face([hm.tilted(image, degrees)], 0, None, "tilted.png")
        except UserError as error:
            assert "is tilted" in str(error) and "straighten the photo" in str(error)
            outcomes.append("refused")
            continue
        roll = face.pose()[2]
        assert abs(roll) <= lm.MAX_ROLL_DEGREES
        remainder = (degrees + 45) % 90 - 45  # the tilt left after the best quarter turns
        assert abs(roll - remainder) < 12, (degrees, roll)
        outcomes.append("upright")
    assert outcomes.count("upright") >= 8, outcomes


@pytest.mark.parametrize(
    ("crop", "edge"),
    [((slice(0, 150), slice(None)), "bottom"), ((slice(100, None), slice(None)), "top"),
     ((slice(None), slice(200, None)), "left"), ((slice(None), slice(0, 250)), "right")],
)  # fmt: skip
def test_face_cut_off_at_an_edge_is_refused(crop: tuple[slice, slice], edge: str) -> None:
    with pytest.raises(UserError, match=f"the face in tight.png is cut off at the {edge} edge"):
        find_upright_face([np.ascontiguousarray(hm.astronaut()[crop])], 0, None, "tight.png")


def test_tight_crop_that_keeps_the_mouth_is_animated(tmp_path: Path) -> None:
    """Cropped just below the chin and just above the brows: everything animated is in the picture."""
    path = hm.write(tmp_path / "tight.png", hm.astronaut()[80:185])
    avatar, notices = prepare_avatar(path, tmp_path / "cache")
    assert notices == []
    assert avatar.size == (512, 105)
    wide, closed = avatar.mouth_bank[-1, 2].astype(int), avatar.mouth_bank[1, 2].astype(int)
    assert (np.abs(wide - closed).sum(axis=2) > 60).sum() > 300, "the mouth must still open wide"


def test_odd_output_size_is_made_even_with_a_note(tmp_path: Path) -> None:
    avatar, notices = prepare_avatar(hm.ASTRONAUT, tmp_path, output_size=(511, 301))
    assert avatar.size == (510, 300)
    assert notices == ["output size 511x301 made even: 510x300 (H.264 video needs even sides)"]


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((256, 256), "at output size 256x256 the face in astronaut.png is only 46 px wide"),
        ((100, 800), "at output size 100x800 the face in astronaut.png does not fit: the left edge cuts off part"),
        ((1280, 100), "at output size 1280x100 the face in astronaut.png does not fit: the bottom edge"),
    ],
)
def test_output_size_the_face_cannot_take_is_blamed(tmp_path: Path, size: tuple[int, int], message: str) -> None:
    with pytest.raises(UserError, match=message):
        prepare_avatar(hm.ASTRONAUT, tmp_path, output_size=size)


def test_preparation_reports_its_progress(tmp_path: Path) -> None:
    done: list[float] = []
    avatar, _ = prepare_avatar(hm.ASTRONAUT, tmp_path, progress=done.append)
    assert done == sorted(done) and done[-1] == 1.0
    assert len(done) > len(avatar.open_levels)  # at least one report per row of mouth shapes
    again: list[float] = []
    assert prepare_avatar(hm.ASTRONAUT, tmp_path, progress=again.append)[0].from_cache


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".bmp", ".tiff"])
@pytest.mark.parametrize("fraction", [0.33, 0.9])
def test_truncated_photo_is_an_error_in_every_format(tmp_path: Path, suffix: str, fraction: float) -> None:
    whole = hm.write(tmp_path / f"whole{suffix}", hm.astronaut())
    path = hm.truncated(tmp_path / f"me{suffix}", whole, fraction)
    with pytest.raises(UserError, match=rf"avatar image me\{suffix} is truncated or corrupted") as caught:
        load_source(path)
    assert "video" not in str(caught.value)


def test_huge_photo_is_decoded_small(tmp_path: Path) -> None:
    """A 4000×3000 JPEG is decoded at half size straight away and scaled to 1080 px high: the same picture
    a full decode gives, at a fraction of the work."""
    big = cv2.resize(hm.grace(), (2560, 3000), interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, 0, 0, 720, 720, cv2.BORDER_REFLECT)
    path = hm.write(tmp_path / "big.jpg", big)
    frame = load_source(path).frames[0]
    assert frame.shape == (1080, 1440, 3)
    full = cv2.resize(cv2.imread(str(path)), (1440, 1080), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.astype(int) - full).mean() < 2.0


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that announces its size and stops: enough for the size check, which must come before decoding."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b""))
    return path


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [(12000, 8000, "is 12000×8000 px, larger than 80 megapixels"), (20000, 20000, "is larger than 80 megapixels")],
)
def test_photo_beyond_the_pixel_limit_is_refused_before_decoding(
    tmp_path: Path, width: int, height: int, message: str
) -> None:
    with pytest.raises(UserError, match=rf"avatar image poster.png {message}: use a smaller copy"):
        load_source(_png_header_only(tmp_path / "poster.png", width, height))


def test_very_short_video_is_animated_as_its_best_frame(tmp_path: Path) -> None:
    clip = hm.write_clip(tmp_path / "blink.mp4", hm.astronaut(), 10)
    avatar, notices = prepare_avatar(clip, tmp_path / "cache")
    assert not avatar.is_video and avatar.loop is None
    assert notices == [
        "video avatar blink.mp4 is only 0.4 s long: its best frame is animated like a photo "
        "(a 5-10 s clip gives a natural idle loop)"
    ]


def test_short_video_loops_and_says_so(tmp_path: Path) -> None:
    clip = hm.write_clip(tmp_path / "short.mp4", hm.astronaut(), 50)
    avatar, notices = prepare_avatar(clip, tmp_path / "cache")
    assert avatar.is_video and avatar.loop is not None and len(avatar.loop) == 50
    assert any("short.mp4 is 2.0 s long: it is played forwards and backwards" in n for n in notices)


def test_sideways_video_is_turned_upright_frame_by_frame(tmp_path: Path, upright: PreparedAvatar) -> None:
    """A clip filmed sideways without a rotation tag: every loop frame is turned, not just the reference."""
    clip = hm.write_clip(tmp_path / "sideways.mp4", cv2.rotate(hm.astronaut(), cv2.ROTATE_90_CLOCKWISE), 30)
    avatar, notices = prepare_avatar(clip, tmp_path / "cache")
    assert "the face in sideways.mp4 was on its side: the picture was turned upright" in notices
    assert avatar.is_video and avatar.loop is not None
    assert avatar.size == (512, 512) and abs(lm.FaceLandmarks(avatar.points).pose()[2]) < 10
    first = avatar.loop.frame(0)
    assert np.abs(first.astype(int) - upright.image).mean() < 8  # an upright frame (H.264 and a 3 px sway)
