"""Avatar preparation on the real sample portrait: the cache, its invalidation, and bad input."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar.prepare import PreparedAvatar, prepare_avatar
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("avatar-cache")


@pytest.fixture(scope="module")
def prepared(astronaut: Path, cache_dir: Path) -> PreparedAvatar:
    avatar, notices = prepare_avatar(astronaut, cache_dir)
    assert notices == []
    return avatar


def test_prepared_avatar_describes_itself(prepared: PreparedAvatar) -> None:
    assert prepared.size == (512, 512)
    assert not prepared.from_cache
    assert prepared.cache_path is not None and prepared.cache_path.is_file()
    # The astronaut smiles with her teeth showing: they are reused rather than synthesised.
    assert "photo" in prepared.teeth
    summary = prepared.summary()
    for part in ("astronaut.png", "512×512", "mouth shapes", "teeth reused", str(prepared.cache_path)):
        assert part in summary
    x0, y0, x1, y1 = prepared.roi
    mx0, my0, mx1, my1 = prepared.mouth_rect
    assert x0 <= mx0 < mx1 <= x1 and y0 <= my0 < my1 <= y1
    assert prepared.mouth_rect[1] >= prepared.eye_rect[3], "mouth and eye patches must not overlap"


def test_second_prepare_is_a_cache_hit(prepared: PreparedAvatar, astronaut: Path, cache_dir: Path) -> None:
    start = time.perf_counter()
    again, _ = prepare_avatar(astronaut, cache_dir)
    assert again.from_cache
    assert time.perf_counter() - start < 0.5 * max(prepared.prepare_seconds, 0.2)
    assert again.cache_path == prepared.cache_path
    np.testing.assert_array_equal(again.mouth_bank, prepared.mouth_bank)
    np.testing.assert_array_equal(again.image, prepared.image)
    assert again.roi == prepared.roi and again.pivot == prepared.pivot


def test_changed_or_corrupt_cache_is_rebuilt(astronaut: Path, tmp_path: Path) -> None:
    photo = tmp_path / "me.png"
    shutil.copy(astronaut, photo)
    cache = tmp_path / "cache"
    first, _ = prepare_avatar(photo, cache)
    assert first.cache_path is not None

    first.cache_path.write_bytes(b"not a cache file")
    rebuilt, _ = prepare_avatar(photo, cache)
    assert not rebuilt.from_cache
    assert prepare_avatar(photo, cache)[0].from_cache

    image = cv2.imread(str(photo))
    image[0:8, 0:8] = 0  # a different file (far from the face)
    cv2.imwrite(str(photo), image)
    changed, _ = prepare_avatar(photo, cache)
    assert not changed.from_cache
    assert changed.cache_path != first.cache_path
    assert changed.image[0:8, 0:8].max() == 0


def test_output_size_crops_around_the_face(astronaut: Path, tmp_path: Path) -> None:
    avatar, _ = prepare_avatar(astronaut, tmp_path, output_size=(640, 360))
    assert avatar.image.shape == (360, 640, 3)
    x0, y0, x1, y1 = avatar.roi
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360


def test_face_index_survives_output_size(astronaut: Path, tmp_path: Path) -> None:
    """Choosing the second face of a group photo and a new output size animates that face, not the largest."""
    img = cv2.imread(str(astronaut))
    canvas = np.full((512, 512 + 410, 3), 128, np.uint8)
    canvas[:, :512] = img
    canvas[51:461, 512:] = cv2.resize(img, (410, 410))
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), canvas)
    first, _ = prepare_avatar(path, tmp_path / "c", face_index=0, output_size=(900, 500))
    second, _ = prepare_avatar(path, tmp_path / "c", face_index=1, output_size=(900, 500))
    assert first.points[:, 0].mean() < 450 < second.points[:, 0].mean()


def test_closed_mouth_photo_gets_synthesised_teeth(prepared: PreparedAvatar, tmp_path: Path) -> None:
    """A portrait with closed lips has no teeth to reuse: open shapes must still show teeth and a
    tongue-coloured cavity, not a black hole. The closed-mouth portrait is the astronaut's own
    closed shape from the bank, pasted into her photo."""
    x0, y0, x1, y1 = prepared.mouth_rect
    closed = prepared.image.copy()
    closed[y0:y1, x0:x1] = prepared.mouth_bank[1, 2]
    path = tmp_path / "closed.png"
    cv2.imwrite(str(path), closed)
    avatar, _ = prepare_avatar(path, tmp_path / "cache")
    assert "synthesized" in avatar.teeth
    wide = avatar.mouth_bank[-1, 2].astype(np.float32)
    rest = avatar.mouth_bank[1, 2].astype(np.float32)
    changed = np.abs(wide - rest).sum(axis=2) > 60
    assert changed.sum() > 60, "the wide-open mouth must differ from the closed one"
    luminance = wide.mean(axis=2)[changed]
    assert luminance.max() > 150, "teeth (bright) must show in the open mouth"
    assert luminance.min() < 90, "the cavity (dark) must show in the open mouth"


@pytest.mark.parametrize(
    ("name", "message"),
    [("cat.png", "no face"), ("missing.png", "not found")],
)
def test_bad_sources_give_one_line_errors(name: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=message):
        prepare_avatar(ROOT / "tests" / "data" / "images" / name, tmp_path)


def test_bad_output_size(astronaut: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="output size"):
        prepare_avatar(astronaut, tmp_path, output_size=(10, 10))
