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
