// The status page's GPU utilisation charts (uPlot): each GPU's history of the last minutes, a chart
// made when its row scrolls into view and redrawn only while visible, and its text alternative.
// @ts-check
import { serverNow, setAttr } from './status-dom.js';

/**
 * @typedef {{ t: number[], v: (number|null)[] }} Series
 * @typedef {import('./status-dom.js').Row & { uuid: string, chartBox: HTMLElement, plot: any, visible: boolean, dirty: boolean }} GpuRow
 */

/** The history's bucket and window (s), as the leader's snapshot says. */
let historyStep = 5;
let historyWindow = 600;
/** @param {number} step @param {number} window */
export function setHistoryShape(step, window) {
  historyStep = step;
  historyWindow = window;
}

/** Each GPU's readings, by UUID. */
/** @type {Map<string, Series>} */
export const history = new Map();
/** Each GPU's row, by UUID. */
/** @type {Map<string, GpuRow>} */
export const gpuRows = new Map();

/** Asks for a frame when charts wait to be drawn (status.js hands its frame request in). */
let askFrame = () => {};
/** @param {() => void} fn */
export function onChartsWanted(fn) {
  askFrame = fn;
}

export const chartObserver = new IntersectionObserver(
  (entries) => {
    for (const e of entries) {
      const uuid = /** @type {HTMLElement} */ (e.target).closest('tr')?.dataset.uuid;
      const r = uuid ? gpuRows.get(uuid) : undefined;
      if (!r) continue;
      r.visible = e.isIntersecting;
      if (r.visible && (r.dirty || !r.plot)) chartsToDraw.add(r);
    }
    if (chartsToDraw.size) askFrame();
  },
  { rootMargin: '200px 0px' },
);
/** @type {Set<GpuRow>} */
export const chartsToDraw = new Set();

function chartColours() {
  const css = getComputedStyle(document.documentElement);
  return { line: css.getPropertyValue('--chart-line').trim() || '#1d4ed8', fill: css.getPropertyValue('--chart-fill').trim() || 'rgba(29,78,216,.15)' };
}
let colours = chartColours();
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
  colours = chartColours();
  for (const r of gpuRows.values()) {
    r.plot?.destroy();
    r.plot = null;
    if (r.visible) chartsToDraw.add(r);
  }
  askFrame();
});

/** @param {GpuRow} r */
export function drawChart(r) {
  const uPlot = /** @type {any} */ (window).uPlot;
  if (!uPlot) return; // the chart library did not load: the numbers and text alternatives still work
  const s = history.get(r.uuid) ?? { t: [], v: [] };
  const data = [s.t, s.v];
  const box = r.chartBox;
  if (!r.plot) {
    box.replaceChildren();
    r.plot = new uPlot(
      {
        width: box.clientWidth || 120,
        height: box.clientHeight || 28,
        pxAlign: 0,
        cursor: { show: false },
        legend: { show: false },
        select: { show: false },
        axes: [{ show: false }, { show: false }],
        scales: {
          x: { time: false, range: () => { const now = serverNow() / 1000; return [now - historyWindow, now]; } },
          y: { auto: false, range: [0, 100] },
        },
        // Points only while there are too few readings for a line to be seen.
        series: [{}, {
          stroke: colours.line, fill: colours.fill, width: 1.25,
          points: { show: (/** @type {any} */ u) => u.data[1].filter((/** @type {any} */ v) => v !== null).length < 3, size: 4, fill: colours.line, stroke: colours.line },
        }],
      },
      data,
      box,
    );
  } else {
    r.plot.setData(data);
  }
  r.dirty = false;
}

/** The chart's text alternative: what a sighted reader takes from the sparkline. */
/** @param {GpuRow} r */
export function describeHistory(r) {
  const s = history.get(r.uuid);
  const mins = Math.round(historyWindow / 60);
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let n = 0;
  for (const v of s ? s.v : []) {
    if (v === null) continue;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    n++;
  }
  const text =
    n === 0
      ? `No utilisation history in the last ${mins} minutes.`
      : `Utilisation over the last ${mins} minutes: lowest ${Math.round(min)} %, highest ${Math.round(max)} %, average ${Math.round(sum / n)} %.`;
  setAttr(r, 'chart', 'aria-label', text);
}

/** @param {string} uuid @param {number} t @param {number} v */
export function addSample(uuid, t, v) {
  let s = history.get(uuid);
  if (!s) history.set(uuid, (s = { t: [], v: [] }));
  const last = s.t.length - 1;
  if (last >= 0 && s.t[last] === t) s.v[last] = v;
  else if (last < 0 || s.t[last] < t) {
    // A gap of more than a bucket gets a null so the line breaks instead of bridging it.
    if (last >= 0 && t - s.t[last] > historyStep * 1.5) {
      s.t.push(s.t[last] + historyStep);
      s.v.push(null);
    }
    s.t.push(t);
    s.v.push(v);
  }
  const cutoff = serverNow() / 1000 - historyWindow - historyStep;
  let drop = 0;
  while (drop < s.t.length && s.t[drop] < cutoff) drop++;
  if (drop) {
    s.t.splice(0, drop);
    s.v.splice(0, drop);
  }
}
