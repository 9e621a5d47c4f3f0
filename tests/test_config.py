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
