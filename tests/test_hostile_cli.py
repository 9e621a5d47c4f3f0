"""Hostile input to `digital-human`: every case ends in exactly one `error:` line, exit status 2, no file left.

The inputs are the ones a new user produced (issue 10): broken and cut-off photos, impossible sizes,
binary files where text belongs, negative seeds, typos in flags, an output that would overwrite an input.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli import EXIT_TERMINATED, build_parser, main
from core.config import VALID_FPS
from tests import hostile_material as hm

TEXT = "Hello, I am your virtual presenter."


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DH_AVATAR__CACHE_DIR", str(folder))
    return folder


Argv = Callable[[Path], list[str]]
"""The command line for a case, given the test's folder (where the output would go)."""


def _photo(maker: Callable[[Path], Path]) -> Argv:
    return lambda folder: ["render", "--avatar", str(maker(folder)), "--text", TEXT, "-o", str(folder / "out.mp4")]


def _text(*extra: str, text: str = TEXT) -> Argv:
    return lambda folder: ["render", "--avatar", str(hm.ASTRONAUT), "--text", text, *extra, "-o", str(folder / "o.mp4")]


def _script(content: bytes) -> Argv:
    def argv(folder: Path) -> list[str]:
        script = folder / "lesson.md"
        script.write_bytes(content)
        return ["render", "--avatar", str(hm.ASTRONAUT), "--script", str(script), "-o", str(folder / "out.mp4")]

    return argv


def _binary_config(folder: Path) -> list[str]:
    config = folder / "my.yaml"
    config.write_bytes(hm.ASTRONAUT.read_bytes()[:3000])
    return ["--config", str(config), "render", "--text", TEXT, "-o", str(folder / "out.mp4")]


CASES = [
    (
        "truncated JPEG (first third)",
        _photo(lambda f: hm.truncated(f / "grace.jpg", hm.GRACE)),
        "avatar image grace.jpg is truncated or corrupted",
    ),
    (
        "truncated JPEG with the face in its first third",
        _photo(lambda f: hm.truncated(f / "me.jpg", hm.write(f / "full.jpg", hm.astronaut()))),
        "avatar image me.jpg is truncated or corrupted",
    ),
    (
        "truncated PNG",
        _photo(lambda f: hm.truncated(f / "me.png", hm.ASTRONAUT, 0.6)),
        "avatar image me.png is truncated or corrupted",
    ),
    (
        "noise named .jpg is not called a video",
        _photo(lambda f: hm.noise(f / "noise.jpg")),
        "avatar image noise.jpg is damaged or not a picture",
    ),
    (
        "portrait cut off just below the eyes",
        _photo(lambda f: hm.write(f / "tight.png", hm.grace()[:220])),
        "the face in tight.png is cut off at the bottom edge",
    ),
    (
        "portrait cut off through the mouth",
        _photo(lambda f: hm.write(f / "tight.png", hm.astronaut()[:150])),
        "the face in tight.png is cut off at the bottom edge",
    ),
    ("--size 100x800", _text("--size", "100x800"), "at output size 100x800 the face in astronaut.png does not fit"),
    ("--size 256x256", _text("--size", "256x256"), "at output size 256x256 the face in astronaut.png is only 46 px"),
    ("--size 10x10", _text("--size", "10x10"), "argument --size: size 10x10 cannot be used: each side must be 64"),
    ("--size 4000x4000", _text("--size", "4000x4000"), "argument --size: size 4000x4000 cannot be used"),
    ("--size abc", _text("--size", "abc"), "argument --size: size must look like 1280x720, not 'abc'"),
    ("--seed -5", _text("--seed", "-5"), "argument --seed: -5 is out of range (0 to 4294967295)"),
    ("--face-index -1", _text("--face-index", "-1"), "argument --face-index: -1 is out of range"),
    ("--fps 33", _text("--fps", "33"), "argument --fps: invalid choice: 33 (choose from 20, 24, 25, 30, 32, 40)"),
    ("--fps abc", _text("--fps", "abc"), "argument --fps: invalid int value: 'abc'"),
    ("unknown flag", _text("--colour", "red"), "unrecognized arguments: --colour red"),
    ("no output", lambda f: ["render", "--text", TEXT], "the following arguments are required: -o/--output"),
    ("unknown command", lambda f: ["rendr"], "argument COMMAND: invalid choice: 'rendr'"),
    ("binary --config", _binary_config, "argument --config: "),
    ("NUL byte in a script", _script(b"Hello there.\x00 And more.\n"), "contains a NUL byte (at byte 12)"),
    ("only punctuation", _text(text=" ... !!! ,,, -- "), "nothing to say"),
    ("only an escape sequence", _text(text="\x1b[31m\x1b[0m"), "nothing to say"),
]


@pytest.mark.parametrize(("name", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_exit_2(tmp_path, cache, capsys, name, argv, message):
    code = main(argv(tmp_path))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err, err
    assert "video" not in err  # a broken photo is never called a video
    assert hm.leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            "[100, 800]",
            "at output size 100x800 the face in astronaut.png does not fit: the left edge cuts off part of it",
        ),
        ("[5000, 5000]", "invalid configuration value for avatar.output_size: 5000x5000 cannot be used"),
        ("[10, 10]", "invalid configuration value for avatar.output_size: 10x10 cannot be used"),
    ],
)
def test_output_size_from_the_environment(tmp_path, cache, capsys, monkeypatch, env, message):
    monkeypatch.setenv("DH_AVATAR__OUTPUT_SIZE", env)
    out = tmp_path / "out.mp4"
    assert main(["render", "--avatar", str(hm.ASTRONAUT), "--text", TEXT, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert hm.leftovers(tmp_path) == []


@pytest.mark.parametrize("what", ["avatar", "audio"])
def test_output_naming_an_input_is_refused(tmp_path, cache, capsys, speech_wav, what):
    """`-o` naming the avatar (a video) or the recording would replace it with the reply: refused, input intact."""
    victim = tmp_path / "me.mp4"
    if what == "avatar":
        hm.write_clip(victim, hm.astronaut(), 10)
        argv = ["render", "--avatar", str(victim), "--text", TEXT]
    else:
        shutil.copy(speech_wav, victim)
        argv = ["render", "--avatar", str(hm.ASTRONAUT), "--audio", str(victim)]
    before = victim.read_bytes()
    assert main([*argv, "-o", str(tmp_path / "." / "me.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the" in err and "choose another name" in err, err
    assert victim.read_bytes() == before


def test_help_lists_the_valid_frame_rates_and_size_limits():
    render = build_parser()._subparsers._group_actions[0].choices["render"]  # type: ignore[union-attr]
    text = " ".join(render.format_help().split())
    assert "frames per second: " + ", ".join(str(f) for f in VALID_FPS) in text
    assert "each side 64-3840 px" in text


def test_console_script_prints_one_line_for_a_usage_error(tmp_path):
    """The installed command, not just main(): argparse's 7-line usage block must not come back."""
    exe = shutil.which("digital-human", path=str(Path(sys.executable).parent))
    assert exe
    proc = subprocess.run([exe, "render", "--fps", "abc", "--text", TEXT, "-o", str(tmp_path / "o.mp4")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: argument --fps: invalid int value: 'abc' (see `digital-human render --help`)"
    ]


def test_sigterm_mid_render_cleans_up_like_ctrl_c(tmp_path):
    """`kill` (SIGTERM) while frames are being encoded: 'terminated', exit 143, no partial file, no crash."""
    exe = shutil.which("digital-human", path=str(Path(sys.executable).parent))
    out = tmp_path / "long.mp4"
    text = "This reply is long enough to be stopped while it is being recorded. " * 12
    proc = subprocess.Popen(
        # 1080p output: encoding dominates, so the signal lands while a worker thread is encoding.
        [exe, "render", "--text", text, "-o", str(out), "--size", "1920x1080"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DH_AVATAR__CACHE_DIR": str(tmp_path / "cache")},
    )
    deadline = time.monotonic() + 120  # generous: preparing a 1080p avatar on a loaded 2-core machine
    while not any(".part" in p.name for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the recording has started
    assert any(".part" in p.name for p in tmp_path.iterdir()), "the recording never started"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_TERMINATED == 143, err
    assert err.strip().splitlines()[-1] == "terminated"
    assert hm.leftovers(tmp_path) == []
