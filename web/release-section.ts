/**
 * The run page's "Output release" section (DESIGN §10): the policy the run was given and by which
 * datasets, where its review stands ("held for review: 1/2 approvals" with the merge request), who
 * approved and when, the outcome, and every automated disclosure finding (file, rule, detail). Every
 * string is escaped: file names and details come from what the researcher's code wrote.
 *
 * Only the run page shows this; the status page shows a held run's approval count and nothing else.
 * An anonymous reader of a private leader gets a record with who and which files hidden
 * (web/read-access.ts hideReleaseRow), rendered the same way.
 */
import type { RunReleaseRow } from '../storage/release-store.js';
import { isInFlight, isTerminal, type RunState } from '../storage/run-states.js';
import { escapeHtml, text, time } from './html-text.js';

/** Findings shown on the page; the rest are counted (`secd admin release show` lists them all). */
export const MAX_FINDINGS_SHOWN = 200;

/** "1/2 approvals" (a fraction, so "approvals" whatever the count, as the commit status says it). */
export function approvalCount(got: number, required: number): string {
  return `${got}/${required} approvals`;
}

/** A link to the merge request, only for an http(s) URL (anything else is shown as text). */
function reviewLink(url: string | null): string {
  if (!url) return ' (the merge request is not open yet)';
  if (!/^https?:\/\//i.test(url)) return ` (merge request: ${escapeHtml(url)})`;
  return ` — <a href="${escapeHtml(url)}" rel="noreferrer">the merge request in the review project</a>`;
}

function policyText(r: RunReleaseRow): string {
  const why = r.datasets.length
    ? `set by ${r.datasets.length === 1 ? 'dataset' : 'datasets'} ${r.datasets.map((d) => `<code>${escapeHtml(d)}</code>`).join(', ')}`
    : 'release.default (the run was given no dataset)';
  if (r.policy === 'direct') return `direct: outputs go straight to the project's results branch; ${why}`;
  return `review: ${r.approvalsRequired} ${r.approvalsRequired === 1 ? 'approval' : 'approvals'} from output checkers before anything reaches the project; ${why}`;
}

/** Where the review stands, for a `review` run. */
function reviewText(state: RunState, r: RunReleaseRow): string {
  if (r.outcome === 'released') return `released after review by ${text(r.decidedBy)}${r.decidedAt ? ` at ${time(r.decidedAt)}` : ''}`;
  if (r.outcome === 'withheld') return `withheld at review by ${text(r.decidedBy)}${r.decidedAt ? ` at ${time(r.decidedAt)}` : ''}; nothing reached the project`;
  if (state === 'held') return `held for review: ${approvalCount(r.approvals.length, r.approvalsRequired)}${reviewLink(r.mrUrl)}`;
  if (isTerminal(state)) return 'the run ended before any outputs were put up for review; nothing reached the project';
  return 'the outputs are held for review when the run ends';
}

function findingsPart(state: RunState, r: RunReleaseRow): string {
  if (r.findings.length === 0) {
    const none = isInFlight(state) ? 'The checks run while the outputs are read back.' : 'None: every output passed the automated checks.';
    return `<h3 id="findings-h">Disclosure checks</h3><p id="findings-none">${none}</p>`;
  }
  const shown = r.findings.slice(0, MAX_FINDINGS_SHOWN);
  const rows = shown
    .map((f) => `<tr><th scope="row" class="mono">${escapeHtml(f.file)}</th><td>${escapeHtml(f.rule)}</td><td class="reason">${escapeHtml(f.detail)}</td></tr>`)
    .join('');
  const more = r.findings.length > shown.length ? `<p class="muted">and ${r.findings.length - shown.length} more (<code>secd admin release show</code> lists them all).</p>` : '';
  const note = r.policy === 'direct' ? 'reported only: this run was released directly' : 'also in the merge request for the checkers';
  return `<h3 id="findings-h">Disclosure checks</h3>
<div class="scroll" role="region" aria-labelledby="findings-caption" tabindex="0"><table id="findings">
<caption><span class="cap" id="findings-caption">${r.findings.length} ${r.findings.length === 1 ? 'finding' : 'findings'} of the automated checks (${note})</span></caption>
<thead><tr><th scope="col">File</th><th scope="col">Rule</th><th scope="col">Detail</th></tr></thead>
<tbody>${rows}</tbody></table></div>${more}`;
}

/** The section for a run that has a release record. */
export function renderReleaseSection(state: RunState, r: RunReleaseRow): string {
  const approvals = r.approvals.length
    ? `<dt>Approved by</dt><dd><ul class="plain" id="approvals">${r.approvals.map((a) => `<li>${escapeHtml(a.user)} <span class="muted">${time(a.at)}</span></li>`).join('')}</ul></dd>`
    : '';
  const review = r.policy === 'review' ? `<dt>Review</dt><dd id="review">${reviewText(state, r)}</dd>${approvals}` : '';
  return `<section aria-labelledby="release-h"><h2 id="release-h">Output release</h2><dl class="facts">
<dt>Policy</dt><dd id="release-policy">${policyText(r)}</dd>
${review}</dl>
${findingsPart(state, r)}</section>
`;
}
