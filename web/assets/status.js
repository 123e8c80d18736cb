// The status page's browser side: one server-sent-events stream from the leader (a snapshot, then
// only what changed), applied to keyed table rows at most once per animation frame. Rows are made
// once and then only the cells whose text changed are written; GPU charts (uPlot) are created when
// they scroll into view and redrawn only while visible. Text goes in with textContent, never HTML.
// Nothing here shows outputs, logs or credentials: the leader never sends them.
// @ts-check

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const collator = new Intl.Collator('en', { numeric: true });
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const dateClock = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false,
});

const el = {
  conn: $('conn'),
  updated: $('updated'),
  gpusBusy: $('t-gpus-busy'),
  gpuUtil: $('t-gpu-util'),
  nodesUp: $('t-nodes-up'),
  queued: $('t-queued'),
  running: $('t-running'),
  held: $('t-held'),
  nodesBody: /** @type {HTMLTableSectionElement} */ ($('nodes-body')),
  gpuList: $('gpus'),
  gpuSummary: $('gpus-summary'),
  nodeGpusTpl: /** @type {HTMLTemplateElement} */ ($('node-gpus')),
  queueBody: /** @type {HTMLTableSectionElement} */ ($('queue-body')),
  queueCaption: $('queue-caption'),
  heldBody: /** @type {HTMLTableSectionElement} */ ($('held-body')),
  recentBody: /** @type {HTMLTableSectionElement} */ ($('recent-body')),
  nodeTpl: /** @type {HTMLTemplateElement} */ ($('node-row')),
  gpuTpl: /** @type {HTMLTemplateElement} */ ($('gpu-row')),
};

/** Server time minus client time (ms), from each message's `at`: ages never depend on the client's clock. */
let offset = 0;
const serverNow = () => Date.now() + offset;
let historyStep = 5;
let historyWindow = 600;

/**
 * @typedef {{ uuid: string, index: number, name: string, memory_total_bytes: number|null, memory_used_bytes: number|null,
 *   utilization_pct: number|null, temperature_c: number|null, power_w: number|null, run_id: string|null,
 *   health?: string, problem?: string|null, mig_mode?: boolean|null,
 *   mig_devices?: { uuid: string, index: number, profile: string, memory_total_bytes: number|null, run_id: string|null }[] }} Gpu
 * @typedef {{ id: string, hostname: string, state: string, last_seen: string|null, cpus: number, memory_bytes: number,
 *   memory_free_bytes?: number|null, load: number|null, runs: string[], gpus: Gpu[],
 *   gpus_stale?: { since: string, reason: string }|null }} ApiNode
 * @typedef {{ id: string, project: string, user: string, commit: string, state: string, reason: string, node: string|null,
 *   gpus: string[], created_at: string, started_at: string|null, finished_at: string|null,
 *   review?: { approvals: number, approvals_required: number }|null }} Run
 * @typedef {{ t: number[], v: (number|null)[] }} Series
 * @typedef {{ row: HTMLTableRowElement, cells: Record<string, HTMLElement>, last: Record<string, string> }} Row
 * @typedef {{ data: ApiNode, row: Row, block: Row, body: HTMLTableSectionElement, gpus: Map<string, GpuRow> }} NodeEntry
 * @typedef {Row & { uuid: string, chartBox: HTMLElement, plot: any, visible: boolean, dirty: boolean }} GpuRow
 */

/** @type {Map<string, NodeEntry>} */
const nodes = new Map();
/** @type {Map<string, Series>} */
const history = new Map();
/** @type {Map<string, { node: string, index: number }>} */
const gpuWhere = new Map();
/** @type {Map<string, GpuRow>} */
const gpuRows = new Map();

// ---- formatting ------------------------------------------------------------------------------

/** @param {number|null|undefined} bytes */
function gib(bytes) {
  return bytes === null || bytes === undefined ? null : (bytes / 2 ** 30).toFixed(bytes >= 100 * 2 ** 30 ? 0 : 1);
}
/** @param {number} seconds */
function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
/** @param {string|null} iso */
function shortTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return serverNow() - d.getTime() < 20 * 3600_000 ? clock.format(d) : dateClock.format(d);
}
/** @param {string|null} iso */
function age(iso) {
  if (!iso) return 'never';
  return `${duration((serverNow() - Date.parse(iso)) / 1000)} ago`;
}

/** Write `text` into a row's cell only when it changed (the costly part of a big table is layout). */
/** @param {Row} r @param {string} key @param {string} text */
function setText(r, key, text) {
  if (r.last[key] === text) return;
  r.last[key] = text;
  r.cells[key].textContent = text;
}
/** @param {Row} r @param {string} key @param {string} name @param {string} value */
function setAttr(r, key, name, value) {
  const k = `${key}@${name}`;
  if (r.last[k] === value) return;
  r.last[k] = value;
  r.cells[key].setAttribute(name, value);
}

/** @type {WeakMap<HTMLTemplateElement, Array<[string, number[]]>>} */
const cellPaths = new WeakMap();

/** Where each data-cell element sits in a template (child indexes), found once per template. */
/** @param {HTMLTemplateElement} tpl */
function pathsOf(tpl) {
  let paths = cellPaths.get(tpl);
  if (paths) return paths;
  paths = [];
  const root = /** @type {Element} */ (tpl.content.firstElementChild);
  for (const c of root.querySelectorAll('[data-cell]')) {
    const path = [];
    for (let e = /** @type {Element} */ (c); e !== root; e = /** @type {Element} */ (e.parentElement)) path.unshift([...(e.parentElement?.children ?? [])].indexOf(e));
    paths.push([/** @type {HTMLElement} */ (c).dataset.cell ?? '', path]);
  }
  cellPaths.set(tpl, paths);
  return paths;
}

/** Clone a template's element and bind its data-cell elements as named cells (no selector queries per row). */
/** @param {HTMLTemplateElement} tpl @returns {Row} */
function rowFrom(tpl) {
  const row = /** @type {HTMLTableRowElement} */ (/** @type {Element} */ (tpl.content.firstElementChild).cloneNode(true));
  /** @type {Record<string, HTMLElement>} */
  const cells = {};
  for (const [name, path] of pathsOf(tpl)) {
    let e = /** @type {Element} */ (row);
    for (const i of path) e = /** @type {Element} */ (e.children[i]);
    cells[name] = /** @type {HTMLElement} */ (e);
  }
  return { row, cells, last: {} };
}

/** @param {HTMLElement} cell @param {string|null} runId */
function runLink(cell, runId) {
  cell.replaceChildren();
  if (!runId) {
    cell.textContent = '—';
    return;
  }
  const a = document.createElement('a');
  a.href = `/runs/${encodeURIComponent(runId)}`;
  a.textContent = runId;
  cell.append(a);
}

// ---- nodes and GPUs --------------------------------------------------------------------------

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
  const notes = [lost ? `${lost} lost or in error` : '', foreign ? `${foreign} busy with other programs` : '', n.gpus_stale ? `nvidia-smi failing since ${n.gpus_stale.since}: ${n.gpus_stale.reason}` : '']
    .filter(Boolean)
    .map((t) => `, ${t}`)
    .join('');
  setText(entry.block, 'caption', `${n.id}${stateNote} · ${n.gpus.length} ${n.gpus.length === 1 ? 'GPU' : 'GPUs'}, ${busy} held by runs${notes}`);
  setAttr(r, 'id', 'title', n.hostname && n.hostname !== n.id ? `host ${n.hostname}` : n.id);
}

/** @param {NodeEntry} entry */
function drawSeen(entry) {
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

/** @param {Row} r @param {string} key @param {number|null} pct */
function setWidth(r, key, pct) {
  const w = pct === null ? '0%' : `${Math.min(100, Math.max(0, pct)).toFixed(1)}%`;
  if (r.last[key] === w) return;
  r.last[key] = w;
  r.cells[key].style.width = w;
}

/** @param {ApiNode} n */
function upsertNode(n) {
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
    orderDirty = true;
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
    orderDirty = true;
  }
  if (gpuOrderDirty) {
    orderDirty = true;
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
function removeNode(id) {
  const entry = nodes.get(id);
  if (!entry) return;
  for (const r of entry.gpus.values()) forgetGpu(r);
  entry.row.row.remove();
  entry.block.row.remove();
  nodes.delete(id);
}

let orderDirty = false;

/** Put `rows` in `parent` in this order, moving only what is out of place, and drop the rest. */
/** @param {Element} parent @param {Element[]} rows @param {Element|null} [after] */
function reorderChildren(parent, rows, after = null) {
  let cursor = after ? after.nextElementSibling : parent.firstElementChild;
  for (const row of rows) {
    if (row === cursor) cursor = cursor.nextElementSibling;
    else parent.insertBefore(row, cursor);
  }
  while (cursor) {
    const next = cursor.nextElementSibling;
    cursor.remove();
    cursor = next;
  }
}

function reorderNodes() {
  const sorted = [...nodes.values()].sort((a, b) => collator.compare(a.data.id, b.data.id));
  reorderChildren(el.nodesBody, sorted.length ? sorted.map((e) => e.row.row) : [emptyRow(8, 'No node has reported yet.')]);
  const blocks = sorted.filter((e) => e.gpus.size > 0).map((e) => e.block.row);
  reorderChildren(el.gpuList, blocks.length ? blocks : [emptyNote('No GPU has been reported.')]);
}

/** @param {number} span @param {string} text */
function emptyRow(span, text) {
  const tr = document.createElement('tr');
  tr.className = 'empty';
  const td = document.createElement('td');
  td.colSpan = span;
  td.textContent = text;
  tr.append(td);
  return tr;
}
/** @param {string} text */
function emptyNote(text) {
  const p = document.createElement('p');
  p.className = 'empty';
  p.textContent = text;
  return p;
}

// ---- history charts --------------------------------------------------------------------------

const chartObserver = new IntersectionObserver(
  (entries) => {
    for (const e of entries) {
      const uuid = /** @type {HTMLElement} */ (e.target).closest('tr')?.dataset.uuid;
      const r = uuid ? gpuRows.get(uuid) : undefined;
      if (!r) continue;
      r.visible = e.isIntersecting;
      if (r.visible && (r.dirty || !r.plot)) chartsToDraw.add(r);
    }
    if (chartsToDraw.size) schedule();
  },
  { rootMargin: '200px 0px' },
);
/** @type {Set<GpuRow>} */
const chartsToDraw = new Set();

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
  schedule();
});

/** @param {GpuRow} r */
function drawChart(r) {
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
function describeHistory(r) {
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
function addSample(uuid, t, v) {
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

// ---- runs --------------------------------------------------------------------------------------

/** @param {string[]} uuids */
function gpuList(uuids) {
  if (!uuids.length) return '—';
  return uuids
    .map((u) => {
      const w = gpuWhere.get(u);
      return w ? `${w.node} #${w.index}` : u.length > 12 ? `${u.slice(0, 12)}…` : u;
    })
    .join(', ');
}

/** "1/2 approvals": a held run's progress (the only thing the page shows of its review). */
/** @param {{ approvals: number, approvals_required: number }} review */
function approvals(review) {
  return `${review.approvals}/${review.approvals_required} approvals`;
}

/** @param {Run} run @param {'queue'|'held'|'recent'} kind @param {number} position */
function runRow(run, kind, position) {
  const queue = kind === 'queue';
  const tr = document.createElement('tr');
  tr.dataset.run = run.id;
  /** @param {string} tag @param {string|Node} content @param {string} [cls] */
  const cell = (tag, content, cls) => {
    const c = document.createElement(tag);
    if (cls) c.className = cls;
    c.append(content);
    tr.append(c);
    return c;
  };
  if (queue) cell('td', String(position), 'num');
  const th = document.createElement('th');
  th.scope = 'row';
  runLink(th, run.id);
  tr.append(th);
  cell('td', run.project);
  cell('td', run.user);
  const pill = document.createElement('span');
  pill.className = `pill state-${run.state}`;
  pill.textContent = run.state.replace('_', ' ');
  const state = cell('td', pill);
  if (kind === 'held') {
    cell('td', run.review ? approvals(run.review) : '—', 'approvals');
    cell('td', run.node ?? '—');
    cell('td', timeEl(run.created_at));
    return tr;
  }
  if (run.review) {
    const note = document.createElement('span');
    note.className = 'muted';
    note.textContent = ` ${approvals(run.review)}`;
    state.append(note);
  }
  cell('td', run.reason || '—', 'reason');
  if (queue) {
    cell('td', timeEl(run.created_at));
    return tr;
  }
  cell('td', run.node ?? '—');
  cell('td', gpuList(run.gpus));
  cell('td', timeEl(run.created_at));
  cell('td', timeEl(run.started_at));
  const end = cell('td', timeEl(run.finished_at));
  if (run.finished_at && run.started_at) {
    const took = document.createElement('span');
    took.className = 'muted';
    took.textContent = ` (ran ${duration((Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000)})`;
    end.append(took);
  }
  return tr;
}

/** @param {string|null} iso */
function timeEl(iso) {
  if (!iso) return '—';
  const t = document.createElement('time');
  t.dateTime = iso;
  t.title = iso;
  t.textContent = shortTime(iso);
  return t;
}

/** @type {WeakMap<HTMLTableSectionElement, Map<string, { json: string, row: HTMLTableRowElement }>>} */
const runRowCache = new WeakMap();

/** Keyed redraw of a runs table: unchanged runs keep their row. */
/** @param {HTMLTableSectionElement} body @param {Run[]} runs @param {'queue'|'held'|'recent'} kind @param {number} span @param {string} empty */
function drawRuns(body, runs, kind, span, empty) {
  const queue = kind === 'queue';
  const old = runRowCache.get(body) ?? new Map();
  const next = new Map();
  const rows = runs.map((run, i) => {
    const json = JSON.stringify(run) + (queue ? `#${i}` : '') + (run.gpus.length ? gpuList(run.gpus) : '');
    const have = old.get(run.id);
    const row = have && have.json === json ? have.row : runRow(run, kind, i + 1);
    next.set(run.id, { json, row });
    return row;
  });
  runRowCache.set(body, next);
  reorderChildren(body, rows.length ? rows : [emptyRow(span, empty)]);
}

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
/** @param {HTMLElement} node @param {string} text */
function setPlain(node, text) {
  if (node.textContent !== text) node.textContent = text;
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
  offset = Date.parse(msg.at) - Date.now();
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
    historyStep = s.history.step;
    historyWindow = s.history.window;
    const present = new Set(s.nodes.map((/** @type {ApiNode} */ n) => n.id));
    for (const id of [...nodes.keys()]) if (!present.has(id)) removeNode(id);
    for (const n of s.nodes) upsertNode(n);
    history.clear();
    for (const [uuid, series] of Object.entries(s.history.series)) {
      const ser = /** @type {{ start: number, values: (number|null)[] }} */ (series);
      /** @type {Series} */
      const h = { t: [], v: [] };
      ser.values.forEach((v, i) => {
        h.t.push(ser.start + i * historyStep);
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
    orderDirty = true;
  }
  for (const id of p.removed) {
    removeNode(id);
    orderDirty = true;
  }
  for (const n of p.nodes.values()) upsertNode(n);
  if (orderDirty) {
    reorderNodes();
    orderDirty = false;
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

connect();
