from pathlib import Path

import pytest

from agent.knowledge import KnowledgeBase, split_sections
from agent.lexical import stem, terms
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
NIMBUS = sorted((ROOT / "configs" / "knowledge" / "nimbus").glob("*.md"))


@pytest.fixture(scope="module")
def nimbus() -> KnowledgeBase:
    return KnowledgeBase.from_files(NIMBUS)


def test_shipped_knowledge_is_larger_than_the_prompt_budget(nimbus: KnowledgeBase):
    assert sum(p.stat().st_size for p in NIMBUS) > 8000
    assert nimbus.total_tokens > 3 * 700
    assert any(s.source == "zh.md" for s in nimbus.sections)


def test_words_are_stemmed_and_chinese_is_cut_into_character_pairs():
    assert terms("Clouds evaporated; the CLOUD evaporates") == ["cloud", "evaporat", "cloud", "evaporat"]
    assert stem("evaporation") == stem("evaporate") == stem("evaporating")
    assert stem("bus") == "bus" and stem("is") == "is"
    assert terms("价格是多少") == ["价格", "格是", "是多", "多少"]
    assert terms("價格") == terms("价格")  # Traditional characters match Simplified text
    assert terms("Café") == terms("cafe")


def test_sections_follow_the_heading_path():
    text = "Intro text.\n\n# Lamp\n\n## Price\n\nIt costs 10 euros.\n\n```\n# not a heading\n```\n\n## Size\n\nSmall.\n"
    sections = split_sections(text, "my-lamp.md")
    assert [s.title for s in sections] == ["my lamp", "Lamp › Price", "Lamp › Size"]
    assert "# not a heading" in sections[1].text


def test_a_long_section_is_cut_into_parts_within_the_limit():
    body = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(12))
    sections = split_sections("# Big\n\n" + body, "big.md", max_tokens=120)
    assert len(sections) > 3
    assert all(s.title.startswith("Big (part ") for s in sections)
    assert all(s.tokens <= 120 + 10 for s in sections)  # the limit is on the text, the title adds a little
    assert "Paragraph 11" in sections[-1].text


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("How much does the Pro edition cost?", "Editions and prices › Nimbus Pro"),
        ("Is it waterproof?", "Frequently asked questions › Is Nimbus waterproof?"),
        ("Does it work without internet?", "Frequently asked questions › Does Nimbus work without internet?"),
        ("How does the rain sensor work?", "Sensors and accuracy › Rain"),
        ("Can I put it on my sailing boat?", "Frequently asked questions › Can I use Nimbus on a boat?"),
        ("How long is the warranty?", "Warranty, returns and support › Warranty"),
    ],
)
def test_english_questions_retrieve_the_right_section(nimbus: KnowledgeBase, question: str, title: str):
    retrieval = nimbus.select(question, 700)
    assert not retrieval.complete
    assert retrieval.sections[0].title == title
    assert retrieval.tokens <= 700


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("Nimbus 专业版多少钱？", "价格与版本"),
        ("保修多久？", "保修与售后"),
        ("怎么安装？", "安装方法"),
        ("電池能用多久？", "电池与供电"),  # Traditional characters
    ],
)
def test_chinese_questions_retrieve_chinese_sections(nimbus: KnowledgeBase, question: str, title: str):
    retrieval = nimbus.select(question, 700)
    assert retrieval.sections[0].source == "zh.md"
    assert retrieval.sections[0].title.endswith(title)


@pytest.mark.parametrize("budget", [60, 150, 400, 700, 1500])
def test_the_prompt_budget_is_never_exceeded(nimbus: KnowledgeBase, budget: int):
    for question in ("How much does the Pro edition cost?", "wind rain battery sensors app warranty 价格 保修"):
        retrieval = nimbus.select(question, budget)
        assert retrieval.sections
        assert retrieval.tokens <= budget


def test_everything_goes_in_when_it_fits(nimbus: KnowledgeBase):
    retrieval = nimbus.select("anything at all", nimbus.total_tokens)
    assert retrieval.complete and len(retrieval.sections) == len(nimbus.sections)


def test_nothing_is_retrieved_for_an_unrelated_message(nimbus: KnowledgeBase):
    assert nimbus.select("Hello!", 700).sections == ()
    assert nimbus.select("你好", 700).sections == ()
    assert nimbus.search("") == []


def test_topics_are_the_top_level_titles(nimbus: KnowledgeBase):
    topics = nimbus.topics(limit=20)
    assert "Editions and prices" in topics and "Sensors and accuracy" in topics
    assert len(topics) == len(set(topics))


def test_unusable_knowledge_files(tmp_path: Path):
    with pytest.raises(UserError, match="knowledge file not found"):
        KnowledgeBase.from_files([tmp_path / "missing.md"])
    binary = tmp_path / "b.md"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="not UTF-8"):
        KnowledgeBase.from_files([binary])
    empty = tmp_path / "e.md"
    empty.write_text("\n\n# Only a heading\n", encoding="utf-8")
    with pytest.raises(UserError, match="has no text"):
        KnowledgeBase.from_files([empty])
