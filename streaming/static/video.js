// Video: decodes the stream's frames (H.264 through WebCodecs, or JPEG) as they arrive and keeps them
// in pts order until the audio clock reaches them; the caller draws the due one each display frame.
// H.264 frames are always decoded, even those of a dropped turn: later frames reference them.

export const H264_PROBE = "avc1.42E01F"; // baseline 3.1, what the server's libx264 produces

/** True when this browser can decode H.264 with WebCodecs (needs a secure context). */
export async function canDecodeH264(codecString = H264_PROBE) {
  if (typeof VideoDecoder === "undefined" || !VideoDecoder.isConfigSupported) return false;
  try {
    const support = await VideoDecoder.isConfigSupported({ codec: codecString, optimizeForLatency: true });
    return support.supported === true;
  } catch {
    return false;
  }
}

const MAX_QUEUED = 50; // 2 s at 25 fps: beyond that the display has stalled (hidden tab)

export class VideoSink {
  /**
   * @param canvas where frames are drawn
   * @param hooks {clock(): number, isDropped(turn): boolean, requestKeyframe(), onError(message)}
   */
  constructor(canvas, hooks) {
    this.canvas = canvas;
    this.g = canvas.getContext("2d");
    this.hooks = hooks;
    this.frames = []; // {pts, turn, image} sorted by pts; image is an ImageBitmap
    this.decoder = null;
    this.generation = 0;
    this.resetStats();
  }

  resetStats() {
    this.stats = { received: 0, decoded: 0, drawn: 0, late: 0, skipped: 0, lost: 0, errors: 0, bytes: 0, drawnByTurn: {} };
    this.lastPts = -1;
  }

  /** Starts a session's stream: {codec, codec_string, width, height, fps} from `ready`. */
  configure(video, sampleRate) {
    this.close();
    this.generation += 1;
    this.codec = video.codec;
    this.codecString = video.codec_string || H264_PROBE;
    this.frameSamples = Math.round(sampleRate / video.fps);
    this.canvas.width = video.width;
    this.canvas.height = video.height;
    this.resetStats();
    if (this.codec === "h264") this.openDecoder();
  }

  openDecoder() {
    const generation = this.generation;
    this.turnOfPts = new Map();
    this.needKey = true;
    this.decoder = new VideoDecoder({
      output: (frame) => this.onDecoded(frame, generation),
      error: (e) => this.onDecoderError(e, generation),
    });
    this.decoder.configure({ codec: this.codecString, optimizeForLatency: true });
  }

  onDecoderError(e, generation) {
    if (generation !== this.generation) return;
    this.stats.errors += 1;
    this.hooks.onError(`video decoder: ${e.message || e}`);
    this.openDecoder();
    this.hooks.requestKeyframe();
  }

  /** One video message: payload is the flags byte then the picture. */
  push(turn, pts, payload) {
    this.stats.received += 1;
    this.stats.bytes += payload.byteLength;
    if (this.lastPts >= 0 && pts > this.lastPts + this.frameSamples) {
      // The server skipped frames because our socket was full (back-pressure): count them.
      this.stats.lost += Math.round((pts - this.lastPts) / this.frameSamples) - 1;
    }
    this.lastPts = pts;
    const key = (payload[0] & 1) === 1;
    const data = payload.subarray(1);
    if (this.codec === "h264") {
      if (this.needKey && !key) {
        if (!this.keyRequested) this.hooks.requestKeyframe();
        this.keyRequested = true;
        return;
      }
      this.needKey = false;
      this.keyRequested = false;
      this.turnOfPts.set(pts, turn);
      this.decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp: pts, data }));
      return;
    }
    if (this.hooks.isDropped(turn)) return;
    const generation = this.generation;
    createImageBitmap(new Blob([data], { type: "image/jpeg" })).then(
      (image) => this.enqueue(pts, turn, image, generation),
      () => {
        this.stats.errors += 1;
      },
    );
  }

  onDecoded(frame, generation) {
    const pts = frame.timestamp;
    const turn = this.turnOfPts.get(pts) ?? 0;
    this.turnOfPts.delete(pts);
    if (generation !== this.generation || this.hooks.isDropped(turn)) {
      frame.close();
      return;
    }
    // A decoder has a small pool of output frames and stalls when the page holds them: copy each
    // into an ImageBitmap and hand the frame back at once.
    createImageBitmap(frame).then(
      (image) => {
        frame.close();
        this.enqueue(pts, turn, image, generation);
      },
      () => {
        frame.close();
        this.stats.errors += 1;
      },
    );
  }

  enqueue(pts, turn, image, generation) {
    if (generation !== this.generation || this.hooks.isDropped(turn)) {
      image.close();
      return;
    }
    this.stats.decoded += 1;
    if (pts + this.frameSamples <= this.hooks.clock()) {
      this.stats.late += 1; // its whole display slot has already passed
      image.close();
      return;
    }
    let i = this.frames.length;
    while (i > 0 && this.frames[i - 1].pts > pts) i--;
    this.frames.splice(i, 0, { pts, turn, image });
    while (this.frames.length > MAX_QUEUED) {
      this.frames.shift().image.close();
      this.stats.skipped += 1;
    }
  }

  /** Forgets the queued frames of these turns (interrupt, Stop, a newer turn). */
  drop(turns) {
    const gone = new Set(turns);
    this.frames = this.frames.filter((f) => {
      if (gone.has(f.turn)) f.image.close();
      return !gone.has(f.turn);
    });
  }

  /** Draws the newest frame whose time has come; older undrawn ones count as skipped. */
  render(clockPts) {
    let due = -1;
    while (due + 1 < this.frames.length && this.frames[due + 1].pts <= clockPts) due++;
    if (due < 0) return;
    const shown = this.frames[due];
    for (let i = 0; i < due; i++) {
      this.frames[i].image.close();
      this.stats.skipped += 1;
    }
    this.frames.splice(0, due + 1);
    this.g.drawImage(shown.image, 0, 0, this.canvas.width, this.canvas.height);
    shown.image.close();
    this.stats.drawn += 1;
    this.stats.drawnByTurn[shown.turn] = (this.stats.drawnByTurn[shown.turn] || 0) + 1;
  }

  close() {
    this.generation += 1;
    for (const f of this.frames) f.image.close();
    this.frames = [];
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
  }
}
