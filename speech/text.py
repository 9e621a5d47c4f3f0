"""Text for the voice: markdown/emoji cleanup and streaming sentence segmentation for TTS.

LLM replies arrive a few characters at a time. TTS sounds best on whole sentences but the
first audio should start as soon as possible, so `SentenceSegmenter` cuts the token stream into
speakable units the moment a cut is certain: a cut is only made once enough look-ahead has
arrived that no later text could change the decision. The units therefore never depend on how
the text was chunked into tokens.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator
from functools import lru_cache

_WESTERN_ENDERS = ".!?…"
_CJK_ENDERS = "。！？；．"
_CLOSERS = "\"')]}’”»*_`」』）】》〉"
_NEVER_SPLIT_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "mt", "vs", "fig", "figs", "approx", "cf", "gen", "gov", "rev"}
    | {"capt", "sgt", "lt", "col", "sen", "rep", "hon", "eg", "ie", "esp"}
)
"""Titles and the like: almost always followed by a name or a noun, never end a sentence here."""
_NUMBER_ABBREVIATIONS = frozenset(
    {"no", "nos", "vol", "vols", "ch", "pp", "p", "art", "sec", "op"}
    | {"jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
)
"""Abbreviations that are followed by a number ("No. 5", "Jan. 3"); otherwise they may end a sentence."""
_INITIALISM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")
_CJK_WEIGHT = 3
"""A Mandarin character takes about as long to say as three Latin letters."""
_UNPUNCTUATED_CHARS = 200
"""Longest unit without a clause or sentence mark: some 35 words with neither a comma nor a full stop are
a list or a run of symbols, not prose, and would otherwise hold up the voice and the memory."""
_MARKUP_CHARS = frozenset("*_#`|~>")
_KEEP_SYMBOLS = frozenset("°©®%")


HAN_RANGES = "\u3400-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
"""Chinese characters (hanzi, incl. compatibility and extension blocks), for use inside a regex class."""
HAN = re.compile(f"[{HAN_RANGES}]")
"""Text that only a Chinese voice can read and pinyin can spell (kana and hangul are not Han)."""


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0xAC00 <= o <= 0xD7AF
        or 0x20000 <= o <= 0x2FA1F
    )


@lru_cache(maxsize=4096)
def _unspeakable(ch: str) -> bool:
    """Emoji, pictographs, arrows, box drawing and the invisible glue inside emoji sequences."""
    if ch in _KEEP_SYMBOLS:
        return False
    o = ord(ch)
    if 0xFE00 <= o <= 0xFE0F or o in (0x200D, 0x20E3) or 0x1F3FB <= o <= 0x1F3FF or 0x2190 <= o <= 0x21FF:
        return True
    return unicodedata.category(ch) in ("So", "Cs", "Co", "Cn")


def _weight(ch: str) -> int:
    if is_cjk(ch):
        return _CJK_WEIGHT
    if ch in _MARKUP_CHARS or _unspeakable(ch):
        return 0
    return 1


class _FenceFilter:
    """Drops fenced code blocks (``` or ~~~) from a stream: code read aloud is noise, and dropping it
    as it arrives keeps memory bounded however long the block is."""

    def __init__(self) -> None:
        self._in_fence = False
        self._head = ""  # start of the current line while it could still be a fence marker
        self._at_line_start = True
        self._skip_line = False  # rest of a fence marker line (the info string)

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            if self._skip_line:
                if ch == "\n":
                    self._skip_line = False
                    self._at_line_start = True
                continue
            if self._at_line_start:
                candidate = self._head + ch
                if _could_be_fence(candidate):
                    if _is_fence(candidate):
                        self._in_fence = not self._in_fence
                        self._head = ""
                        self._at_line_start = False
                        self._skip_line = True
                        out.append("\n")
                    else:
                        self._head = candidate
                    continue
                self._at_line_start = False
                ch = candidate
                self._head = ""
            if not self._in_fence:
                out.append(ch)
            if ch.endswith("\n"):
                self._at_line_start = True
        return "".join(out)

    def flush(self) -> str:
        head, self._head = self._head, ""
        return "" if self._in_fence else head


def _could_be_fence(s: str) -> bool:
    stripped = s.lstrip(" ")
    if len(s) - len(stripped) > 3:
        return False
    return stripped == "" or (stripped == stripped[0] * len(stripped) and stripped[0] in "`~")


def _is_fence(s: str) -> bool:
    stripped = s.lstrip(" ")
    return len(stripped) >= 3 and stripped[0] in "`~"


_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(\s+#+)?\s*$")
_QUOTE = re.compile(r"^\s{0,3}(>\s?)+")
_BULLET = re.compile(r"^\s*(?:[-*+•‣◦]|\d{1,3}[.)])\s+")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]+[^\s<>()\[\].,;:!?'\"]")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_INLINE_CODE = re.compile(r"`+([^`]*)`+")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
_STRIKE = re.compile(r"~~(.+?)~~")
_STRAY_MARKUP = re.compile(r"\*\*+|__+|~~+|`+|(?<!\S)\*(?=\S)|(?<=\S)\*(?!\S)")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")
_CONTROL = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])|[\x00-\x08\x0e-\x1f\x7f]"
)
"""Terminal colour codes (pasted from a console) and other control characters: read aloud as "thirty one m"."""
_SPACE_BEFORE_PUNCT = re.compile(r"(?<=\S) +([.,!?;:…。！？；：，、])")
_CJK_CLASS = r"[\u3000-\u303f\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]"
_CJK_GAP = re.compile(rf"(?<={_CJK_CLASS}) (?={_CJK_CLASS})")
_TERMINAL = tuple(".!?;:,…。！？；：，、") + tuple(_CLOSERS)


def _url_to_speech(match: re.Match[str]) -> str:
    """Nobody wants "h t t p s colon slash slash": say the site's name."""
    url = match.group(1) if match.re is _AUTOLINK else match.group(0)
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", url).split("/")[0].split("?")[0]
    return host


def _clean_inline(line: str) -> str:
    line = _CONTROL.sub("", line)
    line = _IMAGE.sub("", line)
    line = _LINK.sub(r"\1", line)
    line = _AUTOLINK.sub(_url_to_speech, line)
    line = _URL.sub(_url_to_speech, line)
    line = _HTML_TAG.sub(" ", line)
    line = _INLINE_CODE.sub(r"\1", line)
    line = _STRONG.sub(r"\2", line)
    line = _STRIKE.sub(r"\1", line)
    line = _EMPHASIS_STAR.sub(r"\1", line)
    line = _EMPHASIS_UNDERSCORE.sub(r"\1", line)
    line = _STRAY_MARKUP.sub("", line)
    line = "".join(" " if _unspeakable(ch) else ch for ch in line)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", line)).strip()


def _end_sentence(line: str) -> str:
    """A heading, list item or table row has no full stop, but the voice should still pause after it."""
    if not line or line.endswith(_TERMINAL):
        return line
    return line + ("。" if is_cjk(line[-1]) else ".")


def _clean_lines(text: str, line_start: bool) -> str:
    lines = text.split("\n")
    out: list[str] = []
    for n, raw in enumerate(lines):
        structural = False
        line = raw
        if n > 0 or line_start:
            if _TABLE_SEPARATOR.match(line) or _RULE.match(line):
                continue
            if m := _HEADING.match(line):
                line, structural = m.group(1), True
            line = _QUOTE.sub("", line)
            if _BULLET.match(line):
                line, structural = _BULLET.sub("", line, count=1), True
            if line.strip().startswith("|") or line.count("|") >= 2:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                line, structural = ", ".join(c for c in cells if c), True
        line = _clean_inline(line)
        if structural or n < len(lines) - 1:
            line = _end_sentence(line)
        if line:
            out.append(line)
    return _CJK_GAP.sub("", " ".join(out))


def clean_for_speech(text: str) -> str:
    """Turn chat-style text (markdown, emoji, URLs) into plain words a voice can say.

    Code blocks are dropped, links become their text, bare URLs their site name; lines that
    end without punctuation (headings, list items, table rows) get a full stop so the voice
    pauses. CJK text and numbers are kept as they are.
    """
    fences = _FenceFilter()
    return _clean_lines(fences.feed(text) + fences.flush(), line_start=True)


class SentenceSegmenter:
    """Cuts a stream of LLM tokens into units for TTS, only where a speaker pauses anyway.

    Each unit is a TTS call of its own, so every cut is heard as a pause with the voice's sentence-end
    intonation: a cut mid-phrase ("…the lungs of the" — pause — "planet.") sounds broken. Units
    therefore end at sentence ends; short sentences are merged until a unit has `min_chars` (so the
    prosody stays natural). Lengths are in Latin-equivalent characters (a CJK character counts as three).

    - `early_first_clause` (live replies): the first unit may end at a clause mark (comma, semicolon,
      colon, dash) once it has `first_min_chars`, so the voice starts before the first sentence is
      complete. Recorded renders have no latency to win and leave it off.
    - A sentence longer than `max_chars` is cut at its last clause mark before that length, else at the
      first one after it. Text with no punctuation at all for `_UNPUNCTUATED_CHARS` (a word list, not
      prose) is cut at a space, so memory and latency stay bounded.

    Units come out cleaned by `clean_for_speech`.
    """

    def __init__(
        self,
        first_min_chars: int = 12,
        min_chars: int = 20,
        max_chars: int = 150,
        early_first_clause: bool = True,
    ) -> None:
        if not (0 < first_min_chars <= max_chars and 0 < min_chars <= max_chars):
            raise ValueError("segment lengths must satisfy 0 < min <= max")
        self.first_min_chars = first_min_chars
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.early_first_clause = early_first_clause
        self._hard_max = max(max_chars, _UNPUNCTUATED_CHARS)
        self._fences = _FenceFilter()
        self._buf = ""
        self._at_line_start = True
        self._first = True

    @property
    def buffered(self) -> int:
        """Characters waiting for a decision (bounded by about `max_chars`)."""
        return len(self._buf)

    def feed(self, fragment: str) -> list[str]:
        """Add a fragment (any size, even part of a word); return the units that are now certain."""
        self._buf += self._fences.feed(fragment)
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of the reply: return whatever is left, then start afresh for the next reply."""
        self._buf += self._fences.flush()
        units = self._drain(final=True)
        self._fences = _FenceFilter()
        self._buf, self._at_line_start, self._first = "", True, True
        return units

    def _drain(self, final: bool) -> list[str]:
        units: list[str] = []
        while True:
            start = len(self._buf) - len(self._buf.lstrip())
            if "\n" in self._buf[:start]:
                self._at_line_start = True
            if start == len(self._buf):
                self._buf = ""
                return units
            cut = self._next_cut(start, final)
            if cut is None:
                if start:
                    self._buf = self._buf[start:]
                return units
            text = _clean_lines(self._buf[start:cut], self._at_line_start)
            self._buf = self._buf[cut:]
            self._at_line_start = False
            if any(ch.isalnum() for ch in text):  # a unit of only punctuation would be a silent clip
                units.append(text)
                self._first = False

    def _next_cut(self, start: int, final: bool) -> int | None:
        """End index of the unit starting at `start`, or None while the look-ahead is missing."""
        buf = self._buf
        early = self._first and self.early_first_clause
        lo = self.first_min_chars if early else self.min_chars
        weight = 0
        last_clause: int | None = None
        last_space: int | None = None
        for i in range(start, len(buf)):
            weight += _weight(buf[i])
            if weight > self.max_chars and last_clause is not None:
                return last_clause
            if weight > self._hard_max:
                return last_space or i
            kind, end = self._classify(i, start, final)
            if kind == "wait":
                return None
            if kind == "space":
                last_space = i
            elif kind in ("sentence", "clause"):
                unit_weight = weight + sum(_weight(c) for c in buf[i + 1 : end])
                if unit_weight >= lo:
                    if kind == "sentence" or early or unit_weight > self.max_chars:
                        return end
                    last_clause = end
        return len(buf) if final else None

    def _classify(self, i: int, start: int, final: bool) -> tuple[str, int]:
        """What kind of cut position buf[i] is: sentence / clause / space / none / wait (needs more text)."""
        buf, ch, n = self._buf, self._buf[i], len(self._buf)
        if ch == "\n":
            return "sentence", i
        if ch.isspace():
            return "space", i
        if ch in _WESTERN_ENDERS or ch in _CJK_ENDERS:
            j = i
            while j < n and (buf[j] in _WESTERN_ENDERS or buf[j] in _CJK_ENDERS):
                j += 1
            k = j
            while k < n and buf[k] in _CLOSERS:
                k += 1
            if k == n:
                return ("sentence", k) if final else ("wait", k)
            run = buf[i:j]
            if any(c in _CJK_ENDERS for c in run):
                return "sentence", k
            nxt = buf[k]
            if not (nxt.isspace() or is_cjk(nxt)):
                return "none", k
            if any(c in "!?" for c in run):
                return "sentence", k
            if run == "." and self._dot_is_not_an_end(i, start):
                return "none", k
            m = k
            while m < n and buf[m].isspace():
                m += 1
            if m == n:
                return ("sentence", k) if final else ("wait", k)
            if buf[m].islower():
                return "none", k
            if run == "." and self._word_before(i, start).lower() in _NUMBER_ABBREVIATIONS and buf[m].isdigit():
                return "none", k
            return "sentence", k
        if ch in ",;:":
            if i + 1 == n:
                return ("clause", i + 1) if final else ("wait", i + 1)
            return ("clause", i + 1) if buf[i + 1].isspace() or is_cjk(buf[i + 1]) else ("none", i + 1)
        if ch in "，、：—":
            return "clause", i + 1
        return "none", i + 1

    def _word_before(self, i: int, start: int) -> str:
        w = i
        while w > start and not self._buf[w - 1].isspace():
            w -= 1
        return self._buf[w:i].lstrip("\"'([{*_`“‘«")

    def _dot_is_not_an_end(self, i: int, start: int) -> bool:
        word = self._word_before(i, start)
        lower = word.lower()
        if lower in _NEVER_SPLIT_ABBREVIATIONS or _INITIALISM.match(word):
            return True
        if len(word) == 1 and word.isupper() and word != "I":
            return True  # an initial, as in "John F. Kennedy"
        if word.isdigit() and len(word) <= 3:
            nl = self._buf.rfind("\n", 0, i)
            line_begin = nl + 1 if nl >= 0 else (start if self._at_line_start else None)
            if line_begin is not None and self._buf[line_begin:i].strip() == word:
                return True  # "1. item": list numbering
        return False


def split_for_speech(text: str, **options: int | bool) -> list[str]:
    """One-shot segmentation of a complete text (same units as streaming it)."""
    seg = SentenceSegmenter(**options)
    return seg.feed(text) + seg.flush()


async def segment_stream(tokens: AsyncIterable[str], **options: int | bool) -> AsyncIterator[str]:
    """Speakable units from an async token stream, each yielded as soon as it is certain."""
    seg = SentenceSegmenter(**options)
    async for token in tokens:
        for unit in seg.feed(token):
            yield unit
    for unit in seg.flush():
        yield unit
