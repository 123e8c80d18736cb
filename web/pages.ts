/**
 * The leader's HTML: the cluster status page at `/` (a shell that web/assets/status.js fills from the
 * live event stream) and one run at `/runs/:id` (the commit status link; rendered here, refreshed in
 * place by web/assets/run.js while the run is unfinished). They show states, reasons, placements and
 * times — never outputs or credentials, which belong to the researcher's repository. The run page
 * leads with what the commit status says in words (scheduler/lifecycle/status-words.ts); one log
 * part only: the last build.log lines of a failed build, and only for a `direct` run, whose logs go
 * straight to the researcher anyway (a `review` run's logs wait for review with its outputs, DESIGN
 * §10), and only to a reader who may see the run's reason (web/read-access.ts). The run page also
 * shows how its outputs leave (web/release-section.ts); the status page only how many approvals each
 * held run has.
 */
import type { RunReleaseRow } from '../storage/release-store.js';
import type { RunEvent, RunRow } from '../storage/run-store.js';
import { isTerminal, type RunState } from '../storage/run-states.js';
import { redactCredentials } from '../scheduler/common/redact.js';
import { runWords, type GpuModel } from '../scheduler/lifecycle/status-words.js';
import type { ApiNode } from './api-schema.js';
import { assetUrl, type AssetTable } from './static-assets.js';
import { escapeHtml, text, time } from './html-text.js';
import { renderReleaseSection } from './release-section.js';

export { escapeHtml } from './html-text.js';


function page(assets: AssetTable, title: string, body: string, scripts: string[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="color-scheme" content="light dark"><meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="${assetUrl(assets, 'favicon.svg')}" type="image/svg+xml">
<link rel="stylesheet" href="${assetUrl(assets, 'uplot.css')}"><link rel="stylesheet" href="${assetUrl(assets, 'secd.css')}">
${scripts.join('\n')}
</head><body>${body}</body></html>`;
}

function th(label: string, cls = ''): string {
  return `<th scope="col"${cls ? ` class="${cls}"` : ''}>${label}</th>`;
}

/** The status page: empty tables with their headers; the browser fills them from /api/v1/events. */
export function renderStatusPage(assets: AssetTable): string {
  const body = `<a class="skip" href="#gpus-h">Skip to GPUs</a>
<header class="top"><h1>secd cluster</h1><p id="conn" class="conn" role="status">Connecting…</p><time id="updated"></time></header>
<main>
<section aria-labelledby="totals-h"><h2 id="totals-h" class="visually-hidden">Cluster totals</h2>
<dl class="totals">
<div><dt>GPUs busy</dt><dd id="t-gpus-busy">–</dd></div>
<div><dt>Mean GPU utilisation</dt><dd id="t-gpu-util">–</dd></div>
<div><dt>Nodes up</dt><dd id="t-nodes-up">–</dd></div>
<div><dt>Runs waiting</dt><dd id="t-queued">–</dd></div>
<div><dt>Runs on nodes</dt><dd id="t-running">–</dd></div>
<div><dt>Held for review</dt><dd id="t-held">–</dd></div>
</dl></section>
<noscript><p>This page keeps itself current with JavaScript. Without it, the same data is at
<a href="/api/v1/nodes">/api/v1/nodes</a> and <a href="/api/v1/runs">/api/v1/runs</a>, and <code>secd status</code> prints it in a terminal.</p></noscript>
<section aria-labelledby="nodes-h"><h2 id="nodes-h">Nodes</h2>
<div class="scroll" role="region" aria-labelledby="nodes-caption" tabindex="0">
<table id="nodes"><caption><span class="cap" id="nodes-caption">Nodes: state, time since the last report, load and memory</span></caption>
<colgroup><col class="n-node"><col class="n-state"><col class="n-seen"><col class="n-load"><col class="n-mem"><col class="n-cpus"><col class="n-gpus"><col class="n-runs"></colgroup>
<thead><tr>${th('Node')}${th('State')}${th('Last report')}${th('Load', 'num')}${th('Memory', 'num')}${th('CPUs', 'num')}${th('GPUs busy', 'num')}${th('Runs', 'num')}</tr></thead>
<tbody id="nodes-body"><tr class="empty"><td colspan="8">Waiting for the leader…</td></tr></tbody></table></div></section>
<section aria-labelledby="gpus-h"><h2 id="gpus-h" tabindex="-1">GPUs</h2>
<p id="gpus-summary" class="muted">Values from each node's last report.</p>
<div class="scroll" role="region" aria-labelledby="gpus-h" tabindex="0"><div id="gpus" class="gpu-list"><p class="empty">Waiting for the leader…</p></div></div></section>
<section aria-labelledby="queue-h"><h2 id="queue-h">Queue</h2>
<div class="scroll" role="region" aria-labelledby="queue-caption" tabindex="0">
<table id="queue"><caption><span class="cap" id="queue-caption">Queue: waiting runs, oldest first</span></caption>
<thead><tr>${th('#', 'num')}${th('Run')}${th('Project')}${th('User')}${th('State')}${th('Reason')}${th('Pushed')}</tr></thead>
<tbody id="queue-body"></tbody></table></div></section>
<section aria-labelledby="held-h"><h2 id="held-h">Held for review</h2>
<div class="scroll" role="region" aria-labelledby="held-caption" tabindex="0">
<table id="held"><caption><span class="cap" id="held-caption">Runs whose outputs wait for output checkers, oldest first (their files are in the review project, not here)</span></caption>
<thead><tr>${th('Run')}${th('Project')}${th('User')}${th('State')}${th('Approvals')}${th('Node')}${th('Pushed')}</tr></thead>
<tbody id="held-body"></tbody></table></div></section>
<section aria-labelledby="recent-h"><h2 id="recent-h">Recent runs</h2>
<div class="scroll" role="region" aria-labelledby="recent-caption" tabindex="0">
<table id="recent"><caption><span class="cap" id="recent-caption">Recent runs, newest first (outputs and logs are in each project's results branch)</span></caption>
<thead><tr>${th('Run')}${th('Project')}${th('User')}${th('State')}${th('Reason')}${th('Node')}${th('GPUs')}${th('Pushed')}${th('Started')}${th('Finished')}</tr></thead>
<tbody id="recent-body"></tbody></table></div></section>
</main>
<template id="node-row"><tr><th scope="row" data-cell="id"></th><td><span data-cell="state"></span></td><td><time data-cell="seen"></time></td><td class="num" data-cell="load"></td><td class="num" data-cell="memory"></td><td class="num" data-cell="cpus"></td><td class="num" data-cell="gpus"></td><td class="num" data-cell="runs"></td></tr></template>
<template id="node-gpus"><div class="node-gpus"><table class="gpus"><caption><span class="cap" data-cell="caption"></span></caption>
<colgroup><col class="c-gpu"><col class="c-util"><col class="c-chart"><col class="c-mem"><col class="c-temp"><col class="c-power"><col class="c-run"><col class="c-model"></colgroup>
<thead><tr>${th('GPU')}${th('Utilisation')}${th('Last 10 minutes')}${th('Memory used', 'num')}${th('Temp.', 'num')}${th('Power', 'num')}${th('Run')}${th('Model')}</tr></thead>
<tbody data-cell="body"></tbody></table></div></template>
<template id="gpu-row"><tr><th scope="row"><span data-cell="node"></span> <span data-cell="index"></span></th><td><div class="util"><span class="bar" aria-hidden="true"><span data-cell="utilbar"></span></span><span class="num" data-cell="util"></span></div></td><td><div class="spark" role="img" data-cell="chart" aria-label="No utilisation history yet."></div></td><td><div class="mem"><span class="num" data-cell="mem"></span><span class="bar thin" aria-hidden="true"><span data-cell="membar"></span></span></div></td><td class="num" data-cell="temp"></td><td class="num" data-cell="power"></td><td data-cell="run"></td><td class="model" data-cell="name"></td></tr></template>`;
  return page(assets, 'secd — cluster status', body, [
    `<script src="${assetUrl(assets, 'uplot.js')}" defer></script>`,
    `<script type="module" src="${assetUrl(assets, 'status.js')}"></script>`,
  ]);
}

/** How the run page names a GPU: node, index and model when the leader knows it, else the UUID. */
export type GpuLabel = (uuid: string) => string | null;

/** A GPU's (or MIG device's) model as its node reports it, for the run's words; null when unknown. */
export type GpuModelOf = (uuid: string) => GpuModel | null;

/** What the run page's words need besides the run: the GPUs' models and the time (default: now). */
export interface RunWordsContext {
  gpuModel?: GpuModelOf;
  now?: Date;
}

/** Each GPU's and MIG device's model from the nodes' reports. */
export function gpuModelsOf(nodes: readonly ApiNode[]): GpuModelOf {
  const models = new Map<string, GpuModel>();
  for (const n of nodes) {
    for (const g of n.gpus) {
      models.set(g.uuid, { name: g.name, migProfile: null });
      for (const d of g.mig_devices ?? []) models.set(d.uuid, { name: g.name, migProfile: d.profile });
    }
  }
  return (uuid) => models.get(uuid) ?? null;
}

/** The run's words, as its commit status says them (status-words.ts): node, GPUs and time left while it runs. */
export function runPageWords(run: RunRow, events: readonly RunEvent[], ctx: RunWordsContext = {}): string {
  const runforMs = (run.config as { runforMs?: unknown } | null)?.runforMs;
  return runWords(
    {
      state: run.state,
      reason: run.reason,
      node: run.node,
      gpus: run.gpus.map((u) => ctx.gpuModel?.(u) ?? null),
      runforMs: typeof runforMs === 'number' ? runforMs : null,
      clockFrom: firstAt(events, 'building') ?? run.startedAt,
    },
    ctx.now ?? new Date(),
  );
}

/**
 * The end of a failed build's log, for a `direct` run only (`release` null: the leader has no output
 * release, so every run is direct); empty for every other run and for a reader who may not see it
 * (read-access.ts clears the tail).
 */
function buildLogTailPart(run: RunRow, failedBuild: boolean, release: RunReleaseRow | null): string {
  if (!failedBuild || !run.buildLogTail || (release !== null && release.policy !== 'direct')) return '';
  return `<section aria-labelledby="build-log-h"><h2 id="build-log-h">End of the build log</h2>
<p class="muted">The last lines of <code>build.log</code>; the whole log is ${buildLogPlace(run)}.</p>
<pre class="log" id="build-log-tail" tabindex="0">${escapeHtml(redactCredentials(run.buildLogTail))}</pre></section>
`;
}


/** "3 min 4 s" */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function between(from: string | null | undefined, to: string | null | undefined): string {
  if (!from || !to) return '—';
  return formatDuration(Date.parse(to) - Date.parse(from));
}

/** A state as its pill shows it (the stylesheet gives each state its colour). */
export function pill(state: RunState): string {
  return `<span class="pill state-${escapeHtml(state)}">${escapeHtml(state.replace('_', ' '))}</span>`;
}

/** Where the outputs are: the results branch, or why there is none (yet). */
function resultsBranch(run: RunRow): string {
  if (run.state === 'held') return 'none yet: the outputs wait for review (below)';
  if (run.state === 'withheld') return 'none: the outputs were withheld at review';
  return run.branch ? `<code>${escapeHtml(run.branch)}</code> (outputs and logs are there, in the project's repository)` : '—';
}

/** Where a failed build's build.log is: the results branch, or the node's kept folder when no branch was pushed. */
function buildLogPlace(run: RunRow): string {
  if (run.branch) return `<code>_secd/build.log</code> on branch <code>${escapeHtml(run.branch)}</code>`;
  return `not pushed: on node ${text(run.node)}, in <code>kept/${escapeHtml(run.id)}/build.log</code> under its work_dir when the results could not be pushed`;
}

/** When the run first entered `state`, from its audit trail. */
export function firstAt(events: readonly RunEvent[], state: RunState): string | null {
  return events.find((e) => e.to === state)?.at ?? null;
}

/** The changing part of the run page (what run.js swaps in while the run is unfinished). */
export function renderRunMain(
  run: RunRow,
  events: readonly RunEvent[],
  gpuLabel: GpuLabel = () => null,
  release: RunReleaseRow | null = null,
  words: RunWordsContext = {},
): string {
  const queuedAt = firstAt(events, 'queued');
  const assignedAt = firstAt(events, 'assigned');
  // A build that failed never ran: no "Ran" row, whatever start time the node reported.
  const failedBuild = run.state === 'failed' && firstAt(events, 'building') !== null && firstAt(events, 'running') === null;
  const runningAt = failedBuild ? null : (run.startedAt ?? firstAt(events, 'running'));
  const uploadingAt = firstAt(events, 'uploading');
  const endAt = run.finishedAt;
  // A reviewed run's results were pushed when it was held; the review took the rest.
  const heldAt = firstAt(events, 'held');
  const pushedAt = heldAt ?? (uploadingAt ? endAt : null);
  const gpus = run.gpus.length
    ? `<ul class="plain">${run.gpus
        .map((u) => {
          const label = gpuLabel(u);
          return `<li>${label ? `${escapeHtml(label)} <span class="muted mono">${escapeHtml(u)}</span>` : `<span class="mono">${escapeHtml(u)}</span>`}</li>`;
        })
        .join('')}</ul>`
    : run.node
      ? 'none (CPU only)'
      : '—';
  const history = events
    .map((e, i) => {
      const prev = i > 0 ? events[i - 1]!.at : null;
      return `<tr><th scope="row">${time(e.at)}</th><td>${e.from ? pill(e.from) : '—'}</td><td>${pill(e.to)}</td><td class="reason">${text(redactCredentials(e.reason))}</td><td class="num">${prev ? `+${between(prev, e.at)}` : ''}</td></tr>`;
    })
    .join('');
  const warnings = run.warnings.length
    ? `<dt>secd.yml warnings</dt><dd><ul class="plain">${run.warnings.map((w) => `<li>${escapeHtml(redactCredentials(w))}</li>`).join('')}</ul></dd>`
    : '';
  return `<h1>Run <code>${escapeHtml(run.id)}</code> ${pill(run.state)}</h1>
<p class="lead" id="reason">${text(redactCredentials(runPageWords(run, events, words)))}</p>
<section aria-labelledby="details-h"><h2 id="details-h">Details</h2><dl class="facts">
<dt>Project</dt><dd>${text(run.project)}</dd>
<dt>Commit</dt><dd><code>${escapeHtml(run.commit)}</code></dd>
<dt>Pushed by</dt><dd>${text(run.user)}</dd>
<dt>Signing key</dt><dd>${run.signer ? `<code>${escapeHtml(run.signer)}</code>` : '—'}</dd>
<dt>Node</dt><dd>${text(run.node)}</dd>
<dt>GPUs</dt><dd>${gpus}</dd>
<dt>Results branch</dt><dd>${resultsBranch(run)}</dd>
${run.exitCode !== null ? `<dt>Exit code</dt><dd>${run.exitCode}</dd>` : ''}${failedBuild ? `<dt>Build log</dt><dd>${buildLogPlace(run)}</dd>` : ''}${warnings}
</dl></section>
${buildLogTailPart(run, failedBuild, release)}${release ? renderReleaseSection(run.state, release) : ''}<section aria-labelledby="timings-h"><h2 id="timings-h">Timings</h2>
<div class="scroll" role="region" aria-labelledby="timings-caption" tabindex="0"><table>
<caption><span class="cap" id="timings-caption">When each step ended and how long it took (UTC)</span></caption>
<thead><tr>${th('Step')}${th('At')}${th('Took', 'num')}</tr></thead><tbody>
<tr><th scope="row">Pushed</th><td>${time(run.createdAt)}</td><td class="num">—</td></tr>
<tr><th scope="row">Verified and queued</th><td>${time(queuedAt)}</td><td class="num">${between(run.createdAt, queuedAt)}</td></tr>
<tr><th scope="row">Waited for a node</th><td>${time(assignedAt)}</td><td class="num">${between(queuedAt, assignedAt)}</td></tr>
${failedBuild ? `<tr><th scope="row">Build failed</th><td>${time(endAt)}</td><td class="num">${between(assignedAt, endAt)}</td></tr>
` : `<tr><th scope="row">Built the image, started the container</th><td>${time(runningAt)}</td><td class="num">${between(assignedAt, runningAt)}</td></tr>
<tr><th scope="row">Ran</th><td>${time(uploadingAt)}</td><td class="num">${between(runningAt, uploadingAt)}</td></tr>
`}<tr><th scope="row">${heldAt ? 'Pushed the results for review' : 'Pushed the results'}</th><td>${time(pushedAt)}</td><td class="num">${between(uploadingAt, pushedAt)}</td></tr>
${heldAt ? `<tr><th scope="row">Reviewed</th><td>${time(endAt)}</td><td class="num">${between(heldAt, endAt)}</td></tr>
` : ''}<tr><th scope="row">Total</th><td>${time(endAt)}</td><td class="num">${between(run.createdAt, endAt)}</td></tr>
</tbody></table></div></section>
<section aria-labelledby="history-h"><h2 id="history-h">History</h2>
<div class="scroll" role="region" aria-labelledby="history-caption" tabindex="0"><table>
<caption><span class="cap" id="history-caption">Every state change of this run, oldest first (UTC)</span></caption>
<thead><tr>${th('At')}${th('From')}${th('To')}${th('Reason')}${th('After', 'num')}</tr></thead>
<tbody>${history}</tbody></table></div></section>`;
}

/** One run: state, reason, placement, timings and its event history; null → "not found". */
export function renderRunPage(
  assets: AssetTable,
  run: RunRow | null,
  events: readonly RunEvent[],
  gpuLabel?: GpuLabel,
  release: RunReleaseRow | null = null,
  words: RunWordsContext = {},
): string {
  if (!run) {
    return page(
      assets,
      'secd — run not found',
      '<header class="top"><p><a href="/">← Cluster status</a></p></header><main><h1>Run not found</h1><p>The leader has no run with this id.</p></main>',
      [],
    );
  }
  const live = !isTerminal(run.state);
  return page(
    assets,
    `secd — run ${run.id} (${run.state})`,
    `<header class="top"><p><a href="/">← Cluster status</a></p>${live ? '<p class="muted" id="live-note">Updates itself until the run ends.</p>' : ''}</header>
<main id="run" data-run="${escapeHtml(run.id)}" data-live="${live}">${renderRunMain(run, events, gpuLabel, release, words)}</main>`,
    live ? [`<script type="module" src="${assetUrl(assets, 'run.js')}"></script>`] : [],
  );
}
