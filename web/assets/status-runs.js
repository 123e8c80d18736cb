// The status page's runs tables: the queue, the runs held for review and the recent runs, each a
// keyed redraw in which an unchanged run keeps its row. Of a held run's review the page shows only
// its count of approvals.
// @ts-check
import { duration, emptyRow, reorderChildren, runLink, timeEl } from './status-dom.js';
import { gpuWhere } from './status-nodes.js';

/**
 * @typedef {{ id: string, project: string, user: string, commit: string, state: string, reason: string, node: string|null,
 *   gpus: string[], created_at: string, started_at: string|null, finished_at: string|null,
 *   review?: { approvals: number, approvals_required: number }|null }} Run
 */

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

/** @type {WeakMap<HTMLTableSectionElement, Map<string, { json: string, row: HTMLTableRowElement }>>} */
const runRowCache = new WeakMap();

/** Keyed redraw of a runs table: unchanged runs keep their row. */
/** @param {HTMLTableSectionElement} body @param {Run[]} runs @param {'queue'|'held'|'recent'} kind @param {number} span @param {string} empty */
export function drawRuns(body, runs, kind, span, empty) {
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
