// The status page's nodes and GPUs: one row per node, one table of GPUs per node (so the browser
// skips laying out the nodes off screen), each GPU's row with its utilisation, memory, temperature,
// power, run and model, rows kept and only their changed cells written.
// @ts-check
import { age, collator, el, emptyNote, emptyRow, gib, reorderChildren, rowFrom, runLink, setAttr, setText, setWidth } from './status-dom.js';
import { chartObserver, gpuRows } from './status-charts.js';

/**
 * @typedef {{ uuid: string, index: number, name: string, memory_total_bytes: number|null, memory_used_bytes: number|null,
 *   utilization_pct: number|null, temperature_c: number|null, power_w: number|null, run_id: string|null,
 *   health?: string, problem?: string|null, mig_mode?: boolean|null,
 *   mig_devices?: { uuid: string, index: number, profile: string, memory_total_bytes: number|null, run_id: string|null }[] }} Gpu
 * @typedef {{ id: string, hostname: string, state: string, last_seen: string|null, cpus: number, memory_bytes: number,
 *   memory_free_bytes?: number|null, load: number|null, runs: string[], gpus: Gpu[],
 *   gpus_stale?: { since: string, reason: string }|null, disk_low?: string }} ApiNode
 * @typedef {import('./status-dom.js').Row} Row
 * @typedef {import('./status-charts.js').GpuRow} GpuRow
 * @typedef {{ data: ApiNode, row: Row, block: Row, body: HTMLTableSectionElement, gpus: Map<string, GpuRow> }} NodeEntry
 */

/** @type {Map<string, NodeEntry>} */
export const nodes = new Map();
/** Where each GPU is: its node and index (the runs tables name GPUs so). */
/** @type {Map<string, { node: string, index: number }>} */
export const gpuWhere = new Map();
/** Whether the nodes' rows need putting in order (a node came or went, a GPU was added). */
export const order = { dirty: false };

/** @param {NodeEntry} entry */
function drawNode(entry) {
  const n = entry.data;
  const r = entry.row;
  setText(r, 'id', n.id);
  setText(r, 'state', n.state);
  setAttr(r, 'state', 'class', `pill state-${n.state}`);
  drawSeen(entry);
  setText(r, 'load', n.load === null ? 'N/A' : n.load.toFixed(2));
  const total = gib(n.memory_bytes);
  const free = gib(n.memory_free_bytes);
  setText(r, 'memory', !n.memory_bytes ? '—' : free !== null ? `${gib(n.memory_bytes - (n.memory_free_bytes ?? 0))} / ${total} GiB` : `${total} GiB`);
  setText(r, 'cpus', String(n.cpus || '—'));
  const busy = n.gpus.filter((g) => g.run_id !== null).length;
  setText(r, 'gpus', n.gpus.length ? `${busy} / ${n.gpus.length}` : 'none');
  setText(r, 'runs', String(n.runs.length));
  const stateNote = n.state === 'up' ? '' : ` (${n.state})`;
  const lost = n.gpus.filter((g) => g.health === 'lost' || g.health === 'error').length;
  const foreign = n.gpus.filter((g) => g.health === 'busy_foreign').length;
  const notes = [lost ? `${lost} lost or in error` : '', foreign ? `${foreign} busy with other programs` : '', n.gpus_stale ? `nvidia-smi failing since ${n.gpus_stale.since}: ${n.gpus_stale.reason}` : '', n.disk_low ? `no new runs: ${n.disk_low}` : '']
    .filter(Boolean)
    .map((t) => `, ${t}`)
    .join('');
  setText(entry.block, 'caption', `${n.id}${stateNote} · ${n.gpus.length} ${n.gpus.length === 1 ? 'GPU' : 'GPUs'}, ${busy} held by runs${notes}`);
  setAttr(r, 'id', 'title', n.hostname && n.hostname !== n.id ? `host ${n.hostname}` : n.id);
}

/** @param {NodeEntry} entry */
export function drawSeen(entry) {
  const n = entry.data;
  setText(entry.row, 'seen', age(n.last_seen));
  setAttr(entry.row, 'seen', 'datetime', n.last_seen ?? '');
  setAttr(entry.row, 'seen', 'title', n.last_seen ?? 'never');
}

/** @param {string} nodeId @param {Gpu} g @returns {GpuRow} */
function makeGpuRow(nodeId, g) {
  const base = rowFrom(el.gpuTpl);
  base.row.dataset.uuid = g.uuid;
  const gr = /** @type {GpuRow} */ ({ ...base, uuid: g.uuid, chartBox: base.cells.chart, plot: null, visible: false, dirty: true });
  setText(gr, 'node', nodeId);
  chartObserver.observe(gr.chartBox);
  gpuRows.set(g.uuid, gr);
  return gr;
}

/** @param {GpuRow} r @param {Gpu} g */
function drawGpu(r, g) {
  setText(r, 'index', `#${g.index}`);
  // A MIG-mode GPU is given out as its MIG devices: they are listed under it, each with its run.
  const devices = g.mig_mode ? (g.mig_devices ?? []).map((d) => `${d.profile} ${d.run_id ? `→ ${d.run_id}` : 'free'}`) : [];
  const health = g.health === 'lost' ? 'LOST' : g.health === 'error' ? 'ERROR' : '';
  setText(r, 'name', [health, g.name, devices.length ? `MIG: ${devices.join(', ')}` : g.mig_mode ? 'MIG: no devices' : ''].filter(Boolean).join(' · '));
  // Busy with programs that are not secd's: given to nobody, said on hover and in the node's caption.
  setAttr(r, 'name', 'title', g.problem ?? (g.health === 'busy_foreign' ? "busy with processes that are not secd's" : ''));
  const troubled = g.health === 'lost' || g.health === 'error';
  if (r.last.troubled !== String(troubled)) {
    r.last.troubled = String(troubled);
    r.row.classList.toggle('gpu-lost', troubled);
    // Red whatever the stylesheet: a lost GPU is given to nobody and needs an operator.
    r.row.style.color = troubled ? '#b00020' : '';
  }
  const u = g.utilization_pct;
  setText(r, 'util', u === null ? 'N/A' : `${Math.round(u)} %`);
  setWidth(r, 'utilbar', u);
  const used = gib(g.memory_used_bytes);
  const total = gib(g.memory_total_bytes);
  setText(r, 'mem', used === null && total === null ? 'N/A' : `${used ?? 'N/A'} / ${total ?? 'N/A'} GiB`);
  setWidth(
    r,
    'membar',
    g.memory_used_bytes !== null && g.memory_total_bytes ? (100 * g.memory_used_bytes) / g.memory_total_bytes : null,
  );
  setText(r, 'temp', g.temperature_c === null ? 'N/A' : `${Math.round(g.temperature_c)} °C`);
  setText(r, 'power', g.power_w === null ? 'N/A' : `${g.power_w < 100 ? g.power_w.toFixed(1) : Math.round(g.power_w)} W`);
  if (r.last.run !== (g.run_id ?? '')) {
    r.last.run = g.run_id ?? '';
    runLink(r.cells.run, g.run_id);
    r.row.classList.toggle('busy', g.run_id !== null);
  }
}

/** @param {ApiNode} n */
export function upsertNode(n) {
  let entry = nodes.get(n.id);
  if (!entry) {
    const row = rowFrom(el.nodeTpl);
    row.row.dataset.node = n.id;
    // Each node's GPUs are a table of their own, so the browser skips laying out and painting the
    // nodes that are off screen (content-visibility), whatever the size of the cluster.
    const block = rowFrom(el.nodeGpusTpl);
    block.row.dataset.node = n.id;
    const body = /** @type {HTMLTableSectionElement} */ (block.cells.body);
    body.dataset.node = n.id;
    entry = { data: n, row, block, body, gpus: new Map() };
    nodes.set(n.id, entry);
    order.dirty = true;
  }
  entry.data = n;
  drawNode(entry);
  const seen = new Set();
  let gpuOrderDirty = false;
  for (const g of n.gpus) {
    seen.add(g.uuid);
    gpuWhere.set(g.uuid, { node: n.id, index: g.index });
    let r = entry.gpus.get(g.uuid);
    if (!r) {
      r = makeGpuRow(n.id, g);
      entry.gpus.set(g.uuid, r);
      gpuOrderDirty = true;
    }
    drawGpu(r, g);
  }
  for (const [uuid, r] of entry.gpus) {
    if (seen.has(uuid)) continue;
    forgetGpu(r);
    entry.gpus.delete(uuid);
    r.row.remove();
    order.dirty = true;
  }
  if (gpuOrderDirty) {
    order.dirty = true;
    const sorted = [...entry.gpus.values()].sort((a, b) => Number(a.last.index?.slice(1)) - Number(b.last.index?.slice(1)));
    reorderChildren(entry.body, sorted.map((r) => r.row));
    // The size the page reserves for the table while it is off screen (the browser then remembers it).
    entry.block.row.style.containIntrinsicSize = `auto ${entry.gpus.size * 37 + 36}px`;
  }
}

/** @param {GpuRow} r */
function forgetGpu(r) {
  chartObserver.unobserve(r.chartBox);
  r.plot?.destroy();
  // A GPU that moved to another node keeps that node's row.
  if (gpuRows.get(r.uuid) === r) {
    gpuRows.delete(r.uuid);
    gpuWhere.delete(r.uuid);
  }
}

/** @param {string} id */
export function removeNode(id) {
  const entry = nodes.get(id);
  if (!entry) return;
  for (const r of entry.gpus.values()) forgetGpu(r);
  entry.row.row.remove();
  entry.block.row.remove();
  nodes.delete(id);
}

export function reorderNodes() {
  const sorted = [...nodes.values()].sort((a, b) => collator.compare(a.data.id, b.data.id));
  reorderChildren(el.nodesBody, sorted.length ? sorted.map((e) => e.row.row) : [emptyRow(8, 'No node has reported yet.')]);
  const blocks = sorted.filter((e) => e.gpus.size > 0).map((e) => e.block.row);
  reorderChildren(el.gpuList, blocks.length ? blocks : [emptyNote('No GPU has been reported.')]);
}
