// The page: one live session with the avatar. Wires the websocket to the player (master clock),
// the video sink, subtitles, the microphone and the controls.
//
// Page options (query string): token, persona, codec=jpeg (force the JPEG stream), mode=handsfree,
// aec=0|1 (echo cancellation), stats=0|1 (overlay folded/unfolded; folded by default on phones).

import { Captions } from "./captions.js";
import { Connection, socketUrl } from "./connection.js";
import { micUnavailableReason } from "./mic.js";
import { Player } from "./player.js";
import { KIND_AUDIO, KIND_VIDEO, closeMeaning } from "./protocol.js";
import { StatsOverlay } from "./stats.js";
import { Talk } from "./talk.js";
import { Turns } from "./turns.js";
import { H264_PROBE, VideoSink, canDecodeH264 } from "./video.js";

const LOG_LINES = 60;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const options = {
  token: params.get("token") || "",
  persona: params.get("persona") || "",
  jpeg: params.get("codec") === "jpeg",
  mode: params.get("mode") === "handsfree" ? "handsfree" : "ptt",
  aec: params.get("aec"),
};

const ui = {
  state: $("state"),
  persona: $("persona"),
  stage: $("stage"),
  canvas: $("video"),
  caption: $("caption"),
  unmute: $("unmute"),
  closed: $("closed"),
  closedText: $("closed-text"),
  reconnect: $("reconnect"),
  progress: $("progress"),
  progressFill: $("progress-fill"),
  progressText: $("progress-text"),
  you: $("you"),
  talk: $("talk"),
  talkLabel: $("talk-label"),
  level: $("level"),
  stop: $("stop"),
  aec: $("aec"),
  micNote: $("mic-note"),
  ask: $("ask"),
  text: $("text"),
  log: $("log"),
};

const player = new Player();
const captions = new Captions(ui.caption);
const overlay = new StatsOverlay($("stats"));
// Folded on small screens, where it would cover the face; a tap unfolds it.
if (params.get("stats") === "0" || (params.get("stats") !== "1" && innerWidth < 520)) $("stats").classList.add("collapsed");

// Per-session state, reset by connect().
let conn = null;
let session = null; // the `ready` message
let serverState = "connecting";
let forceJpeg = options.jpeg;
const events = []; // received JSON messages, for the test hook
const sent = {}; // sent JSON messages by type
const sentLog = []; // the last ones

const video = new VideoSink(ui.canvas, {
  clock: () => player.clock().pts,
  isDropped: (turn) => turns.isDropped(turn),
  requestKeyframe: () => send({ type: "keyframe" }),
  onError: (message) => log("error", message),
});

const turns = new Turns({ player, video, captions, send });

const talk = new Talk({
  send,
  sendBinary: (buffer) => conn && conn.sendBinary(buffer),
  interrupt: () => {
    if (turns.unfinished().length) stopReply();
  },
  onActive: (active) => {
    ui.talk.classList.toggle("active", active);
    updateTalkLabel(active);
    showState();
  },
  onLevel: (peak) => {
    ui.level.style.width = `${Math.min(100, Math.round(Math.sqrt(peak) * 100))}%`;
  },
  onError: (message) => log("error", message),
});

function send(msg) {
  if (!conn) return;
  sent[msg.type] = (sent[msg.type] || 0) + 1;
  sentLog.push(msg);
  if (sentLog.length > 100) sentLog.shift();
  conn.send(msg);
}

function log(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  ui.log.append(li);
  while (ui.log.children.length > LOG_LINES) ui.log.firstChild.remove();
  ui.log.scrollTop = ui.log.scrollHeight;
}

function showState() {
  const state = talk.talking ? "listening" : serverState;
  ui.state.dataset.state = state;
  ui.state.textContent = state;
}

// ---- connection -------------------------------------------------------------------------------

async function connect() {
  if (conn) conn.close();
  talk.abandon();
  session = null;
  turns.reset();
  captions.reset();
  player.reset();
  video.close();
  ui.closed.hidden = true;
  serverState = "connecting";
  showState();
  const codecs = !forceJpeg && (await h264Supported(H264_PROBE)) ? ["h264", "jpeg"] : ["jpeg"];
  const hello = { codecs };
  if (options.persona) hello.persona = options.persona;
  conn = new Connection(socketUrl(options.token), hello, {
    onEvent,
    onMedia,
    onClose: (code, reason) => onClose(code, reason),
  });
}

function onClose(code, reason) {
  conn = null;
  talk.abandon();
  serverState = "disconnected";
  showState();
  const detail = reason ? `: ${reason}` : "";
  ui.closedText.textContent = `Disconnected: ${closeMeaning(code)}. [code ${code}${detail}]`;
  ui.closed.hidden = false;
  log("error", ui.closedText.textContent);
}

const h264Support = new Map(); // codec string -> Promise<boolean>

function h264Supported(codecString) {
  if (!h264Support.has(codecString)) h264Support.set(codecString, canDecodeH264(codecString));
  return h264Support.get(codecString);
}

async function onReady(msg) {
  const v = msg.video;
  ui.persona.textContent = [...new Set([msg.persona, msg.mode].filter(Boolean))].join(" · ");
  document.documentElement.style.setProperty("--ar", `${v.width / v.height}`);
  // Usually answered from the cache filled before hello; media arriving meanwhile are skipped.
  if (v.codec === "h264" && !(await h264Supported(v.codec_string))) {
    log("notice", `This browser cannot decode ${v.codec_string}; switching to JPEG.`);
    forceJpeg = true;
    connect();
    return;
  }
  video.configure(v, msg.audio.sample_rate);
  session = msg;
  captions.rate = msg.audio.sample_rate;
  try {
    await player.start(msg.audio.sample_rate, msg.lead_ms ?? 200);
  } catch (e) {
    log("error", `Audio: ${e.message || e}`);
  }
  updateUnmute();
}

/** The "tap for sound" button, while the browser holds audio back until a user gesture. */
function updateUnmute() {
  ui.unmute.hidden = player.running || !player.ctx;
}

function onEvent(msg) {
  events.push(msg);
  if (events.length > 500) events.shift();
  switch (msg.type) {
    case "ready":
      onReady(msg);
      break;
    case "state":
      serverState = msg.state;
      showState();
      break;
    case "transcript":
      ui.you.hidden = false;
      ui.you.textContent = `You: ${msg.text}`;
      ui.you.classList.toggle("partial", !msg.final);
      if (msg.final && msg.text) log("user", `You: ${msg.text}`);
      break;
    case "turn_start":
      turns.started(msg.turn);
      break;
    case "reply":
      turns.words(msg);
      break;
    case "turn_end": {
      const heard = turns.ended(msg); // a cut reply only up to where playback stopped
      if (heard) log("avatar", heard);
      break;
    }
    case "metrics":
      overlay.latency = msg;
      break;
    case "progress":
      showProgress(msg);
      break;
    case "notice":
      log("notice", msg.message);
      break;
    case "error":
      log("error", `${msg.message} (${msg.code})`);
      break;
  }
}

function onMedia(m) {
  if (!session) return;
  if (m.kind === KIND_VIDEO) {
    video.push(m.turn, m.pts, m.payload);
  } else if (m.kind === KIND_AUDIO) {
    if (turns.isDropped(m.turn)) return;
    if (m.turn > 0) turns.info(m.turn);
    player.push(m.turn, m.pts, m.payload);
  }
}

function stopReply() {
  send({ type: "interrupt" });
  turns.drop(turns.unfinished());
}

function showProgress(p) {
  ui.progress.hidden = false;
  if (p.steps) ui.progressFill.style.width = `${Math.round((100 * Math.min(p.step ?? 0, p.steps)) / p.steps)}%`;
  const parts = [];
  if (p.steps) parts.push(`step ${p.step} of ${p.steps}`);
  if (p.status) parts.push(p.status);
  if (p.attempts) parts.push(`attempt ${p.attempts}`);
  ui.progressText.textContent = parts.join(" · ");
}

// ---- the display loop -------------------------------------------------------------------------

let figures = {};

function frame() {
  if (session) {
    const clock = player.clock();
    video.render(clock.pts);
    captions.update(clock.pts);
  }
  requestAnimationFrame(frame);
}

// Reports and the overlay also run while the tab is hidden (no animation frames then).
setInterval(() => {
  if (!session) return;
  const clock = player.clock();
  captions.update(clock.pts);
  turns.report(clock);
  updateUnmute();
}, 100);

setInterval(() => {
  figures = overlay.update({
    drawn: video.stats.drawn,
    bytes: conn ? conn.bytes : 0,
    depthMs: player.depthMs(),
    video: video.stats,
    underruns: player.underruns,
    codec: session && session.video.codec,
    running: player.running,
  });
}, 500);

// ---- controls ---------------------------------------------------------------------------------

const micProblem = micUnavailableReason();
const coarsePointer = matchMedia("(pointer: coarse)").matches; // a phone: no space bar to mention

function updateTalkLabel(active) {
  if (talk.mode === "handsfree") ui.talkLabel.textContent = active ? "Listening — tap to stop" : "Start listening";
  else ui.talkLabel.textContent = active ? "Talking… release to send" : coarsePointer ? "Hold to talk" : "Hold to talk (or space)";
}

function setMode(mode) {
  talk.setMode(mode);
  ui.aec.checked = options.aec === null ? talk.echoCancellation : options.aec === "1";
  talk.echoCancellation = ui.aec.checked;
  updateTalkLabel(false);
}

function micBlocked() {
  if (!micProblem && conn && session) return false;
  ui.micNote.hidden = false;
  ui.micNote.textContent = micProblem || "Not connected.";
  return true;
}

ui.talk.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return;
  player.resume();
  if (micBlocked()) return;
  if (talk.mode === "handsfree") {
    if (talk.talking) talk.stop();
    else talk.start();
    return;
  }
  ui.talk.setPointerCapture(e.pointerId);
  talk.start();
});
for (const type of ["pointerup", "pointercancel"]) {
  ui.talk.addEventListener(type, () => {
    if (talk.mode === "ptt") talk.stop();
  });
}
ui.talk.addEventListener("contextmenu", (e) => e.preventDefault());
ui.talk.addEventListener("click", (e) => {
  // Keyboard activation (Enter) of the hands-free toggle; pointers are handled on pointerdown.
  if (e.detail !== 0 || talk.mode !== "handsfree" || micBlocked()) return;
  if (talk.talking) talk.stop();
  else talk.start();
});

function spaceTarget(e) {
  return e.code === "Space" && talk.mode === "ptt" && !["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName);
}
document.addEventListener("keydown", (e) => {
  player.resume();
  if (!spaceTarget(e)) return;
  e.preventDefault();
  if (!e.repeat && !micBlocked()) talk.start();
});
document.addEventListener("keyup", (e) => {
  if (!spaceTarget(e)) return;
  e.preventDefault();
  talk.stop();
});
document.addEventListener("pointerdown", () => player.resume());

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.checked = radio.value === options.mode;
  radio.addEventListener("change", () => radio.checked && setMode(radio.value));
}
ui.aec.addEventListener("change", () => talk.setEchoCancellation(ui.aec.checked));

ui.stop.addEventListener("click", () => {
  player.resume();
  stopReply();
});

ui.ask.addEventListener("submit", (e) => {
  e.preventDefault();
  player.resume();
  const text = ui.text.value.trim();
  if (!text || !conn) return;
  // "/say …" makes the avatar speak the words verbatim (operators, demos).
  if (text.startsWith("/say ")) send({ type: "say", text: text.slice(5).trim() });
  else send({ type: "text", text });
  ui.text.value = "";
});

ui.unmute.addEventListener("click", async () => {
  await player.resume();
  updateUnmute();
});
ui.reconnect.addEventListener("click", () => {
  player.resume();
  connect();
});

if (micProblem) {
  ui.talk.classList.add("unavailable");
  ui.talk.title = micProblem;
  ui.micNote.hidden = false;
  ui.micNote.textContent = micProblem;
}

// A hook for scripts and the browser tests: read-only figures plus the `say` shortcut.
window.dh = {
  say: (text) => send({ type: "say", text }),
  snapshot: () => ({
    connected: conn !== null && conn.isOpen,
    ready: session,
    state: ui.state.dataset.state,
    closed: ui.closed.hidden ? null : ui.closedText.textContent,
    clock: player.clock(),
    audio: {
      running: player.running,
      audioMode: player.audioMode,
      depthMs: player.depthMs(),
      outputDelayMs: player.ctx ? (player.ctx.currentTime - player.heardContextTime()) * 1000 : null,
      underruns: player.underruns,
      trimmed: player.trimmed,
      turns: Object.fromEntries(
        [...player.turnStats].map(([t, s]) => [t, { samples: s.samples, rms: Math.sqrt(s.sumSq / Math.max(1, s.samples)), peak: s.peak }]),
      ),
    },
    video: { ...video.stats, drawnByTurn: { ...video.stats.drawnByTurn }, queued: video.frames.length },
    figures,
    caption: captions.text,
    you: ui.you.textContent,
    dropped: [...turns.dropped],
    events: events.map((e) => ({ ...e })),
    sent: { ...sent },
    sentLog: sentLog.map((m) => ({ ...m })),
    mic: { open: talk.mic.open, sending: talk.sending, pts: talk.pts },
  }),
};

setMode(options.mode);
requestAnimationFrame(frame);
connect();
