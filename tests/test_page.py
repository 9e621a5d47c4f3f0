"""The browser page end to end: Debian's Chromium (Playwright) against the real `digital-human serve`.

Everything is real: the server subprocess with its renderer, voice, Whisper and offline LLM, the page's
AudioWorklet player (Chromium plays into its fake output device in real time), WebCodecs H.264 and
JPEG decoding, and a WAV file as the microphone. Assertions read the page's `dh.snapshot()` hook:
what the worklet really played, what the canvas really drew, what the page sent.
Waits have generous timeouts that only catch a hang (2 shared cores; the offline LLM is slow there).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from tests.page_helpers import (
    CHROMIUM,
    INSECURE_HOST,
    browser_args,
    events_of,
    padded_speech,
    page_url,
    running_server,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
HANG_MS = 120_000
LLM_HANG_MS = 300_000
SAMPLE_RATE = 24000
SCREENSHOT = ROOT / "benchmarks" / "results" / "page.png"
SCREENSHOT_MAX_BYTES = 150_000


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    path = tmp_path_factory.mktemp("mic") / "fox.wav"
    return path, padded_speech(ROOT / "tests" / "data" / "audio" / "en" / "quick_brown_fox.wav", path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("serve"), model_cache) as url:
        yield url


@pytest.fixture(scope="module")
def browser(mic_wav: tuple[Path, float]) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the page tests need Debian's Chromium (apt-get install -y chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=browser_args(mic_wav[0]))
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 760, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page threw: {errors}"


def open_page(page: Page, server: str, **query: str) -> dict[str, Any]:
    page.goto(page_url(server, **query))
    page.wait_for_function("() => dh.snapshot().ready !== null", timeout=HANG_MS)
    return snapshot(page)


def snapshot(page: Page) -> dict[str, Any]:
    return page.evaluate("dh.snapshot()")


def wait_for(page: Page, condition: str, timeout: int = HANG_MS) -> dict[str, Any]:
    """Waits until `condition` (JS over the snapshot `s`) holds; returns that very snapshot."""
    script = f"() => {{ const s = dh.snapshot(); return ({condition}) ? s : null; }}"
    handle = page.wait_for_function(script, timeout=timeout)
    return handle.json_value()


def canvas_contrast(page: Page) -> float:
    """Standard deviation of the canvas' luma: ~0 for an empty or flat canvas, tens for a face."""
    return page.evaluate(
        """() => {
        const c = document.getElementById('video');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0, s2 = 0, n = 0;
        for (let i = 0; i < d.length; i += 4 * 31) {
            const y = (d[i] + d[i + 1] + d[i + 2]) / 3; s += y; s2 += y * y; n++;
        }
        const m = s / n; return Math.sqrt(Math.max(0, s2 / n - m * m));
    }"""
    )


def say_and_wait_for_turn(page: Page, text: str) -> tuple[int, dict[str, Any]]:
    page.evaluate("text => dh.say(text)", text)
    s = wait_for(page, "s.events.some(e => e.type === 'turn_start' && e.source === 'say')")
    return events_of(s, "turn_start")[-1]["turn"], s


def wait_until_played(page: Page, turn: int, timeout: int = HANG_MS) -> dict[str, Any]:
    """Until the server ended `turn` and the page's audio clock has passed its last sample."""
    return wait_for(
        page, f"s.events.some(e => e.type === 'turn_end' && e.turn === {turn} && s.clock.pts >= e.pts)", timeout
    )


def turn_bounds(s: dict[str, Any], turn: int) -> tuple[int, int]:
    start = next(e for e in events_of(s, "turn_start") if e["turn"] == turn)
    end = next(e for e in events_of(s, "turn_end") if e["turn"] == turn)
    return start["pts"], end["pts"]


def keep_screenshot(page: Page, tmp_path: Path) -> None:
    """The page as a test artefact; a palette copy goes to benchmarks/results when it is small."""
    png = tmp_path / "page.png"
    page.screenshot(path=png)
    small = io.BytesIO()
    Image.open(png).convert("RGB").quantize(colors=96).save(small, "PNG", optimize=True)
    if small.tell() < SCREENSHOT_MAX_BYTES:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(small.getvalue())


@pytest.mark.parametrize("codec", ["h264", "jpeg"])
def test_idle_stream_is_drawn_on_the_audio_clock(page: Page, server: str, codec: str) -> None:
    ready = open_page(page, server, codec=codec)["ready"]
    assert ready["video"]["codec"] == codec  # Chromium has WebCodecs H.264; ?codec=jpeg forces JPEG
    first = wait_for(page, "s.video.drawn >= 25 && s.audio.audioMode")  # a second of idle video
    later = wait_for(page, f"s.video.drawn >= {first['video']['drawn'] + 25}")
    assert later["clock"]["pts"] > first["clock"]["pts"]  # the worklet plays the idle silence: the clock runs
    assert later["video"]["errors"] == 0
    assert later["video"]["drawnByTurn"]["0"] == later["video"]["drawn"]  # all idle frames
    assert canvas_contrast(page) > 10, "the canvas shows no picture"
    assert later["audio"]["turns"]["0"]["peak"] == 0  # idle audio is digital silence


@pytest.mark.parametrize("codec", ["h264", "jpeg"])
def test_say_is_heard_seen_and_subtitled_in_sync(page: Page, server: str, codec: str, tmp_path: Path) -> None:
    open_page(page, server, codec=codec)
    wait_for(page, "s.audio.audioMode")
    turn, _ = say_and_wait_for_turn(page, "Hello there. The quick brown fox jumps over the lazy dog.")

    shown = wait_for(page, "s.caption !== ''")
    first_words = next(e for e in events_of(shown, "reply") if e["turn"] == turn)
    assert shown["clock"]["pts"] >= first_words["pts"], "the subtitle ran ahead of the voice"
    assert shown["caption"].startswith(first_words["text"].strip()[:10])
    if codec == "h264":
        keep_screenshot(page, tmp_path)

    start, end = turn_bounds(wait_until_played(page, turn), turn)
    # The worklet's per-turn counts arrive with its next report (every ~21 ms).
    s = wait_for(page, f"(s.audio.turns['{turn}'] || {{samples: 0}}).samples >= {end - start}")
    played = s["audio"]["turns"][str(turn)]
    assert played["samples"] == end - start  # every sample of the reply went through the worklet, none twice
    assert played["rms"] > 0.01  # and it was speech, not silence
    frames = (end - start) / (SAMPLE_RATE / s["ready"]["video"]["fps"])
    # Frames that miss their moment are dropped by design; on a loaded 2-core machine some do.
    assert s["video"]["drawnByTurn"][str(turn)] >= 0.5 * frames
    assert s["video"]["errors"] == 0
    # The last `playback` report of the turn tells the server it was heard to its end.
    wait_for(page, f"s.sentLog.some(m => m.type === 'playback' && m.turn === {turn} && m.played_samples >= {end})")
    assert "fox" in " ".join(e["text"] for e in events_of(s, "reply") if e["turn"] == turn)


def test_typed_message_is_answered_by_the_offline_llm(page: Page, server: str) -> None:
    open_page(page, server)
    page.fill("#text", "What colour is the sky on a clear day?")
    page.press("#text", "Enter")
    s = wait_for(page, "s.events.some(e => e.type === 'turn_start' && e.source === 'text')", LLM_HANG_MS)
    turn = events_of(s, "turn_start")[-1]["turn"]
    s = wait_until_played(page, turn, LLM_HANG_MS)
    assert s["sent"]["text"] == 1
    assert "thinking" in [e["state"] for e in events_of(s, "state")]
    words = " ".join(e["text"] for e in events_of(s, "reply") if e["turn"] == turn)
    assert words.strip(), "the reply had no words"
    assert s["audio"]["turns"][str(turn)]["rms"] > 0.01
    assert s["video"]["drawnByTurn"][str(turn)] > 0
    assert page.input_value("#text") == ""


def test_stop_cuts_the_reply_at_once(page: Page, server: str) -> None:
    open_page(page, server)
    wait_for(page, "s.audio.audioMode")
    text = " ".join(f"This is sentence number {n} of a long answer that nobody wants to hear." for n in range(1, 7))
    turn, _ = say_and_wait_for_turn(page, text)
    wait_for(page, f"(s.audio.turns['{turn}'] || {{samples: 0}}).samples >= {SAMPLE_RATE // 2}")

    page.click("#stop")
    at_stop = snapshot(page)
    s = wait_for(page, f"s.events.some(e => e.type === 'turn_end' && e.turn === {turn} && e.interrupted)")
    page.wait_for_timeout(1500)  # time in which the reply would have gone on playing
    after = snapshot(page)

    heard = at_stop["audio"]["turns"][str(turn)]["samples"]
    assert after["audio"]["turns"][str(turn)]["samples"] - heard < 0.3 * SAMPLE_RATE  # report lag, not speech
    assert turn in at_stop["dropped"]
    assert at_stop["sent"]["interrupt"] == 1
    assert heard < 5 * SAMPLE_RATE  # a reply of ~30 s cut early: the 1.5 s waited would have been speech
    # Right after `interrupt`, the page tells the server how far the user heard the reply.
    sent = after["sentLog"]
    stop_at = next(i for i, m in enumerate(sent) if m["type"] == "interrupt")
    report = next(m for m in sent[stop_at:] if m["type"] == "playback" and m["turn"] == turn)
    start, _ = turn_bounds(s, turn)
    assert abs(report["played_samples"] - (start + heard)) < 0.3 * SAMPLE_RATE
    assert at_stop["caption"].endswith("…")  # the cut subtitle says so
    # The idle stream takes over: frames of turn 0 are drawn again.
    idle = after["video"]["drawnByTurn"]["0"]
    assert wait_for(page, f"s.video.drawnByTurn['0'] > {idle}")["state"] in ("idle", "listening")


@pytest.mark.parametrize("mode", ["ptt", "handsfree"])
def test_microphone_speech_is_transcribed(page: Page, server: str, mic_wav: tuple[Path, float], mode: str) -> None:
    _, seconds = mic_wav
    open_page(page, server, mode=mode)
    if mode == "ptt":
        page.keyboard.down("Space")  # the WAV starts when getUserMedia opens the fake device
        wait_for(page, f"s.mic.pts >= {int(16000 * (seconds + 0.2))}", HANG_MS)
        page.keyboard.up("Space")
    else:
        page.click("#talk")  # hands-free: the server's voice detector ends the turn
    s = wait_for(page, "s.events.some(e => e.type === 'transcript' && e.final)", LLM_HANG_MS)
    heard = next(e for e in events_of(s, "transcript") if e["final"])["text"].lower()
    words = {"quick", "brown", "fox", "lazy", "dog"}
    assert len({w for w in words if w in heard}) >= 4, heard
    assert s["sent"]["audio_start"] == 1
    assert s["you"].lower().startswith("you: the quick")
    if mode == "ptt":
        assert wait_for(page, "s.sent.audio_stop === 1")


UNDERRUN_SCRIPT = """async () => {
    const { Player } = await import('/static/player.js');
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const until = async (check) => {
        for (let i = 0; i < 3000 && !check(); i++) await sleep(20);
        if (!check()) throw new Error('timed out');
    };
    const chunk = (pts) => {
        const a = new Int16Array(960);
        for (let i = 0; i < 960; i++) a[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * (pts + i)) / 24000));
        return new Uint8Array(a.buffer);
    };
    const p = new Player();
    await p.start(24000, 160);
    const played = () => (p.turnStats.get(7) || { samples: 0 }).samples;
    for (let k = 0; k < 12; k++) p.push(7, k * 960, chunk(k * 960));
    await until(() => p.underruns > 0);
    await sleep(300); // starved: the worklet plays silence
    const starved = { clock: p.clock(), played: played(), underruns: p.underruns };
    for (let k = 12; k < 24; k++) p.push(7, k * 960, chunk(k * 960));
    await until(() => played() >= 24 * 960);
    await sleep(100);
    const result = { starved, after: p.clock(), played: played(), underruns: p.underruns };
    await p.close();
    return result;
}"""


def test_an_underrun_plays_silence_and_holds_the_clock(page: Page, server: str) -> None:
    """The page's own Player module, fed by hand with a gap: the worklet and the clock as the page uses them."""
    open_page(page, server)
    r = page.evaluate(UNDERRUN_SCRIPT)
    assert r["starved"]["underruns"] == 1
    assert r["starved"]["played"] == 12 * 960
    assert r["starved"]["clock"] == {"pts": 12 * 960, "turn": -1}  # frozen at the last sample, not running on
    assert r["played"] == 24 * 960  # after the gap nothing was lost or played twice
    assert r["after"] == {"pts": 24 * 960, "turn": -1}  # and the end of the second batch starves it again
    assert r["underruns"] == 2


def test_a_close_code_is_explained_and_reconnect_works(page: Page, server: str) -> None:
    """Contract test for the refusal: Playwright stands in for a server closing with 4401 (wrong token);
    the reconnect then reaches the real server."""
    attempts: list[str] = []

    def route(ws: Any) -> None:
        attempts.append(ws.url)
        if len(attempts) == 1:
            ws.close(code=4401, reason="token missing or wrong")
        else:
            ws.connect_to_server()

    page.route_web_socket(re.compile(r"/ws"), route)
    page.goto(page_url(server))
    s = wait_for(page, "s.closed !== null")
    assert "[code 4401" in s["closed"] and "access token is missing or wrong" in s["closed"]
    assert s["state"] == "disconnected"
    assert page.is_visible("#reconnect")
    page.click("#reconnect")
    s = wait_for(page, "s.ready !== null && s.video.drawn > 0")
    assert len(attempts) == 2 and s["closed"] is None


def test_an_insecure_page_explains_the_microphone_and_still_shows_the_avatar(page: Page, server: str) -> None:
    port = urlsplit(server).port
    page.goto(f"http://{INSECURE_HOST}:{port}/")
    assert page.evaluate("window.isSecureContext") is False
    s = wait_for(page, "s.ready !== null && s.video.drawn >= 10")
    assert s["ready"]["video"]["codec"] == "jpeg"  # WebCodecs needs a secure context too
    assert not s["audio"]["audioMode"]  # no worklet: the wall clock paces the frames
    note = page.inner_text("#mic-note")
    assert "https://" in note and "localhost" in note
    assert "unavailable" in (page.get_attribute("#talk", "class") or "")
    page.click("#talk")
    assert snapshot(page)["sent"].get("audio_start") is None
    assert "audio worklet only on https://" in page.inner_text("#log")
