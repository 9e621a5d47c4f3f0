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
    script.write_bytes(bytes(range(128, 256)))
    with pytest.raises(UserError, match="not UTF-8"):
        paragraphs_from_script(script)


def test_nul_byte_means_a_binary_file(tmp_path: Path):
    script = tmp_path / "s.md"
    script.write_bytes(b"Hello there.\x00 More text.\n")
    with pytest.raises(UserError, match=r"contains a NUL byte \(at byte 12\): it is a binary file"):
        paragraphs_from_script(script)


def test_utf16_script_with_its_bom_is_read(tmp_path: Path):
    """Windows Notepad's "Unicode" is UTF-16 with a byte-order mark: full of NUL bytes, and still text."""
    script = tmp_path / "s.txt"
    script.write_bytes("Hello there, friend.\n\n你好。".encode("utf-16"))
    assert paragraphs_from_script(script) == [["Hello there, friend."], ["你好。"]]


def test_terminal_escape_codes_are_not_read_aloud(tmp_path: Path):
    """A script saved from a coloured terminal: the codes vanish instead of becoming 'thirty one m'."""
    script = tmp_path / "s.txt"
    script.write_text("\x1b[1;31mWarning:\x1b[0m the oven is hot.\n\n\x1b]0;title\x07Done.\n", encoding="utf-8")
    paragraphs = paragraphs_from_script(script)
    assert paragraphs == [["Warning: the oven is hot."], ["Done."]]


@pytest.mark.parametrize("text", ["...", " !!! ,,, -- ", "\x1b[31m\x1b[0m", "* * *"])
def test_text_without_words_is_refused(text: str):
    with pytest.raises(UserError, match="nothing to say"):
        paragraphs_from_text(text)


def test_long_text_is_cut_into_bounded_sentences():
    paragraphs = paragraphs_from_text("word " * 2000)
    assert all(len(s) <= 200 for p in paragraphs for s in p)
