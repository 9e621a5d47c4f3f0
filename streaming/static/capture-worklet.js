// Audio thread of the microphone: resamples whatever rate the device runs at to 16 kHz (what the
// speech recogniser wants) and posts PCM16 chunks with their peak level. A capture context at the
// device's own rate works in every browser; Firefox refuses to connect a microphone to a context at
// another rate, so the resampling happens here: a windowed-sinc low-pass evaluated at each output
// instant (8 zero crossings a side, Hann window, cutoff 0.45 × the lower rate).

const ZERO_CROSSINGS = 8;
const TABLE_STEPS = 64; // kernel table entries per input sample

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions;
    this.outRate = opts.outRate;
    this.chunk = new Int16Array(opts.chunk);
    this.filled = 0;
    this.peak = 0;
    this.step = sampleRate / this.outRate; // input samples per output sample
    const fc = (0.45 * Math.min(sampleRate, this.outRate)) / sampleRate; // cycles per input sample
    this.half = ZERO_CROSSINGS / (2 * fc); // kernel half-width in input samples
    const n = Math.ceil(this.half * TABLE_STEPS) + 2;
    this.kernel = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const d = i / TABLE_STEPS;
      const x = 2 * fc * d;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const w = d < this.half ? 0.5 + 0.5 * Math.cos((Math.PI * d) / this.half) : 0;
      this.kernel[i] = 2 * fc * sinc * w;
    }
    this.buf = new Float32Array(16384);
    this.len = 0; // valid samples in buf
    this.base = 0; // absolute input index of buf[0]
    this.t = 0; // absolute input position of the next output sample
    this.port.onmessage = (e) => {
      if (e.data === "flush") this.flush();
    };
  }

  tap(d) {
    const x = Math.abs(d) * TABLE_STEPS;
    const i = Math.floor(x);
    if (i + 1 >= this.kernel.length) return 0;
    return this.kernel[i] + (this.kernel[i + 1] - this.kernel[i]) * (x - i);
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.peak = Math.max(this.peak, Math.abs(s));
    this.chunk[this.filled++] = Math.round(s * 32767);
    if (this.filled === this.chunk.length) this.flush();
  }

  flush() {
    const pcm = this.chunk.slice(0, this.filled);
    this.port.postMessage({ pcm, peak: this.peak }, [pcm.buffer]);
    this.filled = 0;
    this.peak = 0;
  }

  process(inputs) {
    const input = inputs[0][0];
    if (!input) return true;
    if (this.len + input.length > this.buf.length) {
      // Keep only what the kernel around the next output still needs.
      const keep = Math.max(0, Math.floor(this.t - this.half) - 1 - this.base);
      this.buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.base += keep;
    }
    this.buf.set(input, this.len);
    this.len += input.length;
    const end = this.base + this.len;
    if (this.step === 1) {
      for (; this.t < end; this.t++) this.emit(this.buf[this.t - this.base]);
      return true;
    }
    while (this.t + this.half + 1 < end) {
      const lo = Math.max(this.base, Math.ceil(this.t - this.half));
      const hi = Math.floor(this.t + this.half);
      let acc = 0;
      for (let k = lo; k <= hi; k++) acc += this.buf[k - this.base] * this.tap(k - this.t);
      this.emit(acc);
      this.t += this.step;
    }
    return true;
  }
}

registerProcessor("dh-capture", Capture);
