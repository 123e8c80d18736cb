// The status page's browser side: one server-sent-events stream from the leader (a snapshot, then
// only what changed), applied at most once per animation frame to the page's parts, each a module of
// its own: status-nodes.js (nodes and their GPUs), status-charts.js (GPU utilisation charts),
// status-runs.js (queue, held and recent runs) and status-dom.js (elements, text and row helpers).
// Nothing here shows outputs, logs or credentials: the leader never sends them.
// @ts-check
import { clock, el, setPlain, setServerTime } from './status-dom.js';
import { addSample, chartsToDraw, describeHistory, drawChart, gpuRows, history, onChartsWanted, setHistoryShape } from './status-charts.js';
import { drawSeen, nodes, order, removeNode, reorderNodes, upsertNode } from './status-nodes.js';
import { drawRuns } from './status-runs.js';

/**
 * @typedef {import('./status-nodes.js').ApiNode} ApiNode
 * @typedef {import('./status-runs.js').Run} Run
 * @typedef {import('./status-charts.js').Series} Series
 */

// ---- totals ------------------------------------------------------------------------------------

let queueTotal = 0;
let heldTotal = 0;
function drawTotals() {
  let gpus = 0;
  let busy = 0;
  let utilSum = 0;
  let utilN = 0;
  let up = 0;
  const running = new Set();
  for (const { data: n } of nodes.values()) {
    if (n.state !== 'down') up++;
    for (const id of n.runs) running.add(id);
    for (const g of n.gpus) {
      gpus++;
      if (g.run_id !== null) busy++;
      if (g.utilization_pct !== null && n.state !== 'down') {
        utilSum += g.utilization_pct;
        utilN++;
      }
    }
  }
  setPlain(el.gpusBusy, `${busy} / ${gpus}`);
  setPlain(el.gpuUtil, utilN ? `${Math.round(utilSum / utilN)} %` : 'N/A');
  setPlain(el.nodesUp, `${up} / ${nodes.size}`);
  setPlain(el.queued, String(queueTotal));
  setPlain(el.running, String(running.size));
  setPlain(el.held, String(heldTotal));
  setPlain(el.gpuSummary, `${gpus} ${gpus === 1 ? 'GPU' : 'GPUs'} on ${nodes.size} ${nodes.size === 1 ? 'node' : 'nodes'}, ${busy} held by runs. Values from each node's last report; one table per node.`);
}

// ---- the stream --------------------------------------------------------------------------------

/** @typedef {{ snapshot: any, nodes: Map<string, ApiNode>, removed: Set<string>, queue: Run[]|null, queue_total: number|null,
 *   held: Run[]|null, held_total: number|null, recent: Run[]|null, samples: Map<string, Map<number, number>>, at: string|null }} Pending */
/** @type {Pending|null} */
let pending = null;
let frameAsked = false;
let firstDrawn = false;

function schedule() {
  if (frameAsked) return;
  frameAsked = true;
  requestAnimationFrame(applyPending);
}

function emptyPending() {
  return { snapshot: null, nodes: new Map(), removed: new Set(), queue: null, queue_total: null, held: null, held_total: null, recent: null, samples: new Map(), at: null };
}

/** Merge a message into what the next frame applies: many messages in one frame cost one redraw. */
/** @param {'snapshot'|'update'} kind @param {any} msg */
function receive(kind, msg) {
  if (kind === 'snapshot') pending = { ...emptyPending(), snapshot: msg };
  const p = (pending ??= emptyPending());
  if (kind === 'update') {
    for (const id of msg.removed ?? []) {
      p.nodes.delete(id);
      p.removed.add(id);
    }
    for (const n of msg.nodes ?? []) {
      p.removed.delete(n.id);
      p.nodes.set(n.id, n);
    }
    if (msg.queue) p.queue = msg.queue;
    if (msg.queue_total !== undefined) p.queue_total = msg.queue_total;
    if (msg.held) p.held = msg.held;
    if (msg.held_total !== undefined) p.held_total = msg.held_total;
    if (msg.recent) p.recent = msg.recent;
    for (const [uuid, t, v] of msg.samples ?? []) {
      let m = p.samples.get(uuid);
      if (!m) p.samples.set(uuid, (m = new Map()));
      m.set(t, v);
    }
  }
  p.at = msg.at;
  setServerTime(msg.at);
  schedule();
}

function applyPending() {
  frameAsked = false;
  const p = pending;
  pending = null;
  if (p) applyChanges(p);
  for (const r of chartsToDraw) if (r.visible) drawChart(r);
  chartsToDraw.clear();
}

/** @param {Pending} p */
function applyChanges(p) {
  /** @type {Set<string>} */
  const touched = new Set();
  if (p.snapshot) {
    const s = p.snapshot;
    setHistoryShape(s.history.step, s.history.window);
    const present = new Set(s.nodes.map((/** @type {ApiNode} */ n) => n.id));
    for (const id of [...nodes.keys()]) if (!present.has(id)) removeNode(id);
    for (const n of s.nodes) upsertNode(n);
    history.clear();
    for (const [uuid, series] of Object.entries(s.history.series)) {
      const ser = /** @type {{ start: number, values: (number|null)[] }} */ (series);
      /** @type {Series} */
      const h = { t: [], v: [] };
      ser.values.forEach((v, i) => {
        h.t.push(ser.start + i * s.history.step);
        h.v.push(v);
      });
      history.set(uuid, h);
    }
    for (const uuid of gpuRows.keys()) touched.add(uuid);
    p.queue = s.queue;
    p.queue_total = s.queue_total;
    // A leader from before output release sends no held runs.
    p.held = s.held ?? [];
    p.held_total = s.held_total ?? 0;
    p.recent = s.recent;
    order.dirty = true;
  }
  for (const id of p.removed) {
    removeNode(id);
    order.dirty = true;
  }
  for (const n of p.nodes.values()) upsertNode(n);
  if (order.dirty) {
    reorderNodes();
    order.dirty = false;
  }
  for (const [uuid, m] of p.samples) {
    for (const [t, v] of [...m].sort((a, b) => a[0] - b[0])) addSample(uuid, t, v);
    touched.add(uuid);
  }
  for (const uuid of touched) {
    const r = gpuRows.get(uuid);
    if (!r) continue;
    describeHistory(r);
    r.dirty = true;
    if (r.visible) chartsToDraw.add(r);
  }
  if (p.queue_total !== null) queueTotal = p.queue_total;
  if (p.queue) {
    drawRuns(el.queueBody, p.queue, 'queue', 7, 'Nothing is waiting.');
    setPlain(el.queueCaption, queueTotal > p.queue.length ? `Queue: the first ${p.queue.length} of ${queueTotal} waiting runs, oldest first` : `Queue: ${queueTotal} waiting ${queueTotal === 1 ? 'run' : 'runs'}, oldest first`);
  }
  if (p.held_total !== null) heldTotal = p.held_total;
  if (p.held) drawRuns(el.heldBody, p.held, 'held', 7, 'No outputs wait for review.');
  if (p.recent) drawRuns(el.recentBody, p.recent, 'recent', 10, 'No runs yet.');
  drawTotals();
  if (p.at) {
    el.updated.textContent = `updated ${clock.format(new Date(p.at))}`;
    /** @type {HTMLTimeElement} */ (el.updated).dateTime = p.at;
  }
  if (!firstDrawn) {
    firstDrawn = true;
    performance.mark('secd-first-render');
    document.documentElement.dataset.ready = 'true';
  }
}

// Ages ("12 s ago") move on between reports; refresh them once a second, in a frame.
setInterval(() => {
  requestAnimationFrame(() => {
    for (const entry of nodes.values()) drawSeen(entry);
  });
}, 1000);

function connect() {
  const source = new EventSource('/api/v1/events');
  source.addEventListener('open', () => {
    el.conn.textContent = 'Live';
    el.conn.className = 'conn live';
  });
  source.addEventListener('error', () => {
    el.conn.className = 'conn lost';
    if (source.readyState !== EventSource.CLOSED) {
      el.conn.textContent = 'Reconnecting…';
      return;
    }
    // The browser gave up (the leader answered 429/503: too many open pages): try again on our own,
    // spread out so many pages do not all come back at once. The new stream starts with a snapshot.
    el.conn.textContent = 'Disconnected: trying again shortly';
    source.close();
    setTimeout(connect, 15_000 + Math.random() * 15_000);
  });
  source.addEventListener('snapshot', (e) => receive('snapshot', JSON.parse(/** @type {MessageEvent} */ (e).data)));
  source.addEventListener('update', (e) => receive('update', JSON.parse(/** @type {MessageEvent} */ (e).data)));
}

onChartsWanted(schedule);
connect();