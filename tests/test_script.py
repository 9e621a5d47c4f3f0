from pathlib import Path

import pytest

from agent.script import paragraphs_from_script, paragraphs_from_text
from core.errors import UserError


def test_markdown_script_paragraphs(tmp_path: Path):
    script = tmp_path / "lesson.md"
    script.write_text(
        "# Lesson one\n\nWelcome! Today we cover **fractions**. It costs $29.99, see [the site](https://x.org).\n\n"
        "- first point\n- second point\n\n```python\nprint('never spoken')\n```\n\n你好。我是你的老师。\n",
        encoding="utf-8",
    )
    paragraphs = paragraphs_from_script(script)
    flat = " ".join(" ".join(p) for p in paragraphs)
    assert paragraphs[0] == ["Lesson one."]
    assert any("Today we cover fractions." in s for s in paragraphs[1]) and "$29.99" in flat
    assert "**" not in flat and "never spoken" not in flat and "https" not in flat
    assert paragraphs[-1] == ["你好。我是你的老师。"] or paragraphs[-1] == ["你好。", "我是你的老师。"]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", "🙂 🎉".encode()])
def test_script_without_words(tmp_path: Path, content: bytes):
    script = tmp_path / "s.txt"
    script.write_bytes(content)
    with pytest.raises(UserError, match="nothing to say"):
        paragraphs_from_script(script)


def test_binary_script(tmp_path: Path):
    script = tmp_path / "s.txt"
    script.write_bytes(bytes(range(256)))
    with pytest.raises(UserError, match="not UTF-8"):
        paragraphs_from_script(script)


def test_long_text_is_cut_into_bounded_sentences():
    paragraphs = paragraphs_from_text("word " * 2000)
    assert all(len(s) <= 200 for p in paragraphs for s in p)
