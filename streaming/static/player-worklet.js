// Audio thread of the player: a queue of PCM16 chunks (each tagged with its turn and pts) played at
// the context's rate, which the page creates equal to the stream's rate. It is the session's master
// clock, so every render quantum is reported as (context time, pts of its first sample, samples
// actually played): the page maps the moment a sample is heard back to its pts without guessing.
// An underrun plays silence and freezes the clock (no sample, no progress); playback resumes once a
// small prebuffer has arrived, so a late network does not turn into a stutter.

const REPORT_EVERY = 4; // quanta per message to the page (~21 ms at 24 kHz)

class Player extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions;
    this.prebuffer = opts.prebuffer; // samples needed before (re)starting
    this.prebufferStep = opts.prebufferStep;
    this.prebufferMax = opts.prebufferMax;
    this.idleTarget = opts.idleTarget; // idle backlog above idleMax is trimmed down to this
    this.idleMax = opts.idleMax;
    this.queue = []; // {turn, pts, pcm: Int16Array, off}
    this.depth = 0; // queued samples not yet played
    this.primed = false;
    this.nextPts = 0; // pts of the next sample to play
    this.underruns = 0;
    this.trimmed = 0;
    this.entries = new Float64Array(REPORT_EVERY * 4);
    this.nEntries = 0;
    this.turnStats = new Map(); // turn -> [samples, sum of squares, peak] since the last report
    this.generation = opts.generation; // bumped by "reset" (a new session): the page ignores older reports
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "pcm") {
      const pcm = new Int16Array(msg.buffer);
      this.queue.push({ turn: msg.turn, pts: msg.pts, pcm, off: 0 });
      this.depth += pcm.length;
    } else if (msg.type === "drop") {
      // Drop every queued sample of the given turns, wherever they sit in the queue.
      const turns = new Set(msg.turns);
      const kept = this.queue.filter((c) => !turns.has(c.turn));
      this.queue = kept;
      this.depth = kept.reduce((n, c) => n + c.pcm.length - c.off, 0);
    } else if (msg.type === "reset") {
      this.queue = [];
      this.depth = 0;
      this.primed = false;
      this.nextPts = 0;
      this.nEntries = 0;
      this.turnStats = new Map();
      this.generation = msg.generation;
    }
  }

  trimIdleBacklog() {
    // A burst after a network stall leaves more buffered than the server's lead: latency would stay
    // that high for the whole session. Silence of the idle stream (turn 0) is skipped to catch up;
    // speech is never skipped.
    while (this.depth > this.idleMax && this.queue.length > 1 && this.queue[0].turn === 0) {
      const head = this.queue[0];
      const left = head.pcm.length - head.off;
      if (this.depth - left < this.idleTarget) break;
      this.queue.shift();
      this.depth -= left;
      this.trimmed += left;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const n = out.length;
    this.trimIdleBacklog();
    if (!this.primed && this.depth >= this.prebuffer) this.primed = true;
    const startPts = this.queue.length && this.primed ? this.queue[0].pts + this.queue[0].off : this.nextPts;
    const startTurn = this.queue.length && this.primed ? this.queue[0].turn : -1;
    let i = 0;
    while (this.primed && i < n && this.queue.length) {
      const head = this.queue[0];
      const take = Math.min(n - i, head.pcm.length - head.off);
      let stats = this.turnStats.get(head.turn);
      if (!stats) this.turnStats.set(head.turn, (stats = [0, 0, 0]));
      for (let k = 0; k < take; k++) {
        const s = head.pcm[head.off + k] / 32768;
        out[i + k] = s;
        stats[1] += s * s;
        if (Math.abs(s) > stats[2]) stats[2] = Math.abs(s);
      }
      stats[0] += take;
      i += take;
      head.off += take;
      this.depth -= take;
      this.nextPts = head.pts + head.off;
      if (head.off === head.pcm.length) this.queue.shift();
    }
    if (i < n) {
      out.fill(0, i);
      if (this.primed) {
        // Ran dry: wait for a larger cushion next time (a jitter buffer that grows with the jitter).
        this.primed = false;
        this.underruns += 1;
        this.prebuffer = Math.min(this.prebuffer + this.prebufferStep, this.prebufferMax);
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    const e = this.nEntries * 4;
    this.entries[e] = currentTime;
    this.entries[e + 1] = startPts;
    this.entries[e + 2] = i;
    this.entries[e + 3] = startTurn;
    this.nEntries += 1;
    if (this.nEntries === REPORT_EVERY) this.report();
    return true;
  }

  report() {
    this.port.postMessage({
      generation: this.generation,
      entries: this.entries.slice(),
      depth: this.depth,
      endPts: this.queue.length ? this.queue[this.queue.length - 1].pts + this.queue[this.queue.length - 1].pcm.length : this.nextPts,
      underruns: this.underruns,
      trimmed: this.trimmed,
      turns: [...this.turnStats],
    });
    this.nEntries = 0;
    this.turnStats = new Map();
  }
}

registerProcessor("dh-player", Player);
