// The replies (turns) of a session: which are still to be heard, dropping one everywhere at once
// (player, video, subtitles) and the `playback` reports that tell the server what the user heard.

import { joinWords } from "./captions.js";

const REPORT_EVERY_MS = 500; // `playback` while a turn plays

export class Turns {
  /** @param parts {player, video, captions, send(msg)} */
  constructor(parts) {
    this.parts = parts;
    this.reset();
  }

  reset() {
    this.turns = new Map(); // turn -> {endPts, droppedAt, words: [reply messages]}
    this.dropped = new Set();
    this.reportTurn = 0; // the turn the last `playback` report was about
    this.lastReport = 0;
  }

  info(turn) {
    if (!this.turns.has(turn)) this.turns.set(turn, { endPts: null, droppedAt: null, words: [] });
    return this.turns.get(turn);
  }

  isDropped(turn) {
    return this.dropped.has(turn);
  }

  started(turn) {
    this.info(turn);
    // An older reply that never ended normally must not play after (or over) the new one.
    const stale = [...this.turns.entries()].filter(([t, info]) => t < turn && info.endPts === null).map(([t]) => t);
    this.drop(stale);
  }

  words(msg) {
    if (this.dropped.has(msg.turn)) return;
    this.info(msg.turn).words.push(msg);
    this.parts.captions.add(msg.turn, msg.pts, msg.text);
  }

  /** A `turn_end`; returns the words the user heard of the reply, for the conversation log. */
  ended(msg) {
    const info = this.info(msg.turn);
    if (msg.interrupted) this.drop([msg.turn]);
    else {
      info.endPts = msg.pts;
      this.parts.captions.end(msg.turn, msg.pts);
    }
    const heard = info.words.filter((w) => info.droppedAt === null || w.pts < info.droppedAt);
    const text = heard.reduce((all, w) => joinWords(all, w.text.trim()), "");
    return text && info.droppedAt !== null ? `${text} …` : text;
  }

  /** Turns whose audio may still be queued or still to come. */
  unfinished() {
    const now = this.parts.player.clock().pts;
    return [...this.turns.entries()]
      .filter(([t, info]) => t > 0 && !this.dropped.has(t) && (info.endPts === null || info.endPts > now))
      .map(([t]) => t);
  }

  /** Drops everything held of these turns at once and tells the server how much was heard. */
  drop(list) {
    const fresh = list.filter((t) => t > 0 && !this.dropped.has(t));
    if (!fresh.length) return;
    const { player, video, captions, send } = this.parts;
    const clock = player.clock();
    for (const t of fresh) {
      this.dropped.add(t);
      this.info(t).droppedAt = clock.pts;
    }
    player.drop(fresh);
    video.drop(fresh);
    captions.drop(fresh, clock.pts);
    for (const t of fresh) send({ type: "playback", turn: t, played_samples: clock.pts });
    if (fresh.includes(this.reportTurn)) this.reportTurn = 0;
  }

  /** Called a few times a second with the audio clock. */
  report(clock) {
    // Nothing audible (an underrun), or the tail of a dropped turn under the wall clock: wait.
    if (clock.turn < 0 || this.dropped.has(clock.turn)) return;
    const { send } = this.parts;
    const now = performance.now();
    if (this.reportTurn > 0 && clock.turn !== this.reportTurn && !this.dropped.has(this.reportTurn)) {
      send({ type: "playback", turn: this.reportTurn, played_samples: clock.pts }); // heard to its end
      this.reportTurn = 0;
    }
    if (clock.turn > 0 && (clock.turn !== this.reportTurn || now - this.lastReport >= REPORT_EVERY_MS)) {
      send({ type: "playback", turn: clock.turn, played_samples: clock.pts });
      this.reportTurn = clock.turn;
      this.lastReport = now;
    }
  }
}
