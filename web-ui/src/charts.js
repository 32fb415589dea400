// Live line charts (uPlot) over rates computed from the API's counters.

/** What a chart shows: the last 15 minutes (the engine keeps as much). */
export const WINDOW_SECONDS = 15 * 60;

/** Keeps the last `size` samples of several named series. */
export class RollingSeries {
  constructor(names, size = WINDOW_SECONDS + 200) {
    this.names = names;
    this.size = size;
    this.times = [];
    this.values = names.map(() => []);
  }

  push(time, values) {
    this.times.push(time);
    values.forEach((v, i) => this.values[i].push(v));
    if (this.times.length > this.size) {
      this.times.shift();
      this.values.forEach((series) => series.shift());
    }
  }

  data() {
    return [this.times, ...this.values];
  }

  /**
   * Starts the series with the engine's recent history (`/api/.../history`):
   * `fields` names, per series, the sample field it shows.
   */
  prefill(history, fields) {
    for (const sample of history.samples) {
      this.push(sample.time, fields.map((f) => sample[f]));
    }
  }
}

/** Per-second rates of counters between two polls. */
export class RateMeter {
  constructor() { this.last = new Map(); }

  /** The rate of `key` since the previous call (null on the first). */
  rate(key, value, now) {
    const previous = this.last.get(key);
    this.last.set(key, { value, now });
    if (!previous || now <= previous.now) return null;
    return Math.max(0, (value - previous.value) / (now - previous.now));
  }
}

const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c"];

/** A uPlot chart in `container`, sized to it; `update(series)` redraws. */
export function lineChart(container, title, series, unit = "/s") {
  const heading = document.createElement("div");
  heading.className = "chart-title";
  heading.textContent = title;
  container.append(heading);
  const width = Math.max(300, container.clientWidth - 10);
  const plot = new uPlot({
    width,
    height: 180,
    series: [{}, ...series.names.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
    axes: [
      { values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false })) },
      { values: (u, ticks) => ticks.map((t) => `${formatNumber(t)}${unit}`), size: 70 },
    ],
    // A steady window, so the axis does not jump while it fills.
    scales: { x: { time: true, range: (u, min, max) => [max - WINDOW_SECONDS, max] } },
    legend: { live: false },
  }, series.data(), container);
  return {
    update: () => {
      plot.setData(series.data());
      // What the chart shows, readable without its canvas (browser tests, screen readers).
      const latest = series.values.map((v) => v[v.length - 1] ?? 0);
      container.dataset.points = series.times.length;
      container.dataset.first = series.times[0] ?? "";
      container.dataset.latest = latest.map((v) => v.toFixed(2)).join(",");
      container.dataset.peak = Math.max(0, ...series.values.flat().filter((v) => v !== null)).toFixed(2);
    },
    element: plot.root,
  };
}

export function formatNumber(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(1);
}

export function formatSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1e-3) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1e3).toFixed(1)} ms`;
  return `${s.toFixed(2)} s`;
}
