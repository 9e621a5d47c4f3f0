// Subtitles: the server sends each reply's words ahead of time with the pts where they start; they
// appear when the audio clock gets there, so the text never runs ahead of the voice.

const SHOW_CHARS = 160; // about two lines on a phone
const HOLD_SECONDS = 3; // how long the last words stay after the reply ends
const CJK = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]/;

/** Joins two runs of words: a space between words, none next to Chinese/Japanese characters. */
export function joinWords(a, b) {
  if (!a) return b;
  if (!b) return a;
  if (/\s$/.test(a) || /^\s/.test(b) || CJK.test(a.at(-1)) || CJK.test(b[0])) return a + b;
  return `${a} ${b}`;
}

export class Captions {
  constructor(element) {
    this.el = element;
    this.rate = 24000;
    this.reset();
  }

  reset() {
    this.pending = []; // {turn, pts, text} sorted by pts
    this.turn = -1; // the turn whose words are on screen
    this.shown = [];
    this.endPts = Infinity;
    this.cut = false;
    this.text = "";
    this.paint();
  }

  add(turn, pts, text) {
    let i = this.pending.length;
    while (i > 0 && this.pending[i - 1].pts > pts) i--;
    this.pending.splice(i, 0, { turn, pts, text });
  }

  /** The reply ended normally at `pts`: its words stay a moment, then go. */
  end(turn, pts) {
    if (turn === this.turn) this.endPts = pts;
    else this.pending.filter((p) => p.turn === turn).forEach((p) => (p.endPts = pts));
  }

  /** The reply was cut off: words not yet spoken never show, the shown ones end with an ellipsis. */
  drop(turns, clockPts) {
    const gone = new Set(turns);
    this.pending = this.pending.filter((p) => !gone.has(p.turn));
    if (gone.has(this.turn) && !this.cut) {
      this.cut = true;
      this.endPts = clockPts;
      this.paint();
    }
  }

  update(clockPts) {
    let changed = false;
    while (this.pending.length && this.pending[0].pts <= clockPts) {
      const p = this.pending.shift();
      if (p.turn !== this.turn) {
        this.turn = p.turn;
        this.shown = [];
        this.cut = false;
        this.endPts = p.endPts ?? Infinity;
      }
      this.shown.push(p.text);
      changed = true;
    }
    if (this.shown.length && clockPts >= this.endPts + HOLD_SECONDS * this.rate) {
      this.shown = [];
      this.turn = -1;
      changed = true;
    }
    if (changed) this.paint();
  }

  paint() {
    let text = "";
    for (let i = this.shown.length - 1; i >= 0; i--) {
      const longer = joinWords(this.shown[i], text);
      if (text && longer.length > SHOW_CHARS) break;
      text = longer;
    }
    if (text.length > SHOW_CHARS) text = `…${text.slice(-SHOW_CHARS).replace(/^\S*\s/, "")}`;
    if (this.cut && text) text += " …";
    this.text = text;
    this.el.textContent = text;
    this.el.hidden = !text;
  }
}
