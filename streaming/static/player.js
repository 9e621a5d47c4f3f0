// The audio player and master clock. Audio chunks go to an AudioWorklet (player-worklet.js) running
// in an AudioContext created at the stream's own rate, so no resampling touches the timing. The
// worklet reports, for every render quantum, which pts it rendered at which context time; the page
// asks the browser which context time is being *heard* now (getOutputTimestamp, i.e. after the output
// latency — large on phones and Bluetooth) and looks that moment up: video and subtitles follow the
// sound the user actually hears.
//
// Until the browser lets audio start (autoplay policy: a tap is needed), a wall clock stands in,
// anchored `lead` behind the newest audio received: the avatar already moves, silently.

const HISTORY_SECONDS = 1.5; // longest output latency we can map (Bluetooth is ~0.2-0.3 s)

export class Player {
  constructor() {
    this.ctx = null;
    this.node = null;
    this.rate = 0;
    this.lead = 0;
    this.history = []; // [contextTime, pts, played, turn] per render quantum, oldest first
    this.audioMode = false; // true once the worklet has played something: it owns the clock
    this.depth = 0;
    this.endPts = 0; // pts just after the newest sample received
    this.underruns = 0;
    this.trimmed = 0;
    this.turnStats = new Map(); // turn -> {samples, sumSq, peak}, what was really played
    this.wall = null; // {pts, t}: wall-clock anchor while audio cannot play
    this.generation = 0;
    this.segments = []; // {pts, turn} where the received stream changes turn
  }

  /** Creates the context at `rate`; it may stay suspended until a user gesture (see resume). */
  async start(rate, leadMs) {
    if (this.ctx && this.rate === rate) {
      this.lead = Math.round((leadMs * rate) / 1000);
      return;
    }
    await this.close();
    this.rate = rate;
    this.lead = Math.round((leadMs * rate) / 1000);
    if (!window.isSecureContext || typeof AudioWorkletNode === "undefined") {
      // The wall clock keeps video and subtitles going, silently.
      throw new Error(
        window.isSecureContext
          ? "off — this browser lacks AudioWorklet"
          : "off — browsers allow the audio worklet only on https:// pages (or http://localhost)",
      );
    }
    this.ctx = new AudioContext({ sampleRate: rate, latencyHint: "interactive" });
    await this.ctx.audioWorklet.addModule(new URL("player-worklet.js", import.meta.url));
    const ms = (x) => Math.round((x * rate) / 1000);
    this.node = new AudioWorkletNode(this.ctx, "dh-player", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: {
        generation: this.generation,
        prebuffer: ms(60),
        prebufferStep: ms(20),
        prebufferMax: ms(Math.max(60, Math.min(240, leadMs))),
        idleTarget: ms(leadMs + 60),
        idleMax: ms(leadMs + 250),
      },
    });
    this.node.port.onmessage = (e) => this.onReport(e.data);
    this.node.connect(this.ctx.destination);
  }

  get running() {
    return this.ctx !== null && this.ctx.state === "running";
  }

  /** Call from a user gesture: browsers only start audio after one. */
  async resume() {
    if (this.ctx && this.ctx.state !== "running" && this.ctx.state !== "closed") await this.ctx.resume();
  }

  push(turn, pts, payload) {
    this.endPts = pts + payload.byteLength / 2;
    const last = this.segments[this.segments.length - 1];
    if (!last || last.turn !== turn) {
      this.segments.push({ pts, turn });
      if (this.segments.length > 64) this.segments.shift();
    }
    if (!this.running || !this.node) {
      if (this.audioMode) this.leaveAudioMode();
      if (!this.wall) this.wall = { pts: Math.max(0, pts - this.lead), t: performance.now() };
      return;
    }
    // Copy into a fresh, aligned buffer we can transfer to the audio thread.
    const buffer = payload.slice().buffer;
    this.node.port.postMessage({ type: "pcm", turn, pts, buffer }, [buffer]);
  }

  /** Drops every queued sample of these turns at once (interrupt, Stop, a newer turn). */
  drop(turns) {
    if (this.node) this.node.port.postMessage({ type: "drop", turns });
  }

  leaveAudioMode() {
    // The context got suspended (iOS does this on a call, or the tab lost audio focus): the wall
    // clock takes over from where the sound stopped and the worklet's stale queue is discarded.
    const pts = this.clock().pts;
    this.audioMode = false;
    this.history = [];
    this.wall = { pts, t: performance.now() };
    this.node.port.postMessage({ type: "reset", generation: ++this.generation });
  }

  /** Forgets everything of the previous session (a reconnect starts pts from 0 again). */
  reset() {
    this.history = [];
    this.audioMode = false;
    this.wall = null;
    this.depth = 0;
    this.endPts = 0;
    this.turnStats = new Map();
    this.segments = [];
    if (this.node) this.node.port.postMessage({ type: "reset", generation: ++this.generation });
  }

  onReport(r) {
    if (r.generation !== this.generation) return;
    const e = r.entries;
    for (let i = 0; i < e.length; i += 4) {
      this.history.push([e[i], e[i + 1], e[i + 2], e[i + 3]]);
      if (e[i + 2] > 0) this.audioMode = true;
    }
    const oldest = e[e.length - 4] - HISTORY_SECONDS;
    let cut = 0;
    while (cut < this.history.length && this.history[cut][0] < oldest) cut++;
    if (cut) this.history.splice(0, cut);
    this.depth = r.depth;
    this.underruns = r.underruns;
    this.trimmed = r.trimmed;
    for (const [turn, [samples, sumSq, peak]] of r.turns) {
      const s = this.turnStats.get(turn) || { samples: 0, sumSq: 0, peak: 0 };
      s.samples += samples;
      s.sumSq += sumSq;
      s.peak = Math.max(s.peak, peak);
      this.turnStats.set(turn, s);
    }
  }

  /** The context time whose sound is reaching the speaker right now. */
  heardContextTime() {
    const ctx = this.ctx;
    if (ctx.getOutputTimestamp) {
      const ts = ctx.getOutputTimestamp();
      if (ts.contextTime > 0 && ts.performanceTime > 0) return ts.contextTime + (performance.now() - ts.performanceTime) / 1000;
    }
    return ctx.currentTime - (ctx.outputLatency || 0) - (ctx.baseLatency || 0);
  }

  /** {pts, turn}: the pts of the sample being heard now and its turn (-1 when nothing plays). */
  clock() {
    if (!this.audioMode || !this.history.length) {
      if (!this.wall) return { pts: 0, turn: -1 };
      let pts = Math.floor(this.wall.pts + ((performance.now() - this.wall.t) * this.rate) / 1000);
      if (pts >= this.endPts) {
        // Never run ahead of what arrived; re-anchor so a stall does not turn into a jump later.
        this.wall = { pts: this.endPts, t: performance.now() };
        return { pts: this.endPts, turn: -1 };
      }
      return { pts, turn: this.turnAt(pts) };
    }
    const t = this.heardContextTime();
    const h = this.history;
    let i = h.length - 1;
    while (i > 0 && h[i][0] > t) i--;
    const [t0, pts0, played, turn] = h[i];
    const into = Math.max(0, Math.floor((t - t0) * this.rate));
    if (i === h.length - 1) {
      // The newest report may be a few ms old: extrapolate, but not past what was buffered then.
      return { pts: pts0 + Math.min(into, played + this.depth), turn: played ? turn : -1 };
    }
    return { pts: pts0 + Math.min(into, played), turn: played ? turn : -1 };
  }

  /** The turn of the stream at `pts` while the wall clock stands in (the worklet knows otherwise). */
  turnAt(pts) {
    for (let i = this.segments.length - 1; i >= 0; i--) if (this.segments[i].pts <= pts) return this.segments[i].turn;
    return -1;
  }

  depthMs() {
    if (!this.audioMode) return 0;
    return (this.depth * 1000) / this.rate;
  }

  async close() {
    this.history = [];
    this.audioMode = false;
    this.wall = null;
    this.depth = 0;
    if (this.ctx) {
      const ctx = this.ctx;
      this.ctx = null;
      this.node = null;
      await ctx.close().catch(() => {});
    }
  }
}
