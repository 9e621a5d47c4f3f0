"""Phonemes to mouth shapes: the viseme set, its mappings, and timed viseme timelines.

The set is `core.events.Viseme` (the 15-class MPEG-4 / Oculus set), chosen because it is small enough
for a CPU renderer to hold one mouth shape per class yet separates every contrast a viewer checks
when lip-reading: closed lips, lip-teeth contact, tongue-teeth, and open/spread/rounded vowels.

=====  ========================================  ==================================
Class  Mouth                                     Examples (IPA / ARPAbet / pinyin)
=====  ========================================  ==================================
SIL    closed, relaxed (pauses, word gaps)       pause, ``^ $ . ,`` / - / -
PP     lips pressed together                     p b m / P B M / b p m
FF     lower lip against upper teeth             f v / F V / f
TH     tongue tip between the teeth              θ ð / TH DH / -
DD     tongue tip on the ridge, jaw half open    t d ɾ / T D / d t
KK     back of the tongue raised, jaw open       k ɡ ŋ h / K G NG HH / g k h, -ng
CH     lips pushed forward, teeth close          ʃ ʒ tʃ dʒ ɕ / SH ZH CH JH / j q x zh ch sh
SS     teeth close, lips spread                  s z ts / S Z / z c s
NN     tongue up, mouth slightly open            n l / N L / n l, -n
RR     lips slightly rounded, tongue curled      ɹ r ɚ / R ER / r, er
AA     wide open                                 ɑ a æ ʌ / AA AE AH1 / a
E      mid open, spread                          ɛ e ə / EH AH0 / e, ê
IH     nearly closed, spread                     i ɪ j / IY IH Y / i, y
OH     open, rounded                             o ɔ / AO OW / o
OU     small, rounded                            u ʊ w / UW UH W / u, ü, w
=====  ========================================  ==================================

A diphthong becomes two visemes sharing its time (``aɪ`` → AA, IH). Stress and length marks carry
time but no shape: piper's alignments give the stress mark its own samples, which belong to the vowel
that follows it, and a length mark's samples belong to the vowel before it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from core.events import Viseme as V
from core.events import VisemeEvent, WordTiming

_IPA_MULTI: dict[str, tuple[V, ...]] = {
    "tʃ": (V.CH,),
    "dʒ": (V.CH,),
    "tɕ": (V.CH,),
    "dʑ": (V.CH,),
    "ʈʂ": (V.CH,),
    "ɖʐ": (V.CH,),
    "ts": (V.SS,),
    "dz": (V.SS,),
    "s.": (V.CH,),  # espeak's ASCII spelling of the retroflex ʂ / ʐ in Mandarin
    "z.": (V.CH,),
    "ts.": (V.CH,),
    "r.": (V.RR,),
    "i.": (V.IH,),  # Mandarin apical vowel after zh/ch/sh/r
}

_IPA_SINGLE: dict[str, V] = {}
for _chars, _viseme in (
    ("pbmɓʙ", V.PP),
    ("fvɱʋɸβ", V.FF),
    ("θð", V.TH),
    ("tdɾʈɖɗɽʔ", V.DD),
    ("kgɡŋxɣqɢχhɦɰħʕcɟ", V.KK),
    ("ʃʒɕʑʂʐçʝʧʤʨʥꭧ", V.CH),  # the ligatures are Kokoro's affricates (ꭧ: Mandarin zh)
    ("szʦʣ", V.SS),
    ("nlɲɳɴɫɬɮɭʎʟ", V.NN),
    ("rɹɻʀʁɺɝɚ", V.RR),
    ("aɑɐæʌɶ", V.AA),
    ("eɛəɜɘɤ", V.E),
    ("iɪɨᵻjɯ", V.IH),
    ("oɔɒɵøœ", V.OH),
    ("uʊwʉyʏɥʍ", V.OU),
):
    for _c in _chars:
        _IPA_SINGLE[_c] = _viseme

PAUSES = frozenset({"", " ", "_", "^", "$", ".", ",", "!", "?", ";", ":", "-", "(", ")", "'", '"', "…", "—"})
"""Tokens that mean silence: piper's BOS/EOS/pad/word gap, punctuation, espeak's empty pause phoneme."""

MIN_GAP_SECONDS = 0.001
"""A gap between phonemes shorter than this is rounding, not a pause: the next phoneme absorbs it."""

PREFIX_MARKS = frozenset({"ˈ", "ˌ"})
"""Marks whose time belongs to the phoneme after them (stress precedes the stressed vowel)."""


def ipa_visemes(phoneme: str) -> tuple[V, ...]:
    """Visemes of one IPA phoneme token (piper symbol or espeak IPA string such as ``ˈaɪ`` or ``tɕh``).

    Returns () for marks that carry no mouth shape (stress, length, tone, diacritics) and (SIL,)
    for pauses. Unknown letters are skipped rather than guessed.
    """
    if phoneme in PAUSES or not phoneme.strip():
        return (V.SIL,)
    text = unicodedata.normalize("NFD", phoneme)
    out: list[V] = []
    i = 0
    while i < len(text):
        for size in (3, 2):
            piece = text[i : i + size]
            if len(piece) == size and piece in _IPA_MULTI:
                out.extend(_IPA_MULTI[piece])
                i += size
                break
        else:
            char = text[i]
            viseme = _IPA_SINGLE.get(char)
            # espeak writes aspiration as a plain "h" after the stop (``th``, ``tɕh``): not a sound of its own.
            aspiration = char == "h" and i > 0 and out and out[-1] in (V.DD, V.KK, V.PP, V.CH, V.SS)
            if viseme is not None and not aspiration:
                out.append(viseme)
            i += 1
    return _dedupe(out)


_ARPABET: dict[str, tuple[V, ...]] = {
    "AA": (V.AA,),
    "AE": (V.AA,),
    "AH": (V.AA,),
    "AO": (V.OH,),
    "AW": (V.AA, V.OU),
    "AY": (V.AA, V.IH),
    "EH": (V.E,),
    "ER": (V.RR,),
    "EY": (V.E, V.IH),
    "IH": (V.IH,),
    "IY": (V.IH,),
    "OW": (V.OH, V.OU),
    "OY": (V.OH, V.IH),
    "UH": (V.OU,),
    "UW": (V.OU,),
    "B": (V.PP,),
    "P": (V.PP,),
    "M": (V.PP,),
    "CH": (V.CH,),
    "JH": (V.CH,),
    "SH": (V.CH,),
    "ZH": (V.CH,),
    "D": (V.DD,),
    "T": (V.DD,),
    "DH": (V.TH,),
    "TH": (V.TH,),
    "F": (V.FF,),
    "V": (V.FF,),
    "G": (V.KK,),
    "K": (V.KK,),
    "NG": (V.KK,),
    "HH": (V.KK,),
    "L": (V.NN,),
    "N": (V.NN,),
    "R": (V.RR,),
    "S": (V.SS,),
    "Z": (V.SS,),
    "W": (V.OU,),
    "Y": (V.IH,),
}

ARPABET_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})


def arpabet_visemes(phone: str) -> tuple[V, ...]:
    """Visemes of one CMU dictionary phone (``AH0``, ``M``); an unstressed AH is a schwa, not an open /ʌ/."""
    base = phone.rstrip("012").upper()
    if base == "AH" and phone.endswith("0"):
        return (V.E,)
    return _ARPABET.get(base, ())


_PINYIN_INITIALS: dict[str, V] = {
    "b": V.PP,
    "p": V.PP,
    "m": V.PP,
    "f": V.FF,
    "d": V.DD,
    "t": V.DD,
    "n": V.NN,
    "l": V.NN,
    "g": V.KK,
    "k": V.KK,
    "h": V.KK,
    "j": V.CH,
    "q": V.CH,
    "x": V.CH,
    "zh": V.CH,
    "ch": V.CH,
    "sh": V.CH,
    "r": V.RR,
    "z": V.SS,
    "c": V.SS,
    "s": V.SS,
    "y": V.IH,
    "w": V.OU,
}

_PINYIN_FINAL_PARTS: tuple[tuple[str, tuple[V, ...]], ...] = (
    # Longest spellings first so "iang" is not read as "i" + "an" + "g".
    ("iang", (V.IH, V.AA, V.KK)),
    ("iong", (V.IH, V.OU, V.KK)),
    ("uang", (V.OU, V.AA, V.KK)),
    ("ueng", (V.OU, V.E, V.KK)),
    ("ang", (V.AA, V.KK)),
    ("eng", (V.E, V.KK)),
    ("ing", (V.IH, V.KK)),
    ("ong", (V.OU, V.KK)),
    ("ian", (V.IH, V.E, V.NN)),
    ("üan", (V.OU, V.E, V.NN)),
    ("van", (V.OU, V.E, V.NN)),
    ("iao", (V.IH, V.AA, V.OU)),
    ("iou", (V.IH, V.OH, V.OU)),
    ("uai", (V.OU, V.AA, V.IH)),
    ("uei", (V.OU, V.E, V.IH)),
    ("uen", (V.OU, V.E, V.NN)),
    ("uan", (V.OU, V.AA, V.NN)),
    ("ai", (V.AA, V.IH)),
    ("ei", (V.E, V.IH)),
    ("ao", (V.AA, V.OU)),
    ("ou", (V.OH, V.OU)),
    ("an", (V.AA, V.NN)),
    ("en", (V.E, V.NN)),
    ("in", (V.IH, V.NN)),
    ("ün", (V.OU, V.NN)),
    ("vn", (V.OU, V.NN)),
    ("er", (V.AA, V.RR)),
    ("ia", (V.IH, V.AA)),
    ("ie", (V.IH, V.E)),
    ("iu", (V.IH, V.OH, V.OU)),
    ("ua", (V.OU, V.AA)),
    ("uo", (V.OU, V.OH)),
    ("ui", (V.OU, V.E, V.IH)),
    ("un", (V.OU, V.E, V.NN)),
    ("üe", (V.OU, V.E)),
    ("ve", (V.OU, V.E)),
    ("a", (V.AA,)),
    ("o", (V.OH,)),
    ("e", (V.E,)),
    ("ê", (V.E,)),
    ("i", (V.IH,)),
    ("u", (V.OU,)),
    ("ü", (V.OU,)),
    ("v", (V.OU,)),
    ("n", (V.NN,)),
    ("m", (V.PP,)),
    ("g", (V.KK,)),
)


def pinyin_initial_visemes(initial: str) -> tuple[V, ...]:
    """Viseme of a pinyin initial (``zh``, ``b``); the empty initial of ``ai``/``er`` gives ()."""
    viseme = _PINYIN_INITIALS.get(initial.lower())
    return (viseme,) if viseme is not None else ()


def pinyin_final_visemes(final: str) -> tuple[V, ...]:
    """Visemes of a pinyin final (``iang``, ``üe``, ``uei``), tone digits ignored."""
    text = final.lower().rstrip("012345")
    out: list[V] = []
    while text:
        for spelling, visemes in _PINYIN_FINAL_PARTS:
            if text.startswith(spelling):
                out.extend(visemes)
                text = text[len(spelling) :]
                break
        else:
            text = text[1:]
    return _dedupe(out)


def _dedupe(visemes: Sequence[V]) -> tuple[V, ...]:
    out: list[V] = []
    for v in visemes:
        if not out or out[-1] != v:
            out.append(v)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TimedPhoneme:
    """A phoneme (in whatever alphabet the mapper understands) and where it sits in the audio, in seconds."""

    phoneme: str
    start: float
    end: float


def viseme_timeline(
    phonemes: Iterable[TimedPhoneme],
    to_visemes: Callable[[str], tuple[V, ...]] = ipa_visemes,
    *,
    prefix_marks: frozenset[str] = PREFIX_MARKS,
) -> list[VisemeEvent]:
    """Turn timed phonemes into a merged viseme timeline that loses no time.

    A phoneme with several visemes (a diphthong) splits its time evenly; a mark without a shape gives
    its time to its neighbour (the next phoneme for stress marks, else the previous one); gaps between
    phonemes become SIL; zero-length pieces are dropped and repeats merged.
    """
    pieces: list[list] = []  # [viseme, start, end], mutable while marks are folded in
    carry_from: float | None = None
    for ph in phonemes:
        if ph.end <= ph.start and ph.phoneme not in prefix_marks:
            continue
        visemes = to_visemes(ph.phoneme)
        start = ph.start if carry_from is None else min(carry_from, ph.start)
        if not visemes:
            if ph.phoneme in prefix_marks or not pieces:
                carry_from = start
            else:
                pieces[-1][2] = max(pieces[-1][2], ph.end)
            continue
        carry_from = None
        if pieces and start > pieces[-1][2] + MIN_GAP_SECONDS:
            pieces.append([V.SIL, pieces[-1][2], start])
        elif pieces and start > pieces[-1][2]:
            start = pieces[-1][2]
        step = (ph.end - start) / len(visemes)
        for k, viseme in enumerate(visemes):
            pieces.append([viseme, start + k * step, start + (k + 1) * step])
    events: list[VisemeEvent] = []
    for viseme, start, end in pieces:
        if end <= start:
            continue
        if events and events[-1].viseme == viseme and abs(events[-1].end - start) < 1e-6:
            events[-1] = VisemeEvent(viseme, events[-1].start, end)
        else:
            events.append(VisemeEvent(viseme, start, end))
    return events


class ChunkTimer:
    """Hands out absolute-time visemes and words to the audio chunks they start in.

    Engines know event times from the start of the sentence, but `SpeechChunk` wants them relative to
    each chunk, and a resampler may hold audio back so chunk borders move. Feed events as they become
    known, then call `take()` with each chunk's length: it returns the events starting inside that
    chunk, shifted to the chunk's start. Events starting past the end wait for a later chunk;
    `take(..., last=True)` flushes everything.
    """

    def __init__(self) -> None:
        self.elapsed = 0.0
        self._visemes: list[VisemeEvent] = []
        self._words: list[WordTiming] = []

    def add(self, visemes: Iterable[VisemeEvent] = (), words: Iterable[WordTiming] = ()) -> None:
        self._visemes.extend(visemes)
        self._words.extend(words)

    def take(self, seconds: float, last: bool = False) -> tuple[tuple[VisemeEvent, ...], tuple[WordTiming, ...]]:
        start, end = self.elapsed, self.elapsed + seconds
        self.elapsed = end
        due_v, self._visemes = _split_due(self._visemes, end, last)
        due_w, self._words = _split_due(self._words, end, last)
        visemes = tuple(VisemeEvent(e.viseme, max(0.0, e.start - start), max(0.0, e.end - start)) for e in due_v)
        words = tuple(WordTiming(w.text, max(0.0, w.start - start), max(0.0, w.end - start)) for w in due_w)
        return visemes, words


def _split_due(events: list, end: float, last: bool) -> tuple[list, list]:
    """Events are in time order: the due ones are a prefix."""
    n = len(events) if last else next((i for i, e in enumerate(events) if e.start >= end), len(events))
    return events[:n], events[n:]
