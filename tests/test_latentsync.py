"""The LatentSync runner and job pipeline against `latentsync_standin.py`.

Contract tests: LatentSync needs a GPU and weights this machine lacks, so a stand-in honouring its CLI contract
(arguments, working directory, `./temp` wiped, tqdm progress, output file, exit codes, hangs) is run as a real
external process. Everything around it is real: the avatar, the CPU renderer's template, PyAV muxing, process
groups, signals.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from latentsync_helpers import group_gone, latentsync_section, make_checkout, recorded_pids, wait_for

from agent.latentsync_job import JobCancelled, JobContext, JobSpec, run_job
from avatar import latentsync as ls
from core.config import LatentSyncConfig, load_config
from core.errors import UserError
from streaming.recording import probe_durations


@pytest.fixture(scope="module")
def avatar_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("avatars")


def spec_for(cache: Path, avatar: Path, audio: Path, **latentsync: object) -> JobSpec:
    cfg = load_config(
        overrides={"avatar": {"cache_dir": str(cache)}, "tts": {"engine": "espeak"}, "latentsync": latentsync},
        environ={},
    )
    return JobSpec.build(cfg, avatar, audio=str(audio), seed=1)


def context(tmp_path: Path, cancel: threading.Event | None = None) -> tuple[JobContext, list[tuple[str, float]]]:
    reports: list[tuple[str, float]] = []
    work = tmp_path / "work"
    work.mkdir()
    ctx = JobContext(work, tmp_path / "locks", cancel or threading.Event(), lambda s, p: reports.append((s, p)))
    return ctx, reports


def test_a_reply_runs_through_latentsync_in_a_private_view_of_the_checkout(
    tmp_path, avatar_cache, astronaut, speech_wav
):
    calls, pids = tmp_path / "calls.jsonl", tmp_path / "pids.jsonl"
    checkout = make_checkout(tmp_path, mode="ok", step_s=0.002, record=str(calls), pids=str(pids))
    spec = spec_for(avatar_cache, astronaut, speech_wav, **latentsync_section(checkout, steps=7, seed=3))
    ctx, reports = context(tmp_path)
    out = tmp_path / "reply.mp4"

    outcome = run_job(spec, out, ctx)

    assert outcome.engine == "latentsync" and outcome.notices == []
    call = json.loads(calls.read_text())
    argv = call["argv"]
    assert argv[argv.index("--unet_config_path") + 1] == "configs/unet/stage2.yaml"
    assert argv[argv.index("--inference_ckpt_path") + 1] == "checkpoints/latentsync_unet.pt"
    assert argv[argv.index("--inference_steps") + 1] == "7"
    assert argv[argv.index("--guidance_scale") + 1] == "1.5"
    assert argv[argv.index("--seed") + 1] == "3"
    assert "--enable_deepcache" not in argv
    assert call["cwd"] == str(ctx.workdir / "checkout")  # not the checkout itself: its ./temp is wiped
    assert (checkout / "temp" / "users-file.txt").read_text() == "keep me"
    assert group_gone(recorded_pids(pids))

    with av.open(str(out)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert (video.codec_context.width, video.codec_context.height) == (512, 512)
        assert video.average_rate == 25
        assert audio.codec_context.name == "aac" and audio.rate == 24000  # our audio, not LatentSync's 16 kHz
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    vdur, adur = probe_durations(out)
    speech = av.open(str(speech_wav)).streams.audio[0]
    assert abs(adur - (float(speech.duration * speech.time_base) + 0.5)) < 0.05  # lead-in 0.2 s + tail 0.3 s
    assert abs(vdur - adur) <= 1 / 25
    mouth = [int(f[341:349, 200:300].mean()) for f in frames]  # the stand-in paints loudness there
    assert max(mouth) > min(mouth) + 5

    stages = [s for s, _ in reports]
    assert stages[0] == "speech" and stages[-1] == "done"
    shares = [p for s, p in reports if s == "model"]
    assert len(shares) > 5 and shares == sorted(shares) and shares[-1] == pytest.approx(0.95)
    assert set(outcome.timings) >= {"speech_s", "template_s", "model_s", "mux_s", "total_s"}
    assert not list(out.parent.glob("*.part"))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("oom", "LatentSync failed (exit status 1): OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
        ("no_output", "LatentSync exited without writing its video (its output is in the job's log)"),
    ],
)
def test_a_failing_run_falls_back_to_the_cpu_renderer_with_one_line(
    tmp_path, avatar_cache, astronaut, speech_wav, mode, expected
):
    checkout = make_checkout(tmp_path, mode=mode)
    ctx, _ = context(tmp_path)
    out = tmp_path / "reply.mp4"
    outcome = run_job(spec_for(avatar_cache, astronaut, speech_wav, **latentsync_section(checkout)), out, ctx)
    assert outcome.engine == "realtime"
    assert outcome.notices == [f"{expected}; this video was drawn by the CPU renderer instead (latentsync.fallback)"]
    vdur, adur = probe_durations(out)
    assert abs(vdur - adur) <= 1 / 25 and adur > 1.0

    (tmp_path / "again").mkdir()
    ctx, _ = context(tmp_path / "again")
    strict = spec_for(avatar_cache, astronaut, speech_wav, **latentsync_section(checkout, fallback=False))
    with pytest.raises(UserError, match="^" + re.escape(expected) + "$"):
        run_job(strict, tmp_path / "strict.mp4", ctx)
    assert not (tmp_path / "strict.mp4").exists()


def test_a_face_missing_from_a_frame_is_latentsyncs_error_verbatim(tmp_path):
    """The template is ours: a blank frame would fail the whole job, as it does in LatentSync."""
    checkout = make_checkout(tmp_path, mode="ok")
    video = tmp_path / "blank.mp4"
    with av.open(str(video), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="bgr24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    audio = tmp_path / "a.wav"
    from core.audio import write_wav

    write_wav(audio, np.full(2400, 1000, np.int16), 24000)
    cfg = LatentSyncConfig(**latentsync_section(checkout))
    view = ls.private_checkout(checkout, tmp_path / "job")
    argv = ls.inference_command(cfg, Path(cfg.python), video, audio, tmp_path / "o.mp4")
    with pytest.raises(
        ls.LatentSyncFailed, match=r"^LatentSync failed \(exit status 1\): RuntimeError: Face not detected$"
    ):
        ls.run_inference(
            argv, view, timeout_s=600, cancel=threading.Event(), on_progress=lambda s: None, log_path=tmp_path / "l.log"
        )


def test_a_hung_run_times_out_and_its_whole_process_group_is_killed(tmp_path, avatar_cache, astronaut, speech_wav):
    """The timeout is 1 s of a run that never ends: no load can make it pass or fail wrongly."""
    pids = tmp_path / "pids.jsonl"
    checkout = make_checkout(tmp_path, mode="hang", pids=str(pids))
    ctx, _ = context(tmp_path)
    spec = spec_for(avatar_cache, astronaut, speech_wav, **latentsync_section(checkout, timeout_s=1.0, fallback=False))
    with pytest.raises(UserError, match=r"^LatentSync did not finish within 1 s \(latentsync\.timeout_s\)$"):
        run_job(spec, tmp_path / "reply.mp4", ctx)
    assert len(recorded_pids(pids)) == 2  # the stand-in and its child
    assert group_gone(recorded_pids(pids))


def test_cancelling_kills_the_whole_process_group(tmp_path, avatar_cache, astronaut, speech_wav):
    pids = tmp_path / "pids.jsonl"
    checkout = make_checkout(tmp_path, mode="hang", pids=str(pids))
    cancel = threading.Event()
    ctx, _ = context(tmp_path, cancel)
    groups: list[int | None] = []
    ctx.on_pgid = groups.append
    spec = spec_for(avatar_cache, astronaut, speech_wav, **latentsync_section(checkout))
    failure: list[BaseException] = []

    def job() -> None:
        try:
            run_job(spec, tmp_path / "reply.mp4", ctx)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=job)
    worker.start()
    wait_for(lambda: len(recorded_pids(pids)) == 2, what="the stand-in and its child to start")
    cancel.set()
    worker.join(120)
    assert isinstance(failure[0], JobCancelled)
    assert groups[0] == recorded_pids(pids)[0] and groups[-1] is None
    assert group_gone(recorded_pids(pids))
    assert not (tmp_path / "reply.mp4").exists()


def test_one_job_at_a_time_per_checkout(tmp_path):
    """A second holder waits for the lock (and says so once), and gives up when cancelled instead of waiting forever."""
    cancelled, busy = threading.Event(), threading.Event()
    outcome: list[str] = []

    def second_holder() -> None:
        try:
            with ls.checkout_lock(tmp_path / "co", tmp_path / "locks", cancelled.is_set, busy.set):
                outcome.append("got the lock")
        except ls.LatentSyncCancelled:
            outcome.append("cancelled")

    with ls.checkout_lock(tmp_path / "co", tmp_path / "locks", lambda: False):
        waiting = threading.Thread(target=second_holder)
        waiting.start()
        assert busy.wait(60)
        cancelled.set()
        waiting.join(60)
    assert outcome == ["cancelled"]
    with ls.checkout_lock(tmp_path / "co", tmp_path / "locks", lambda: False):
        pass  # released by every holder


def test_an_incomplete_installation_is_named_in_one_line(tmp_path):
    checkout = make_checkout(tmp_path)
    good = latentsync_section(checkout)
    cases = [
        ({}, "LatentSync is not set up: set latentsync.checkout (DH_LATENTSYNC__CHECKOUT)"),
        ({**good, "checkout": str(tmp_path)}, f"{tmp_path} is not a LatentSync checkout (no scripts/inference.py)"),
        ({**good, "python": None}, "LatentSync's Python is not set"),
        ({**good, "python": str(tmp_path)}, f"LatentSync's Python is not an executable file: {tmp_path}"),
        ({**good, "python": ".venv/bin/python"}, f"LatentSync's Python is not an executable file: {checkout}/.venv"),
        ({**good, "checkpoint": "checkpoints/x.pt"}, f"LatentSync checkpoint not found: {checkout}/checkpoints/x.pt"),
        ({**good, "unet_config": "configs/unet/stage2_512.yaml"}, "LatentSync UNet config not found"),
    ]
    for section, message in cases:
        with pytest.raises(ls.LatentSyncUnavailable) as info:
            ls.check_installation(LatentSyncConfig(**section))
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert ls.check_installation(LatentSyncConfig(**good)).checkout == checkout.resolve()
    assert ls.check_installation(LatentSyncConfig(**{**good, "python": "python3"})).python.is_absolute()


def test_missing_installation_falls_back_at_once_to_what_render_would_make(tmp_path, avatar_cache, astronaut):
    """Text is spoken once, by the CPU path itself, so its mouth follows the voice's visemes as in `render`. The
    server's live engine (here MuseTalk, with no weights) plays no part in a recording."""
    ctx, reports = context(tmp_path)
    cfg = load_config(
        overrides={
            "avatar": {"cache_dir": str(avatar_cache)},
            "tts": {"engine": "espeak"},
            "renderer": {"engine": "musetalk"},
        },
        environ={},
    )
    spec = JobSpec.build(cfg, astronaut, paragraphs=[["Hello there."], ["Bye."]], seed=1)
    outcome = run_job(spec, tmp_path / "r.mp4", ctx)
    assert outcome.engine == "realtime"
    assert outcome.notices == [
        "LatentSync is not set up: set latentsync.checkout (DH_LATENTSYNC__CHECKOUT); "
        "this video was drawn by the CPU renderer instead (latentsync.fallback)"
    ]
    assert [s for s, _ in reports] == ["fallback"]
    vdur, adur = probe_durations(tmp_path / "r.mp4")
    assert abs(vdur - adur) <= 1 / 25 and adur > 1.0


def test_progress_is_read_from_latentsyncs_tqdm_bars():
    from tqdm import tqdm

    class Lines:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    sink = Lines()
    for _ in tqdm(range(2), desc="Doing inference...", file=sink, mininterval=0):
        with tqdm(total=4, desc="Sample frames: 16", file=sink, mininterval=0) as bar:
            for _ in range(4):
                bar.update()
    parser = ls.ProgressParser()
    shares = [s for line in sink.text.replace("\r", "\n").splitlines() if (s := parser.feed(line)) is not None]
    assert shares[0] == 0.0 and shares[-1] == 1.0
    assert 0.5 in shares and shares == sorted(shares)
    assert parser.feed("Affine transforming 40 faces...") is None
    assert parser.feed("100%|██████████| 40/40 [00:01<00:00, 30.0it/s]") is None


def test_a_video_avatars_template_is_its_own_loop(tmp_path, avatar_cache, astronaut, speech_wav):
    """LatentSync needs a face in every frame: for a video avatar that is the clip itself, played as its idle loop."""
    import cv2

    clip = tmp_path / "presenter.mp4"
    image = cv2.imread(str(astronaut))
    originals = []
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 512, 512, "yuv420p"
        for i in range(50):
            shift = np.float32([[1, 0, 12 * np.sin(2 * np.pi * i / 50)], [0, 1, 0]])
            moved = cv2.warpAffine(image, shift, (512, 512), borderMode=cv2.BORDER_REFLECT)
            originals.append(moved)
            for packet in stream.encode(av.VideoFrame.from_ndarray(moved, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    checkout = make_checkout(tmp_path, mode="ok")
    ctx, _ = context(tmp_path)
    outcome = run_job(spec_for(avatar_cache, clip, speech_wav, **latentsync_section(checkout)), tmp_path / "r.mp4", ctx)
    assert outcome.engine == "latentsync"
    with av.open(str(ctx.workdir / "template.mp4")) as c:
        template = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

    for i in (5, 12, 20):  # the clip's motion, frame by frame, not a still: nearer its own frame than a later one
        assert distance(template[i], originals[i]) < distance(template[i], originals[i + 20])
