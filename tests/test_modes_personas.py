from pathlib import Path

import pytest

from agent.modes.base import Generate, Say
from agent.modes.host import HostMode
from agent.modes.presenter import PresenterMode
from agent.modes.prompt import persona_prefix
from agent.modes.tutor import TutorMode
from agent.personas import PERSONAS_DIR, create_mode, list_personas, load_persona
from core.errors import UserError


def test_the_shipped_personas():
    names = list_personas()
    assert {"presenter", "presenter-zh", "tutor", "tutor-zh", "host"} <= set(names)
    kinds = {"presenter": PresenterMode, "tutor": TutorMode, "host": HostMode}
    for name in names:
        persona = load_persona(name)
        assert persona.name == name
        for llm in (True, False):
            mode = create_mode(persona, llm_available=llm)
            assert isinstance(mode, kinds[persona.mode]) and mode.wants_llm is llm
    nova = load_persona("presenter")
    assert nova.display_name == "Nova" and nova.avatar is not None and nova.avatar.is_file()
    assert all(p.is_absolute() and p.suffix == ".md" for p in nova.knowledge) and len(nova.knowledge) >= 8
    assert load_persona("presenter-zh").voice == "zm_yunjian"


def test_the_chinese_presenter_answers_from_chinese_knowledge():
    mode = create_mode(load_persona("presenter-zh"), llm_available=True)
    assert mode.greeting()[0].text.startswith("你好")
    steps = mode.on_user("保修多久？", "zh")
    assert isinstance(steps[0], Generate) and "三年保修" in steps[0].messages[0]["content"]


def test_the_shipped_tutor_and_host_run():
    tutor = create_mode(load_persona("tutor"), llm_available=False)
    for answer in ("evaporation", "clouds, by condensation", "precipitation"):
        tutor.on_user(answer, "en")
    assert tutor.progress()["status"] == "done"
    host = create_mode(load_persona("host"), llm_available=False)
    said = []
    while steps := host.on_idle(1.5):
        said.append(steps[0].text)
        host.on_reply_done(steps[0].text, interrupted=False)
    assert len(said) == 5 and said[0].startswith("Good evening") and isinstance(steps, list)
    assert host.progress()["status"] == "done"


def test_load_by_path_with_relative_files(tmp_path: Path):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("# A\n\nAlpha facts.\n", encoding="utf-8")
    path = tmp_path / "mine.yaml"
    path.write_text("mode: presenter\nsystem_prompt: You are Al.\nknowledge: kb\n", encoding="utf-8")
    persona = load_persona(path)
    assert persona.name == "mine" and persona.display_name == "mine"
    assert persona.knowledge == ((tmp_path / "kb" / "a.md").resolve(),)
    assert load_persona(str(path)) == persona
    assert list_personas(tmp_path) == ["mine"]
    assert load_persona("mine", directory=tmp_path) == persona
    mode = create_mode(persona, llm_available=False)
    assert mode.on_user("alpha", "en") == [Say("Alpha facts.")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("mode: presenter\nsystem_prompt: x\nknowledge: missing.md\n", r"knowledge not found: .*missing\.md"),
        ("mode: tutor\nsystem_prompt: x\nlesson: nope.yaml\n", r"lesson not found: .*nope\.yaml"),
        ("mode: host\nsystem_prompt: x\nscript: nope.md\n", r"script not found"),
        ("mode: presenter\nsystem_prompt: x\navatar: face.png\n", r"avatar not found"),
        ("mode: presenter\nsystem_prompt: x\nmemory_tokens: 10\n", r"memory_tokens: Input should be greater"),
        ("mode: narrator\nsystem_prompt: x\n", r"mode: Input should be 'presenter', 'tutor' or 'host'"),
        ("mode: presenter\nsystem_prompt: x\nvoise: cmn\n", r"voise: Extra inputs are not permitted"),
        ("mode: presenter\n", r"system_prompt: Field required"),
        ("mode: tutor\nsystem_prompt: x\n", r"a tutor persona needs a lesson file"),
        ("mode: host\nsystem_prompt: x\n", r"a host persona needs a show script"),
        ("mode: presenter\nsystem_prompt: x\nscript: s.md\n", r"script is only used by host personas"),
        ("mode: host\nsystem_prompt: x\nscript: s.md\nhost: {gap_seconds: -1}\n", r"host.gap_seconds"),
        ("mode: presenter\nsystem_prompt: " + "word " * 500 + "\n", r"system_prompt: is about \d+ tokens"),
        ("mode: [unclosed\n", r"is not valid YAML"),
        ("just a string\n", r"must be a mapping of fields"),
        ("name: bad name\nmode: presenter\nsystem_prompt: x\n", r"name: String should match pattern"),
    ],
)
def test_persona_errors_are_one_line_naming_file_and_field(tmp_path: Path, content: str, message: str):
    (tmp_path / "s.md").write_text("## One\n\nHello.\n", encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as info:
        load_persona(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unknown_names_and_missing_files(tmp_path: Path):
    with pytest.raises(UserError, match=r"unknown persona 'nobody' \(available: .*presenter.*\)"):
        load_persona("nobody")
    with pytest.raises(UserError, match="persona file not found"):
        load_persona(tmp_path / "nothing.yaml")
    with pytest.raises(UserError, match=r"\(available: none\)"):
        load_persona("x", directory=tmp_path)
    assert PERSONAS_DIR.is_dir()


def test_problems_inside_referenced_files_surface_when_the_mode_is_created(tmp_path: Path):
    (tmp_path / "lesson.yaml").write_text("title: T\nsteps: []\n", encoding="utf-8")
    path = tmp_path / "t.yaml"
    path.write_text("mode: tutor\nsystem_prompt: x\nlesson: lesson.yaml\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"lesson file .*: steps"):
        create_mode(load_persona(path), llm_available=True)


def test_every_generated_prompt_starts_with_the_cacheable_persona_prefix():
    """A local server reuses a warmed prompt prefix only if every turn's prompt starts with it exactly."""
    for name in ("presenter", "tutor", "host"):
        persona = load_persona(name)
        mode = create_mode(persona, llm_available=True)
        if isinstance(mode, HostMode):
            mode.ask("How big is Jupiter?", "Ada")
            steps = mode.on_idle(5.0)
        else:
            steps = mode.on_user("What is it?", "en") + mode.on_user("ok", "en") + mode.on_user("不知道", "zh")
        found = [s for s in steps if isinstance(s, Generate)]
        assert found, name
        prefix = persona_prefix(persona.system_prompt)
        assert all(g.messages[0]["content"].startswith(prefix) for g in found)
