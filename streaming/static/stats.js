// The overlay: frames drawn per second, audio buffered, bitrate, late/dropped frames and the last
// turn's latency, refreshed every half second from counters the other parts keep.

const WINDOW_MS = 1000;

export class StatsOverlay {
  constructor(element) {
    this.el = element;
    this.samples = []; // [time, frames drawn, bytes received]
    this.latency = null; // the last `metrics` message
    this.el.addEventListener("click", () => this.el.classList.toggle("collapsed"));
  }

  /** Returns the figures it shows, for the page's test hook. */
  update({ drawn, bytes, depthMs, video, underruns, codec, running }) {
    const now = performance.now();
    this.samples.push([now, drawn, bytes]);
    while (this.samples.length > 2 && now - this.samples[1][0] >= WINDOW_MS) this.samples.shift();
    const [t0, d0, b0] = this.samples[0];
    const seconds = Math.max((now - t0) / 1000, 1e-3);
    const figures = {
      fps: (drawn - d0) / seconds,
      kbps: Math.max(0, ((bytes - b0) * 8) / 1000 / seconds), // a reconnect restarts the byte count
      depthMs,
      late: video.late,
      dropped: video.skipped,
      lost: video.lost,
      underruns,
      latencyMs: this.latency ? this.latency.end_to_end_ms ?? null : null,
    };
    const m = this.latency;
    const latency =
      m && m.end_to_end_ms != null
        ? `${Math.round(m.end_to_end_ms)} ms (turn ${m.turn}${m.first_frame_ms != null ? `, 1st frame ${Math.round(m.first_frame_ms)} ms` : ""})`
        : "–";
    this.el.textContent = [
      `${codec || "–"} ${figures.fps.toFixed(1)} fps${running ? "" : " · muted"}`,
      `audio buffer ${Math.round(depthMs)} ms${underruns ? ` · ${underruns} underruns` : ""}`,
      `${Math.round(figures.kbps)} kbit/s`,
      `frames late ${video.late} · dropped ${video.skipped} · lost ${video.lost}`,
      `latency ${latency}`,
    ].join("\n");
    return figures;
  }
}
