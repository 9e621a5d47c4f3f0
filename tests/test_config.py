import argparse
from pathlib import Path

import pytest

from agent.cli import main
from core.config import DEFAULT_CONFIG, dump_config, load_config
from core.errors import UserError


def test_default_file_matches_typed_defaults():
    """Every knob in configs/default.yaml is known to the typed config (extra keys are rejected)."""
    cfg = load_config(environ={})
    assert cfg.avatar.fps == 25
    assert cfg.tts.engine == "piper"
    assert DEFAULT_CONFIG.is_file()


def test_environment_and_overrides_layering(tmp_path: Path):
    user = tmp_path / "my.yaml"
    user.write_text("server:\n  port: 9100\ntts:\n  engine: espeak\n")
    cfg = load_config(user, overrides={"tts": {"voice": "cmn"}}, environ={"DH_SERVER__PORT": "9200"})
    assert cfg.server.port == 9200  # environment beats the user file
    assert cfg.tts.engine == "espeak"  # user file beats the default
    assert cfg.tts.voice == "cmn"  # flags beat everything


def test_openai_variables_and_masking():
    cfg = load_config(environ={"OPENAI_API_KEY": "sk-abcdef123456", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    text = dump_config(cfg)
    assert "sk-abcdef123456" not in text
    assert "http://127.0.0.1:9/v1" in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DH_AVATAR__FPS": "90"}, r"avatar\.fps"),
        ({"DH_AVATAR__FPS": "35"}, r"avatar\.fps: .*use one of 20, 24, 25, 30, 32, 40"),
        ({"DH_TTS__ENGINE": "nope"}, r"tts\.engine"),
    ],
)
def test_invalid_values_are_one_line_errors(env, message):
    with pytest.raises(UserError, match=message):
        load_config(environ=env)


def test_unknown_key_in_user_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("avatar:\n  fsp: 30\n")
    with pytest.raises(UserError, match=r"avatar\.fsp"):
        load_config(bad, environ={})


def test_config_command_prints_masked(capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-verysecretkey")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "engine: realtime" in out and "sk-verysecretkey" not in out


def test_missing_config_file(capsys):
    assert main(["--config", "/nonexistent.yaml", "config"]) == 2
    assert "config file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DH_AVATAR__FPS": "60"}, r"avatar\.fps: 60 fps is not supported; use one of 20, 24, 25, 30, 32, 40"),
        ({"DH_AVATAR__OUTPUT_SIZE": "[3841, 100]"}, r"avatar\.output_size: 3841x100 cannot be used: each side"),
        ({"DH_AVATAR__OUTPUT_SIZE": "[3840, 3840]"}, r"avatar\.output_size: .*more pixels than 3840x2160"),
        ({"DH_AVATAR__FACE_INDEX": "-1"}, r"avatar\.face_index"),
    ],
)
def test_avatar_limits(env, message):
    with pytest.raises(UserError, match=message):
        load_config(environ=env)


def test_one_size_limit_for_flag_config_and_comment():
    """--size, the typed config and the comment in configs/default.yaml state the same limits."""
    from agent.cli import _size
    from core.config import MAX_OUTPUT_PIXELS, MAX_OUTPUT_SIDE, MIN_OUTPUT_SIDE

    for size in [(MIN_OUTPUT_SIDE, MAX_OUTPUT_SIDE), (2160, 3840), (3840, 2160)]:
        assert _size(f"{size[0]}x{size[1]}") == size
        assert load_config(environ={"DH_AVATAR__OUTPUT_SIZE": str(list(size))}).avatar.output_size == size
    assert MAX_OUTPUT_PIXELS == 3840 * 2160
    for bad in [(MIN_OUTPUT_SIDE - 1, 100), (100, MAX_OUTPUT_SIDE + 1), (3000, 3000)]:
        with pytest.raises(argparse.ArgumentTypeError):
            _size(f"{bad[0]}x{bad[1]}")
        with pytest.raises(UserError):
            load_config(environ={"DH_AVATAR__OUTPUT_SIZE": str(list(bad))})
    comment = DEFAULT_CONFIG.read_text(encoding="utf-8")
    assert f"each side {MIN_OUTPUT_SIDE}-{MAX_OUTPUT_SIDE} px, at most 3840x2160 pixels in all" in comment


def test_binary_config_file_is_one_line(tmp_path: Path, capsys):
    config = tmp_path / "my.yaml"
    config.write_bytes(bytes(range(128, 256)) * 4)
    assert main(["--config", str(config), "config"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: argument --config: {config} is not a YAML file (it is not UTF-8 text) (see `digital-human --help`)"
    ]
