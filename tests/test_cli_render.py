"""`digital-human render` end to end on the real sample avatar, and every bad input it must refuse cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from agent.cli import main
from streaming.recording import probe_durations

TEXT = "Hello, I am your virtual presenter."
CAT = Path(__file__).parent / "data" / "images" / "cat.png"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("DH_AVATAR__CACHE_DIR", str(d))
    return d


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in {".mp4", ".part"} or ".part" in p.name)


def test_render_text_writes_synced_mp4(tmp_path, cache, capsys, astronaut):
    out = tmp_path / "out.mp4"
    code, stdout, err = run(capsys, "render", "--avatar", str(astronaut), "--text", TEXT, "-o", str(out), "--seed", "1")
    assert code == 0, err
    assert "wrote" in stdout
    vdur, adur = probe_durations(out)
    assert abs(vdur - adur) <= 1 / 25
    assert 1.5 < vdur < 6.0
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 0.01  # it speaks
    assert frames[0].shape[:2] == (512, 512)
    diffs = [float(np.abs(frames[i].astype(int) - frames[0].astype(int)).mean()) for i in range(len(frames))]
    assert max(diffs) > 0.05  # the face moves while speaking
    assert leftovers(tmp_path) == ["out.mp4"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not a private temp file


def test_other_frame_rates_stay_in_sync_without_padding(tmp_path, cache, capsys, astronaut):
    out = tmp_path / "f24.mp4"
    argv = ["render", "--avatar", str(astronaut), "--text", "Hello there.", "-o", str(out), "--fps", "24"]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    vdur, adur = probe_durations(out)
    assert abs(vdur - adur) <= 1 / 24
    assert vdur < 2.5  # speech (~1 s) + lead-in + tail: no seconds of padding


def test_render_audio_file(tmp_path, cache, capsys, astronaut, speech_wav):
    out = tmp_path / "a.mp4"
    code, _, err = run(capsys, "render", "--avatar", str(astronaut), "--audio", str(speech_wav), "-o", str(out))
    assert code == 0, err
    vdur, adur = probe_durations(out)
    assert abs(vdur - adur) <= 1 / 25
    assert vdur > 2.8  # the whole 2.9 s recording plus lead-in and tail


def _two_faces(tmp_path: Path, astronaut: Path) -> Path:
    img = cv2.imread(str(astronaut))
    small = cv2.resize(img, (410, 410))
    canvas = np.full((512, 512 + 410, 3), 128, np.uint8)
    canvas[:, :512] = img
    canvas[51:461, 512:] = small
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), canvas)
    return path


def test_several_faces_picks_largest_and_says_so(tmp_path, cache, capsys, astronaut):
    code, _, err = run(capsys, "prepare", "--avatar", str(_two_faces(tmp_path, astronaut)))
    assert code == 0, err
    assert "2 faces" in err and "--face-index" in err


def corrupt_png(tmp_path: Path) -> Path:
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    return p


def corrupt_audio(tmp_path: Path) -> Path:
    p = tmp_path / "broken.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4)
    return p


def empty_wav(tmp_path: Path) -> Path:
    from core.audio import write_wav

    p = tmp_path / "empty.wav"
    write_wav(p, np.zeros(0, np.int16), 16000)
    return p


BAD = [
    ("missing avatar", lambda t, a: ["--avatar", str(t / "nope.png"), "--text", TEXT], "avatar file not found"),
    ("corrupted image", lambda t, a: ["--avatar", str(corrupt_png(t)), "--text", TEXT], "broken.png"),
    ("no face", lambda t, a: ["--avatar", str(CAT), "--text", TEXT], "no face"),
    ("empty text", lambda t, a: ["--avatar", str(a), "--text", "  \n "], "nothing to say"),
    ("emoji only", lambda t, a: ["--avatar", str(a), "--text", "🙂🙂"], "nothing to say"),
    ("unknown voice", lambda t, a: ["--avatar", str(a), "--text", TEXT, "--voice", "en_US-joe-mediun"], "voice"),
    ("missing audio", lambda t, a: ["--avatar", str(a), "--audio", str(t / "nope.wav")], "audio file not found"),
    ("corrupted audio", lambda t, a: ["--avatar", str(a), "--audio", str(corrupt_audio(t))], "broken.wav"),
    ("zero-length audio", lambda t, a: ["--avatar", str(a), "--audio", str(empty_wav(t))], "no audio"),
    ("missing script", lambda t, a: ["--avatar", str(a), "--script", str(t / "nope.md")], "script file not found"),
    ("face index", lambda t, a: ["--avatar", str(a), "--text", TEXT, "--face-index", "3"], "face"),
    ("gpu engine", lambda t, a: ["--avatar", str(a), "--text", TEXT, "--engine", "musetalk"], "musetalk.weights_dir"),
]


@pytest.mark.parametrize(("name", "argv", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2(tmp_path, cache, capsys, astronaut, name, argv, message):
    out = tmp_path / "out.mp4"
    code, _, err = run(capsys, "render", *argv(tmp_path, astronaut), "-o", str(out))
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("target", "message"),
    [("missing-dir/out.mp4", "does not exist"), (".", "is a directory"), ("out.avi", "must end in .mp4")],
)
def test_unwritable_output(tmp_path, cache, capsys, astronaut, target, message):
    code, _, err = run(capsys, "render", "--avatar", str(astronaut), "--text", TEXT, "-o", str(tmp_path / target))
    assert code == 2 and message in err


def test_failed_render_leaves_no_file(tmp_path, cache, astronaut, speech_wav, monkeypatch):
    """A render that breaks half-way (the renderer fails on frame 30) leaves neither the output nor a temp file."""
    from agent import cli
    from avatar.realtime import RealtimeRenderer

    real = RealtimeRenderer.render_next
    calls = {"n": 0}

    def failing(self):
        calls["n"] += 1
        if calls["n"] == 30:
            raise OSError("disk full")
        return real(self)

    monkeypatch.setattr(RealtimeRenderer, "render_next", failing)
    out = tmp_path / "out.mp4"
    assert cli.main(["render", "--avatar", str(astronaut), "--audio", str(speech_wav), "-o", str(out)]) == 1
    assert calls["n"] == 30
    assert leftovers(tmp_path) == []


def test_console_script_exit_status_and_no_traceback(tmp_path):
    exe = shutil.which("digital-human", path=str(Path(sys.executable).parent))
    assert exe, "the console script is installed with the package"
    proc = subprocess.run(
        [exe, "render", "--avatar", str(tmp_path / "none.jpg"), "--text", TEXT, "-o", str(tmp_path / "o.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: avatar file not found: {tmp_path / 'none.jpg'}"]


def test_ctrl_c_mid_render_exits_cleanly(tmp_path):
    """Ctrl-C while frames are being encoded: 'interrupted', exit 130, no partial file, no crash."""
    exe = shutil.which("digital-human", path=str(Path(sys.executable).parent))
    out = tmp_path / "long.mp4"
    text = "This reply is long enough to be interrupted while it is being recorded. " * 12
    proc = subprocess.Popen(
        # 1080p output: encoding dominates, so the interrupt lands while a worker thread is encoding.
        [exe, "render", "--text", text, "-o", str(out), "--size", "1920x1080"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DH_AVATAR__CACHE_DIR": str(tmp_path / "cache")},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not any(".part" in p.name for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the recording has started
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert leftovers(tmp_path) == []
