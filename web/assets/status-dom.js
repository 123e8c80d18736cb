// The status page's DOM and text helpers: the page's elements, the server's clock, numbers and times
// as the page writes them, and rows made from templates whose cells are written only when their
// text changed (the costly part of a big table is layout). Text goes in with textContent, never HTML.
// @ts-check

/**
 * @typedef {{ row: HTMLTableRowElement, cells: Record<string, HTMLElement>, last: Record<string, string> }} Row
 */

export const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
export const collator = new Intl.Collator('en', { numeric: true });
export const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const dateClock = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false,
});

export const el = {
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
export const serverNow = () => Date.now() + offset;
/** Take the server's time from a message's `at`. */
/** @param {string} at */
export function setServerTime(at) {
  offset = Date.parse(at) - Date.now();
}

/** @param {number|null|undefined} bytes */
export function gib(bytes) {
  return bytes === null || bytes === undefined ? null : (bytes / 2 ** 30).toFixed(bytes >= 100 * 2 ** 30 ? 0 : 1);
}
/** @param {number} seconds */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
/** @param {string|null} iso */
export function shortTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return serverNow() - d.getTime() < 20 * 3600_000 ? clock.format(d) : dateClock.format(d);
}
/** @param {string|null} iso */
export function age(iso) {
  if (!iso) return 'never';
  return `${duration((serverNow() - Date.parse(iso)) / 1000)} ago`;
}

/** Write `text` into a row's cell only when it changed (the costly part of a big table is layout). */
/** @param {Row} r @param {string} key @param {string} text */
export function setText(r, key, text) {
  if (r.last[key] === text) return;
  r.last[key] = text;
  r.cells[key].textContent = text;
}
/** @param {Row} r @param {string} key @param {string} name @param {string} value */
export function setAttr(r, key, name, value) {
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
export function rowFrom(tpl) {
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
export function runLink(cell, runId) {
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

/** @param {Row} r @param {string} key @param {number|null} pct */
export function setWidth(r, key, pct) {
  const w = pct === null ? '0%' : `${Math.min(100, Math.max(0, pct)).toFixed(1)}%`;
  if (r.last[key] === w) return;
  r.last[key] = w;
  r.cells[key].style.width = w;
}

/** Put `rows` in `parent` in this order, moving only what is out of place, and drop the rest. */
/** @param {Element} parent @param {Element[]} rows @param {Element|null} [after] */
export function reorderChildren(parent, rows, after = null) {
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

/** @param {number} span @param {string} text */
export function emptyRow(span, text) {
  const tr = document.createElement('tr');
  tr.className = 'empty';
  const td = document.createElement('td');
  td.colSpan = span;
  td.textContent = text;
  tr.append(td);
  return tr;
}
/** @param {string} text */
export function emptyNote(text) {
  const p = document.createElement('p');
  p.className = 'empty';
  p.textContent = text;
  return p;
}

/** @param {string|null} iso */
export function timeEl(iso) {
  if (!iso) return '—';
  const t = document.createElement('time');
  t.dateTime = iso;
  t.title = iso;
  t.textContent = shortTime(iso);
  return t;
}

/** @param {HTMLElement} node @param {string} text */
export function setPlain(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
