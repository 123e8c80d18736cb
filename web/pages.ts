/**
 * Server-rendered pages: the cluster overview at `/` and one run at `/runs/:id` (the commit status
 * link). They show states, reasons and placements only — never outputs, logs or credentials, which
 * belong to the researcher's repository.
 */
import type { RunEvent, RunRow } from '../storage/run-store.js';
import type { ApiNode } from './leader-server.js';

/** Escape text for HTML element and attribute content. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const STYLE = `body{font-family:system-ui,sans-serif;margin:1rem auto;max-width:72rem;padding:0 1rem;color:#111;background:#fff}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ccc}
th{background:#f0f0f0}code{font-size:.9em}.state-succeeded{color:#065f24}.state-failed,.state-rejected,.state-lost,.state-timed_out{color:#9b1c1c}
@media (max-width:40rem){table{font-size:.85rem}}`;

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

function cell(value: string | number | null | undefined): string {
  return `<td>${value === null || value === undefined ? '—' : escapeHtml(String(value))}</td>`;
}

function runRow(r: RunRow): string {
  return `<tr><td><a href="/runs/${escapeHtml(r.id)}"><code>${escapeHtml(r.id)}</code></a></td>${cell(r.project)}${cell(r.user)}
<td class="state-${escapeHtml(r.state)}">${escapeHtml(r.state)}</td>${cell(r.reason)}${cell(r.node)}${cell(r.gpus.length ? r.gpus.join(', ') : null)}${cell(r.createdAt)}${cell(r.finishedAt)}</tr>`;
}

/** The cluster overview: nodes, GPUs and recent runs. */
export function renderStatusPage(nodes: ApiNode[], runs: RunRow[]): string {
  const gpus = nodes.flatMap((n) => n.gpus.map((g) => ({ node: n.id, ...g })));
  const busy = gpus.filter((g) => g.run_id !== null).length;
  const nodeRows = nodes
    .map((n) => `<tr>${cell(n.id)}${cell(n.state)}${cell(n.last_seen)}${cell(n.load)}${cell(n.cpus)}${cell(n.gpus.length)}${cell(n.runs.length)}</tr>`)
    .join('');
  const gpuRows = gpus
    .map((g) => `<tr>${cell(g.node)}${cell(g.index)}${cell(g.name)}${cell(g.utilization_pct === null ? null : `${g.utilization_pct} %`)}${cell(g.temperature_c === null ? null : `${g.temperature_c} °C`)}${cell(g.run_id)}</tr>`)
    .join('');
  return page(
    'secd — cluster status',
    `<h1>secd cluster</h1><p>GPUs busy: <strong>${busy} / ${gpus.length}</strong> · nodes: ${nodes.length}</p>
<h2>Nodes</h2><table><thead><tr><th scope="col">Node</th><th scope="col">State</th><th scope="col">Last seen</th><th scope="col">Load</th><th scope="col">CPUs</th><th scope="col">GPUs</th><th scope="col">Runs</th></tr></thead><tbody>${nodeRows}</tbody></table>
<h2>GPUs</h2><table><thead><tr><th scope="col">Node</th><th scope="col">Index</th><th scope="col">Name</th><th scope="col">Utilisation</th><th scope="col">Temperature</th><th scope="col">Run</th></tr></thead><tbody>${gpuRows}</tbody></table>
<h2>Runs</h2><table><thead><tr><th scope="col">Run</th><th scope="col">Project</th><th scope="col">User</th><th scope="col">State</th><th scope="col">Reason</th><th scope="col">Node</th><th scope="col">GPUs</th><th scope="col">Created</th><th scope="col">Finished</th></tr></thead><tbody>${runs.map(runRow).join('')}</tbody></table>`,
  );
}

/** One run: state, reason, placement, timings and its event history. */
export function renderRunPage(run: RunRow | null, events: RunEvent[]): string {
  if (!run) return page('secd — run not found', '<h1>Run not found</h1><p><a href="/">Back to the cluster</a></p>');
  const rows = events.map((e) => `<tr>${cell(e.at)}${cell(e.from)}${cell(e.to)}${cell(e.reason)}</tr>`).join('');
  return page(
    `secd — run ${run.id}`,
    `<p><a href="/">← cluster</a></p><h1>Run <code>${escapeHtml(run.id)}</code></h1>
<table><tbody>
<tr><th scope="row">Project</th>${cell(run.project)}</tr>
<tr><th scope="row">Commit</th><td><code>${escapeHtml(run.commit)}</code></td></tr>
<tr><th scope="row">User</th>${cell(run.user)}</tr>
<tr><th scope="row">State</th><td class="state-${escapeHtml(run.state)}">${escapeHtml(run.state)}</td></tr>
<tr><th scope="row">Reason</th>${cell(run.reason)}</tr>
<tr><th scope="row">Node</th>${cell(run.node)}</tr>
<tr><th scope="row">GPUs</th>${cell(run.gpus.length ? run.gpus.join(', ') : null)}</tr>
<tr><th scope="row">Results branch</th>${cell(run.branch)}</tr>
<tr><th scope="row">Created</th>${cell(run.createdAt)}</tr>
<tr><th scope="row">Started</th>${cell(run.startedAt)}</tr>
<tr><th scope="row">Finished</th>${cell(run.finishedAt)}</tr>
</tbody></table>
<h2>History</h2><table><thead><tr><th scope="col">At</th><th scope="col">From</th><th scope="col">To</th><th scope="col">Reason</th></tr></thead><tbody>${rows}</tbody></table>`,
  );
}
