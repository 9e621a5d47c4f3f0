"""The MuseTalk engine on the CPU with tiny random-initialised networks (tests/musetalk_tiny.py).

These are CONTRACT tests of our integration, not quality tests: the networks are the published classes in the
official file layout, loaded by the engine's real code, but random and tiny, so their faces are noise. What is
tested is everything around them: weights checking, the audio window and its incremental computation, the
preparation cache, and the `Renderer` contract (exact audio per frame, render-ahead batches, interruption).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from musetalk_tiny import build_tiny_weights
from scipy.signal import resample_poly

from agent.renderers import create_renderer, prepare
from avatar.musetalk import weights as mw
from avatar.musetalk.audio import HOP, WINDOW, WINDOW_BEFORE, StreamingFeatures
from avatar.musetalk.networks import MuseTalkNetworks, load_networks
from avatar.musetalk.prepare import MuseTalkAvatar
from avatar.musetalk.renderer import MuseTalkRenderer
from core.audio import read_audio_file
from core.config import Config, load_config
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, Frame

SR = CANONICAL_SAMPLE_RATE
FPS = 25
SPF = SR // FPS
CAT = Path(__file__).parent / "data" / "images" / "cat.png"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """On this shared, loaded 2-core machine torch's two spinning worker threads made every pass ~10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_weights(tmp_path_factory.mktemp("musetalk") / "weights")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def config(weights: Path | None, cache: Path, **renderer: object) -> Config:
    """A MuseTalk config on the CPU (these tests compare frames exactly); liveliness 0 (one template frame: the
    photo) unless told, to keep preparation short."""
    return load_config(
        overrides={
            "renderer": {"engine": "musetalk", "liveliness": 0, **renderer},
            "musetalk": {"weights_dir": str(weights) if weights else None, "batch_size": 4, "device": "cpu"},
            "avatar": {"cache_dir": str(cache)},
        },
        environ={},
    )


@pytest.fixture(scope="module")
def networks(weights_dir: Path) -> MuseTalkNetworks:
    return load_networks(mw.locate(weights_dir), "cpu", fp16=True)


@pytest.fixture(scope="module")
def avatar(weights_dir: Path, cache_dir: Path, astronaut: Path) -> MuseTalkAvatar:
    prepared, _ = prepare(config(weights_dir, cache_dir), astronaut)
    assert isinstance(prepared, MuseTalkAvatar)
    return prepared


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> np.ndarray:
    return read_audio_file(speech_wav, SR)[: int(1.7 * SR)]


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Steady noise loud enough that Whisper's log-mel floor (max - 8) clips nothing, so features stay local."""
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 3000).astype(np.int16)


# --- weights -------------------------------------------------------------------------------------------------


def test_networks_are_the_published_classes_on_the_cpu(networks: MuseTalkNetworks) -> None:
    assert type(networks.unet).__name__ == "UNet2DConditionModel"
    assert type(networks.vae).__name__ == "AutoencoderKL"
    assert type(networks.whisper).__name__ == "WhisperEncoder"
    assert networks.device == "cpu" and str(networks.dtype) == "torch.float32"  # fp16 applies on CUDA only
    assert networks.audio_layers == 3 and networks.audio_dim == 16


@pytest.mark.parametrize(
    "missing",
    [
        "musetalkV15/unet.pth",
        "musetalkV15/musetalk.json",
        "sd-vae/config.json",
        "sd-vae/diffusion_pytorch_model.safetensors",
        "whisper/preprocessor_config.json",
        "whisper/model.safetensors",
    ],
)
def test_a_missing_weight_file_is_named(weights_dir: Path, tmp_path: Path, missing: str) -> None:
    import shutil

    copy = Path(shutil.copytree(weights_dir, tmp_path / "w"))
    (copy / missing).unlink()
    with pytest.raises(UserError) as error:
        mw.locate(copy)
    message = str(error.value)
    assert missing.split("/")[0] in message and "\n" not in message
    assert "huggingface.co" in message


def test_missing_folder_and_unset_folder_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"musetalk\.weights_dir"):
        mw.locate(None)
    with pytest.raises(UserError, match="does not exist"):
        mw.locate(tmp_path / "nowhere")


def test_a_state_dict_for_another_config_is_refused(weights_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    copy = Path(shutil.copytree(weights_dir, tmp_path / "w"))
    config_path = copy / "musetalkV15" / "musetalk.json"
    cfg = json.loads(config_path.read_text())
    cfg["block_out_channels"] = [16, 48]  # the published weights' file next to a different config
    config_path.write_text(json.dumps(cfg))
    with pytest.raises(UserError, match=r"unet\.pth does not match musetalk\.json .* of another shape"):
        load_networks(mw.locate(copy))


def _whisper_file(folder: Path, **change: object) -> Path:
    from musetalk_tiny import TINY_WHISPER
    from transformers import WhisperConfig, WhisperModel

    WhisperModel(WhisperConfig(**{**TINY_WHISPER, **change})).save_pretrained(folder)
    return folder / "model.safetensors"


def _vae_without_decoder_middle(folder: Path) -> Path:
    from diffusers import AutoencoderKL
    from musetalk_tiny import TINY_VAE
    from safetensors.torch import save_file

    state = {k: v for k, v in AutoencoderKL(**TINY_VAE).state_dict().items() if "decoder.mid_block" not in k}
    save_file(state, folder / "vae.safetensors")
    return folder / "vae.safetensors"


DAMAGE = {
    "whisper with fewer layers": (
        "whisper/model.safetensors",
        lambda t: _whisper_file(t, encoder_layers=1),
        "whisper does not match",
    ),
    "whisper of another width": (
        "whisper/model.safetensors",
        lambda t: _whisper_file(t, d_model=32, encoder_ffn_dim=64),
        "whisper does not match",
    ),
    "truncated whisper": ("whisper/model.safetensors", None, "whisper is not a usable whisper-tiny"),
    "truncated vae": ("sd-vae/diffusion_pytorch_model.safetensors", None, "sd-vae is not a usable sd-vae-ft-mse"),
    "vae missing tensors": (
        "sd-vae/diffusion_pytorch_model.safetensors",
        _vae_without_decoder_middle,
        "sd-vae does not match",
    ),
    "truncated unet": ("musetalkV15/unet.pth", None, "unet.pth cannot be read as a PyTorch state dict"),
}


@pytest.mark.parametrize("case", DAMAGE, ids=list(DAMAGE))
def test_damaged_weights_are_one_line(weights_dir: Path, tmp_path: Path, case: str) -> None:
    import shutil

    target, make, message = DAMAGE[case]
    copy = Path(shutil.copytree(weights_dir, tmp_path / "w"))
    if make is None:
        (copy / target).write_bytes((copy / target).read_bytes()[:100])
    else:
        (tmp_path / "other").mkdir()
        shutil.copy(make(tmp_path / "other"), copy / target)
    with pytest.raises(UserError) as error:
        load_networks(mw.locate(copy))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_weights_are_checked_before_the_avatar(weights_dir: Path, tmp_path: Path) -> None:
    """Broken weights are reported first, not after the avatar's preparation (here: a photo without a face)."""
    import shutil

    copy = Path(shutil.copytree(weights_dir, tmp_path / "w"))
    (copy / "musetalkV15/unet.pth").write_bytes(b"\0" * 64)
    with pytest.raises(UserError, match=r"unet\.pth cannot be read"):
        prepare(config(copy, tmp_path / "cache"), CAT)


def test_cuda_without_a_gpu_is_one_line() -> None:
    import torch

    from avatar.musetalk.networks import pick_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="sees no CUDA GPU"):
        pick_device("cuda")
    assert pick_device("auto") == "cpu"


def test_without_torch_the_engine_asks_for_make_neural(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default install has no torch; simulated here by hiding it from the import system's lookup."""
    real = mw.importlib.util.find_spec
    monkeypatch.setattr(mw.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    with pytest.raises(UserError, match=r"needs torch.*make neural"):
        mw.require_torch()


def test_cli_reports_a_broken_weights_folder_in_one_line(
    weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], astronaut: Path, monkeypatch
) -> None:
    from agent.cli import main

    monkeypatch.setenv("DH_MUSETALK__WEIGHTS_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out.mp4"
    code = main(["render", "--engine", "musetalk", "--avatar", str(astronaut), "--text", "Hi.", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "unet.pth is missing" in lines[0]
    assert not out.exists()


def test_no_face_is_the_cpu_renderers_error(weights_dir: Path, tmp_path: Path) -> None:
    messages = []
    for engine in ("realtime", "musetalk"):
        with pytest.raises(UserError) as error:
            prepare(config(weights_dir, tmp_path, engine=engine), CAT)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "no face" in messages[0]


def test_latentsync_is_refused_for_live_video(tmp_path: Path, avatar: MuseTalkAvatar) -> None:
    cfg = config(None, tmp_path, engine="latentsync")
    with pytest.raises(UserError, match="recorded replies only"):
        create_renderer(cfg, avatar.base)


# --- audio ---------------------------------------------------------------------------------------------------


def test_tokens_equal_musetalks_whole_clip_computation(networks: MuseTalkNetworks) -> None:
    """For a clip shorter than a block, our tokens are exactly upstream's: Whisper on the clip padded to 30 s, all
    hidden states, 4 zero frames in front, then 10 frames per video frame starting at frame 2f."""
    clip = noise(0.9)
    states = networks.whisper_states(resample_poly(clip.astype(np.float32) / 32768.0, 2, 3).astype(np.float32))
    valid = -(-len(clip) // HOP)
    states[valid:] = 0.0
    padded = np.concatenate([np.zeros((WINDOW_BEFORE, *states.shape[1:]), np.float32), states])
    features = StreamingFeatures(networks.whisper_states, networks.audio_layers, networks.audio_dim)
    features.append(clip)
    frames = range(0, 23)
    ours = features.tokens(frames, FPS)
    assert ours.shape == (23, WINDOW * networks.audio_layers, networks.audio_dim)
    for f in frames:
        expected = padded[2 * f : 2 * f + WINDOW].reshape(-1, networks.audio_dim)
        np.testing.assert_allclose(ours[f], expected, atol=2e-4)  # float rounding; a slip of a frame is ~1


def test_an_impulse_reaches_the_frames_of_the_documented_window(networks: MuseTalkNetworks) -> None:
    """A click at 1.000 s changes the first hidden state (local: Whisper's convolutions) only in the tokens of the
    Whisper frames around it, and it is seen by the frames starting 120 ms before it to 80 ms after it (plus, weakly,
    the frame just before, through the neighbouring Whisper frame that the STFT and convolutions smear it into)."""
    base = noise(2.0)
    click = base.copy()
    click[SR : SR + 24] = 30000
    tokens = []
    for audio in (base, click):
        features = StreamingFeatures(networks.whisper_states, networks.audio_layers, networks.audio_dim)
        features.append(audio)
        tokens.append(features.tokens(range(50), FPS))
    layers = networks.audio_layers
    first_state = np.abs(tokens[1] - tokens[0])[:, 0::layers].max(axis=2)  # (frames, 10 window slots)
    strong = first_state.max() * 0.3
    seeing = [f for f in range(50) if first_state[f].max() > strong]
    # Frame f's window is Whisper frames 2f-4 ... 2f+5 (-80 ... +120 ms); the click is Whisper frame 50.
    assert seeing == [22, 23, 24, 25, 26, 27]
    for f in seeing[1:]:
        assert 2 * f - WINDOW_BEFORE + int(first_state[f].argmax()) == 50
    assert int(first_state[22].argmax()) == WINDOW - 1 and first_state[22].max() < first_state[23].max()


def test_incremental_features_equal_the_whole_clip(networks: MuseTalkNetworks) -> None:
    """Audio arriving in odd-sized chunks, with tokens asked for as soon as a frame has its audio (so blocks are
    first computed provisionally and again later), ends with exactly the tokens of the clip given at once."""
    audio = noise(3.3, seed=1)
    whole = StreamingFeatures(networks.whisper_states, networks.audio_layers, networks.audio_dim)
    whole.append(audio)
    frames = range(len(audio) // SPF)
    expected = whole.tokens(frames, FPS)
    assert whole.encoded_blocks == 4

    live = StreamingFeatures(networks.whisper_states, networks.audio_layers, networks.audio_dim)
    rng = np.random.default_rng(2)
    fed, asked, got = 0, 0, {}
    while fed < len(audio):
        size = int(rng.integers(500, 20000))
        live.append(audio[fed : fed + size])
        fed += size
        while asked < len(frames) and (asked + 1) * SPF <= fed:
            got[asked] = live.tokens(range(asked, asked + 1), FPS)[0]
            asked += 1
    final = live.tokens(frames, FPS)
    np.testing.assert_array_equal(final, expected)
    assert live.encoded_blocks > 4  # some blocks really were computed early, then again with their whole window
    early = np.array([got[f] for f in frames])
    assert not np.array_equal(early, expected)


def test_old_audio_is_dropped_on_a_long_timeline(networks: MuseTalkNetworks) -> None:
    features = StreamingFeatures(networks.whisper_states, networks.audio_layers, networks.audio_dim)
    features.append(noise(6.0))
    features.tokens(range(140, 141), FPS)
    features.drop_before(140, FPS)
    assert features._offset == 4 * SR and len(features._blocks) == 1  # blocks 5 (needed) on, context 1 s before
    np.testing.assert_array_equal(features.tokens(range(140, 141), FPS), features.tokens(range(140, 141), FPS))


# --- preparation ---------------------------------------------------------------------------------------------


def test_preparation_shapes(avatar: MuseTalkAvatar) -> None:
    assert (
        avatar.boxes.shape == (1, 4) and avatar.inputs.shape == (1, 8, 32, 32) and avatar.masks.shape == (1, 256, 256)
    )
    x0, y0, x1, y1 = avatar.boxes[0]
    xy = avatar.base.points[:, :2]
    assert x0 <= xy[:, 0].min() + 1 and x1 >= xy[:, 0].max() - 1 and y1 >= xy[:, 1].max() + 9
    mask = avatar.masks[0]
    assert mask[0].max() == 0 and mask[-1].max() == 0 and mask[:, 0].max() == 0 and mask[:, -1].max() == 0
    mouth = np.round((xy[13] - (x0, y0)) * 256 / (x1 - x0, y1 - y0)).astype(int)
    eye = np.round((xy[33] - (x0, y0)) * 256 / (x1 - x0, y1 - y0)).astype(int)
    assert mask[mouth[1], mouth[0]] > 200 and mask[max(eye[1], 0), eye[0]] == 0
    assert not np.array_equal(avatar.inputs[0, :4], avatar.inputs[0, 4:])  # the masked half differs


def test_second_preparation_comes_from_the_cache(
    weights_dir: Path, cache_dir: Path, astronaut: Path, avatar: MuseTalkAvatar, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(MuseTalkNetworks, "encode", lambda self, *a, **k: calls.append(1))
    again, _ = prepare(config(weights_dir, cache_dir), astronaut)
    assert isinstance(again, MuseTalkAvatar) and again.from_cache and calls == []
    np.testing.assert_array_equal(again.inputs, avatar.inputs)
    assert again.cache_path == avatar.cache_path and again.cache_path is not None


def test_changed_vae_weights_invalidate_the_cache(
    weights_dir: Path, tmp_path: Path, astronaut: Path, avatar: MuseTalkAvatar
) -> None:
    import shutil

    copy = Path(shutil.copytree(weights_dir, tmp_path / "w"))
    cache = tmp_path / "cache"
    first, _ = prepare(config(copy, cache), astronaut)
    build_tiny_weights(tmp_path / "other", seed=7)
    shutil.copy(tmp_path / "other/sd-vae/diffusion_pytorch_model.safetensors", copy / "sd-vae")
    second, _ = prepare(config(copy, cache), astronaut)
    assert isinstance(first, MuseTalkAvatar) and isinstance(second, MuseTalkAvatar)
    assert not second.from_cache and second.cache_path != first.cache_path
    assert not np.array_equal(first.inputs, second.inputs)


# --- the renderer --------------------------------------------------------------------------------------------


def renderer(avatar: MuseTalkAvatar, batch_size: int = 4) -> MuseTalkRenderer:
    return MuseTalkRenderer(avatar, fps=FPS, batch_size=batch_size)


def test_chunks_become_frames_with_exactly_their_audio(avatar: MuseTalkAvatar, speech: np.ndarray) -> None:
    r = renderer(avatar)
    idle = r.render_next()
    assert not idle.speaking and np.array_equal(idle.image, avatar.base.image) and not idle.audio.any()
    for chunk in np.array_split(speech, 5):
        r.feed(chunk)
    assert r.queued_samples == len(speech)
    frames = []
    while r.queued_samples:
        frames.append(r.render_next())
    expected = -(-len(speech) // SPF)
    assert len(frames) == expected and all(f.speaking for f in frames)
    assert [f.index for f in frames] == list(range(1, expected + 1))
    audio = np.concatenate([f.audio for f in frames])
    assert all(len(f.audio) == SPF for f in frames)
    np.testing.assert_array_equal(audio[: len(speech)], speech)
    assert not audio[len(speech) :].any()
    assert r.batches == -(-expected // 4)
    x0, y0, x1, y1 = avatar.boxes[0]
    for f in frames:
        assert f.image.shape == (*avatar.base.image.shape[:2], 3)
        outside = f.image.copy()
        outside[y0:y1, x0:x1] = avatar.base.image[y0:y1, x0:x1]
        assert np.array_equal(outside, avatar.base.image)  # only the face box is ever touched
        assert not np.array_equal(f.image[y0:y1, x0:x1], avatar.base.image[y0:y1, x0:x1])
    after = r.render_next()
    assert not after.speaking and np.array_equal(after.image, avatar.base.image)


def test_chunked_feeding_draws_the_same_frames_as_one_feed(avatar: MuseTalkAvatar, speech: np.ndarray) -> None:
    """Render-ahead with audio trickling in (a frame's whole window is there before it is drawn) gives the frames
    the whole clip gives."""
    whole = renderer(avatar)
    whole.feed(speech)
    expected = [whole.render_next().image for _ in range(20)]
    live = renderer(avatar)
    lead = 40 * SPF  # enough for the first block's whole window (1.5 s) before the first batch is drawn
    live.feed(speech[:lead])
    fed, drawn = lead, []
    for _ in range(20):
        drawn.append(live.render_next().image)
        if fed < len(speech):
            live.feed(speech[fed : fed + SPF])
            fed += SPF
    for a, b in zip(drawn, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_size_sets_the_network_passes(avatar: MuseTalkAvatar, speech: np.ndarray) -> None:
    r = renderer(avatar, batch_size=1)
    r.feed(speech[: 10 * SPF])
    for _ in range(10):
        r.render_next()
    assert r.batches == 10


def test_reset_drops_queued_audio_and_the_next_frame_is_idle(avatar: MuseTalkAvatar, speech: np.ndarray) -> None:
    r = renderer(avatar)
    r.feed(speech)
    for _ in range(3):
        assert r.render_next().speaking
    r.reset()
    assert r.queued_samples == 0
    frame = r.render_next()
    assert not frame.speaking and not frame.audio.any() and np.array_equal(frame.image, avatar.base.image)
    r.feed(speech[: 2 * SPF])
    assert [r.render_next().speaking for _ in range(3)] == [True, True, False]


def test_an_interrupt_during_a_batch_throws_the_batch_away(
    avatar: MuseTalkAvatar, speech: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network pass runs outside the renderer's lock; a reset arriving during it wins."""
    r = renderer(avatar)
    real = MuseTalkNetworks.generate

    def interrupted(self: MuseTalkNetworks, inputs: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        r.reset()
        return real(self, inputs, tokens)

    r.feed(speech)
    monkeypatch.setattr(MuseTalkNetworks, "generate", interrupted)
    frame = r.render_next()
    assert not frame.speaking and r.queued_samples == 0 and np.array_equal(frame.image, avatar.base.image)


def test_bad_audio_and_fps_are_one_line(avatar: MuseTalkAvatar) -> None:
    r = renderer(avatar)
    with pytest.raises(UserError, match="int16"):
        r.feed(np.zeros(100, np.float32))
    with pytest.raises(UserError, match="mono"):
        r.feed(np.zeros((100, 2), np.int16))
    with pytest.raises(UserError, match="fps 7"):
        MuseTalkRenderer(avatar, fps=7)


def test_render_command_writes_a_synced_mp4(
    weights_dir: Path, cache_dir: Path, tmp_path: Path, astronaut: Path, speech: np.ndarray, capsys, monkeypatch
) -> None:
    """`digital-human render --engine musetalk` end to end: the CLI, preparation from the cache, the renderer and
    the MP4 writer, with every frame's audio in place."""
    from agent.cli import main
    from agent.render_job import LEAD_IN_SECONDS, TAIL_SECONDS
    from core.audio import write_wav
    from streaming.recording import probe_durations

    monkeypatch.setenv("DH_MUSETALK__WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("DH_MUSETALK__DEVICE", "cpu")
    monkeypatch.setenv("DH_AVATAR__CACHE_DIR", str(cache_dir))
    wav, out = tmp_path / "speech.wav", tmp_path / "out.mp4"
    write_wav(wav, speech[:SR], SR)
    code = main(["render", "--engine", "musetalk", "--avatar", str(astronaut), "--audio", str(wav), "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    seconds = LEAD_IN_SECONDS + 1.0 + TAIL_SECONDS
    assert f"{round(seconds * FPS)} frames at 25 fps" in captured.out
    video, audio = probe_durations(out)
    assert abs(video - seconds) < 0.05 and abs(audio - seconds) < 0.05


# --- a lively photo ---


def test_a_photo_gets_the_cpu_engines_idle_motion(weights_dir: Path, cache_dir: Path, astronaut: Path) -> None:
    """With liveliness, a photo's templates are the CPU engine's idle frames (blinks, head motion), and the head
    motion carried to the landmarks matches where the face really is in those frames."""
    from avatar import landmarks as lm
    from avatar.musetalk.idle import IDLE_FPS, IDLE_SECONDS
    from avatar.musetalk.prepare import template_points
    from avatar.video_loop import STABLE_POINTS

    lively, _ = prepare(config(weights_dir, cache_dir, liveliness=1.0), astronaut)
    assert isinstance(lively, MuseTalkAvatar) and lively.loop is not None and lively.base.loop is None
    count = round(IDLE_SECONDS * IDLE_FPS)
    assert len(lively.boxes) == len(lively.inputs) == len(lively.masks) == len(lively.loop) == count
    points = template_points(lively.base, lively.loop)
    moves = [float(np.abs(p - points[0]).max()) for p in points]
    k = int(np.argmax(moves))
    assert moves[k] > 1.0  # the head does move
    found = lm.detect_faces(lively.loop.frame(k))[0].xy
    error = np.linalg.norm(found[STABLE_POINTS] - points[k][STABLE_POINTS], axis=1)
    still = np.linalg.norm(found[STABLE_POINTS] - points[0][STABLE_POINTS], axis=1)
    print(f"head moved {np.median(still):.2f} px; carried landmarks off by {np.median(error):.2f} px")
    assert np.median(error) < 0.6 * np.median(still)  # the carried landmarks follow the head
    r = renderer(lively)
    first = r.render_next()
    assert np.array_equal(first.image, lively.loop.frame(0)) and not first.speaking
    again, _ = prepare(config(weights_dir, cache_dir, liveliness=1.0), astronaut)
    assert isinstance(again, MuseTalkAvatar) and again.from_cache and again.loop is not None
    np.testing.assert_array_equal(again.loop.jpegs, lively.loop.jpegs)


# --- a video avatar ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_avatar(weights_dir: Path, cache_dir: Path, astronaut: Path, tmp_path_factory) -> MuseTalkAvatar:
    """A 1.2 s clip of the sample portrait sliding sideways (no real video of a face ships with the project)."""
    import av
    import cv2

    path = tmp_path_factory.mktemp("clip") / "slide.mp4"
    image = cv2.imread(str(astronaut))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 512, 512, "yuv420p"
        stream.options = {"crf": "12"}
        for i in range(30):
            moved = cv2.warpAffine(
                image, np.float32([[1, 0, i * 0.5], [0, 1, 0]]), (512, 512), borderMode=cv2.BORDER_REFLECT
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(moved, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    prepared, _ = prepare(config(weights_dir, cache_dir), path)
    assert isinstance(prepared, MuseTalkAvatar) and prepared.base.loop is not None
    return prepared


def test_a_video_avatar_has_a_template_per_loop_frame(video_avatar: MuseTalkAvatar, speech: np.ndarray) -> None:
    loop = video_avatar.base.loop
    assert loop is not None
    assert len(video_avatar.boxes) == len(loop) == len(video_avatar.inputs) == len(video_avatar.masks)
    centres = (video_avatar.boxes[:, 0] + video_avatar.boxes[:, 2]) / 2
    assert centres[-1] - centres[0] > 8  # the boxes follow the head across the clip (14.5 px of slide)
    r = renderer(video_avatar)
    idle = r.render_next()
    assert np.array_equal(idle.image, loop.frame(loop.index_at(0.0)))
    r.feed(speech[: 8 * SPF])
    for _ in range(8):
        frame = r.render_next()
        k = loop.index_at(frame.index / FPS)
        x0, y0, x1, y1 = video_avatar.boxes[k]
        expected = loop.frame(k)
        outside = frame.image.copy()
        outside[y0:y1, x0:x1] = expected[y0:y1, x0:x1]
        assert frame.speaking and np.array_equal(outside, expected)  # drawn on its own loop frame, in its own box


# --- the live session's frame loop ---------------------------------------------------------------------------


class Collect:
    """A frame sink that keeps what the live stream hands to a client."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool, np.ndarray]] = []

    def write(self, frame: Frame, turn: int, pts: int) -> None:
        self.frames.append((turn, frame.speaking, frame.audio.copy()))

    def drop_turn(self, turn: int) -> None:
        pass

    async def aclose(self) -> None:
        pass


def test_the_live_media_stream_drives_it_unchanged(avatar: MuseTalkAvatar, speech: np.ndarray) -> None:
    """streaming.media.MediaStream (what every live session runs) with this renderer: a turn's audio comes out
    sample-exact on its frames, and cancelling the next turn mid-way makes the following frames idle and silent."""
    import asyncio

    from streaming.clock import VirtualClock
    from streaming.media import MediaStream

    async def run() -> Collect:
        stream = MediaStream(renderer(avatar), VirtualClock())
        sink = Collect()
        stream.add_sink(sink)
        stream.feed(1, speech[: 10 * SPF])
        for _ in range(12):
            await stream.step()
        stream.end_turn(1)
        stream.feed(2, speech[: 20 * SPF])
        for _ in range(5):
            await stream.step()
        stream.cancel(2)
        for _ in range(3):
            await stream.step()
        return sink

    frames = asyncio.run(run()).frames
    assert [t for t, _, _ in frames[:12]] == [1] * 12  # the reply's frames until it ends
    np.testing.assert_array_equal(np.concatenate([a for _, _, a in frames[:10]]), speech[: 10 * SPF])
    assert [s for _, s, _ in frames[:12]] == [True] * 10 + [False, False]
    assert [t for t, _, _ in frames[12:17]] == [2] * 5
    assert all(t == 0 and not s and not a.any() for t, s, a in frames[17:])
