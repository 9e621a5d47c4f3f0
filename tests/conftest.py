"""Shared fixtures: real test material, an isolated cache, and the repository paths."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
ASTRONAUT = ROOT / "assets" / "avatars" / "astronaut.png"


@pytest.fixture(scope="session")
def astronaut() -> Path:
    return ASTRONAUT


@pytest.fixture(scope="session")
def speech_wav() -> Path:
    return DATA / "audio" / "en" / "quick_brown_fox.wav"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the test run assembles the offline Whisper model: never the user's ~/.cache."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def whisper(model_cache: Path):
    """The offline Whisper base model (faster-whisper), assembled once per run like the product does."""
    from faster_whisper import WhisperModel

    from speech.model_store import offline_whisper_base

    folder = offline_whisper_base(model_cache)
    return WhisperModel(str(folder), device="cpu", compute_type="int8")


PORTRAITS = Path(__file__).parent / "data" / "images" / "portraits"
PORTRAIT_SIZE = (384, 384)


@pytest.fixture(scope="session")
def neutral_portrait(tmp_path_factory: pytest.TempPathFactory):
    """Biden: an older face, mouth closed, no smile (prepared once for every mouth test)."""
    from avatar.prepare import prepare_avatar

    return prepare_avatar(PORTRAITS / "biden.jpg", tmp_path_factory.mktemp("cache"), output_size=PORTRAIT_SIZE)[0]


@pytest.fixture(scope="session")
def smiling_portrait(tmp_path_factory: pytest.TempPathFactory):
    """Obama smiling with his teeth showing."""
    from avatar.prepare import prepare_avatar

    return prepare_avatar(PORTRAITS / "obama-smiling.jpg", tmp_path_factory.mktemp("cache"), output_size=PORTRAIT_SIZE)[
        0
    ]
