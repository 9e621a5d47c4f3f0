"""Conversational modes: what the avatar says, decided without I/O; the session does the saying."""

from agent.modes.base import Generate, Mode, Say, Step
from agent.modes.host import HostMode, HostSettings, QuestionRejected
from agent.modes.presenter import PresenterMode
from agent.modes.tutor import TutorMode

__all__ = [
    "Generate",
    "HostMode",
    "HostSettings",
    "Mode",
    "PresenterMode",
    "QuestionRejected",
    "Say",
    "Step",
    "TutorMode",
]
