// The microphone: getUserMedia → capture worklet (16 kHz PCM16 chunks). The stream stays open between
// push-to-talk presses, so a press starts sending at once instead of after a permission/device start.

import { MIC_RATE } from "./protocol.js";

const CHUNK = MIC_RATE / 25; // 40 ms per message

/** Why the microphone cannot work on this page, or "" when it can. */
export function micUnavailableReason() {
  if (!window.isSecureContext) {
    return "The microphone needs a secure page: open it over https:// (or on this computer via http://localhost).";
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return "This browser gives pages no microphone access.";
  if (typeof AudioWorkletNode === "undefined") return "This browser lacks AudioWorklet, which the microphone capture needs.";
  return "";
}

export class Microphone {
  /** @param onChunk (pcm: Int16Array, peak: number) for every 40 ms captured */
  constructor(onChunk) {
    this.onChunk = onChunk;
    this.ctx = null;
    this.stream = null;
    this.echoCancellation = null;
    this.flushWaiter = null;
  }

  get open() {
    return this.stream !== null;
  }

  /** Opens the device (or reopens it when the echo-cancellation choice changed). */
  async ensure(echoCancellation) {
    if (this.stream && this.echoCancellation === echoCancellation) {
      if (this.ctx.state !== "running") await this.ctx.resume();
      return;
    }
    this.close();
    // The worklet must be ready before the device starts: samples that arrive earlier are lost.
    const ctx = new AudioContext({ latencyHint: "interactive" });
    this.ctx = ctx;
    await ctx.audioWorklet.addModule(new URL("capture-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(ctx, "dh-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit", // stereo devices are mixed down to mono
      processorOptions: { outRate: MIC_RATE, chunk: CHUNK },
    });
    node.port.onmessage = (e) => this.onMessage(e.data);
    // Raw samples except, optionally, echo cancellation: noise suppression and automatic gain
    // control distort speech for the recogniser more than they help it.
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
    if (this.ctx !== ctx) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    const source = ctx.createMediaStreamSource(stream);
    // A worklet only runs when something pulls it: a muted path to the speakers does.
    source.connect(node).connect(new GainNode(ctx, { gain: 0 })).connect(ctx.destination);
    await ctx.resume();
    this.node = node;
    this.stream = stream;
    this.echoCancellation = echoCancellation;
  }

  onMessage(msg) {
    this.onChunk(msg.pcm, msg.peak);
    if (this.flushWaiter && msg.pcm.length < CHUNK) {
      this.flushWaiter();
      this.flushWaiter = null;
    }
  }

  /** Delivers the partial chunk the worklet still holds; resolves once it has been handed over. */
  flush() {
    if (!this.node) return Promise.resolve();
    return new Promise((resolve) => {
      this.flushWaiter = resolve;
      this.node.port.postMessage("flush");
      setTimeout(resolve, 250); // a suspended context never answers
    });
  }

  close() {
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) this.ctx.close().catch(() => {});
    this.stream = null;
    this.ctx = null;
    this.node = null;
    this.echoCancellation = null;
  }
}
