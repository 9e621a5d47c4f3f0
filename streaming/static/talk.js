// Talking to the avatar: push-to-talk (hold the button or the space bar) or hands-free (the
// microphone stays open and the server's voice detector decides where turns start and end, barge-in
// included). Microphone chunks go out as kind-3 messages between `audio_start` and `audio_stop`.
//
// Echo cancellation: raw samples transcribe best, and in push-to-talk the avatar is silent while you
// hold the button (pressing it interrupts the reply), so nothing needs cancelling: off by default.
// Hands-free keeps the microphone open while the avatar speaks: through speakers its own voice would
// reach the microphone, be heard as the user and interrupt itself, so there it is on by default.
// With headphones it can be turned off for the cleanest recognition.

import { MIC_RATE, packMic } from "./protocol.js";
import { Microphone } from "./mic.js";

const HANGOVER_MS = 200; // keep sending briefly after release: the last consonant is often late

export class Talk {
  /**
   * @param hooks {send(msg), sendBinary(buf), interrupt(), onActive(active), onLevel(peak), onError(message)}
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.mic = new Microphone((pcm, peak) => this.onChunk(pcm, peak));
    this.mode = "ptt";
    this.echoCancellation = false;
    this.talking = false; // the user wants the microphone on (button held / hands-free on)
    this.sending = false; // between audio_start and audio_stop
    this.press = 0;
    this.pts = 0;
  }

  setMode(mode) {
    this.stop(true);
    this.mode = mode;
    this.echoCancellation = mode === "handsfree";
  }

  async setEchoCancellation(on) {
    this.echoCancellation = on;
    if (this.talking && this.mode === "handsfree") {
      await this.stop(true);
      await this.start();
    }
  }

  async start() {
    this.press += 1;
    const press = this.press;
    this.talking = true;
    this.hooks.onActive(true);
    if (this.mode === "ptt") this.hooks.interrupt();
    if (this.sending) return; // pressed again during the hangover: the same utterance goes on
    try {
      await this.mic.ensure(this.echoCancellation);
    } catch (e) {
      this.talking = false;
      this.hooks.onActive(false);
      this.hooks.onError(micErrorText(e));
      return;
    }
    if (!this.talking || press !== this.press) return; // released before the device was ready
    this.pts = 0;
    this.sending = true;
    this.hooks.send({ type: "audio_start", sample_rate: MIC_RATE });
  }

  /** Ends the utterance: after a short hangover, unless `now` (mode switch, disconnect). */
  async stop(now = false) {
    if (!this.talking && !this.sending) return;
    this.talking = false;
    this.hooks.onActive(false);
    const press = this.press;
    if (!this.sending) return;
    if (!now) {
      await new Promise((r) => setTimeout(r, HANGOVER_MS));
      if (press !== this.press) return;
      await this.mic.flush();
      if (press !== this.press) return;
    }
    this.sending = false;
    this.hooks.send({ type: "audio_stop" });
  }

  /** The connection is gone: whatever was being sent is over; the device stays open for later. */
  abandon() {
    this.talking = false;
    this.sending = false;
    this.hooks.onActive(false);
  }

  onChunk(pcm, peak) {
    this.hooks.onLevel(peak);
    if (!this.sending || !pcm.length) return;
    this.hooks.sendBinary(packMic(this.pts, pcm));
    this.pts += pcm.length;
  }
}

function micErrorText(e) {
  if (e && e.name === "NotAllowedError") return "Microphone permission was denied: allow it in the browser's site settings.";
  if (e && e.name === "NotFoundError") return "No microphone was found.";
  if (e && e.name === "NotReadableError") return "The microphone is busy or unavailable (another app may be using it).";
  return `Microphone: ${(e && e.message) || e}`;
}
