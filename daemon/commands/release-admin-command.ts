/**
 * `secd admin release list|show`: the audit of output release (DESIGN §10) on the leader's database,
 * for data owners and output checkers. It only reads: approving happens in GitLab, on the review
 * project's merge request, where secd reads it back.
 *
 * Choices made here:
 * - A held run's age counts from when it became `held` (its audit event), not from the push: the
 *   question is how long checkers have left it waiting. A decided run's counts to its decision (how
 *   long the review took); a run never held counts from its release record (handed to a node).
 * - `list --all` shows every run released under `review` (held, decided, or still on its node);
 *   `direct` runs leave at once and have nothing to decide, but `show` prints their findings too.
 * - `--json` prints the same facts in snake_case, like the HTTP API, for scripts and audits.
 */
import type { Command } from 'commander';
import type { RunReleaseRow } from '../../storage/release-store.js';
import type { RunEvent, RunRow } from '../../storage/run-store.js';
import { adminAction, adminGroup, AdminError, loadAdminConfig, withStores } from './admin-command.js';
import { table } from './admin-table.js';

/** One line of `release list`: a run, its record and since when it has been held. */
interface ListedRelease {
  run: RunRow;
  release: RunReleaseRow;
  heldAt: string | null;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** When the run entered `held` (the latest time, if it ever left and came back), or null. */
function heldSince(events: readonly RunEvent[]): string | null {
  return events.filter((e) => e.to === 'held' && e.from !== 'held').at(-1)?.at ?? null;
}

/** `45s`, `12m`, `3h 5m`, `2d 4h`: precise enough to see who has waited longest. */
function ageText(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

function ageSeconds(since: string, now: Date): number {
  return Math.max(0, Math.floor((now.getTime() - Date.parse(since)) / 1000));
}

/** How long the run has been (or was) held: until its decision, or until now. */
function heldSeconds(l: ListedRelease, now: Date): number {
  const until = l.release.decidedAt !== null ? new Date(l.release.decidedAt) : now;
  return ageSeconds(l.heldAt ?? l.release.createdAt, until);
}

/** What became of a release: `released` / `withheld`, or why there is no outcome yet. */
function outcomeWord(l: ListedRelease): string {
  if (l.release.outcome) return l.release.outcome;
  if (l.run.state === 'held') return 'waiting';
  return l.run.state;
}

function listJson(rows: readonly ListedRelease[], now: Date): unknown[] {
  return rows.map((l) => ({
    run_id: l.run.id,
    project: l.run.project,
    commit: l.run.commit,
    researcher: l.run.user,
    state: l.run.state,
    policy: l.release.policy,
    approvals_counted: l.release.approvals.length,
    approvals_required: l.release.approvalsRequired,
    held_at: l.heldAt,
    held_seconds: heldSeconds(l, now),
    merge_request_url: l.release.mrUrl,
    outcome: l.release.outcome,
    decided_by: l.release.decidedBy,
    decided_at: l.release.decidedAt,
  }));
}

function showJson(run: RunRow, release: RunReleaseRow | undefined, events: readonly RunEvent[]): unknown {
  return {
    run: {
      id: run.id,
      project: run.project,
      ref: run.ref,
      commit: run.commit,
      researcher: run.user,
      state: run.state,
      reason: run.reason,
      created_at: run.createdAt,
      finished_at: run.finishedAt,
    },
    release: release
      ? {
          policy: release.policy,
          approvals_required: release.approvalsRequired,
          datasets: release.datasets,
          findings: release.findings,
          review: {
            project_id: release.reviewProjectId,
            branch: release.reviewBranch,
            commit: release.reviewCommit,
            merge_request_iid: release.mrIid,
            merge_request_url: release.mrUrl,
          },
          approvals: release.approvals.map((a) => ({ user: a.user, user_id: a.userId, at: a.at })),
          outcome: release.outcome,
          decided_by: release.decidedBy,
          decided_at: release.decidedAt,
          created_at: release.createdAt,
        }
      : null,
    events: events.map((e) => ({ at: e.at, from: e.from, to: e.to, reason: e.reason })),
  };
}

/** The policy, and where it came from: the datasets that set it, or release.default. */
function policyLine(r: RunReleaseRow): string {
  const source = r.datasets.length > 0 ? `set by dataset${r.datasets.length === 1 ? '' : 's'} ${r.datasets.join(', ')}` : 'release.default: the run was given no dataset';
  if (r.policy === 'direct') return `policy: direct (${source}): outputs go straight to the researcher; findings are reported only`;
  return `policy: review, ${r.approvalsRequired} approval${r.approvalsRequired === 1 ? '' : 's'} required (${source})`;
}

function outcomeLine(run: RunRow, r: RunReleaseRow, heldAt: string | null, now: Date): string {
  if (r.outcome === 'released') return `outcome: released${r.decidedBy ? ` after review by ${r.decidedBy}` : ''} at ${r.decidedAt ?? '?'}`;
  if (r.outcome === 'withheld') return `outcome: withheld${r.decidedBy ? ` by ${r.decidedBy}` : ''} at ${r.decidedAt ?? '?'}; nothing reached the researcher`;
  if (r.policy === 'direct') return `outcome: direct, no review (the run is ${run.state})`;
  if (run.state === 'held') {
    const missing = Math.max(0, r.approvalsRequired - r.approvals.length);
    const since = heldAt ? ` for ${ageText(ageSeconds(heldAt, now))}` : '';
    return `outcome: none yet: held${since}, waiting for ${missing} more approval${missing === 1 ? '' : 's'}`;
  }
  return `outcome: none: the run is ${run.state}${run.reason ? ` (${run.reason})` : ''}`;
}

function printShow(run: RunRow, r: RunReleaseRow | undefined, events: readonly RunEvent[], now: Date): void {
  say(`run ${run.id}: ${run.project}@${run.commit.slice(0, 8)} (${run.ref}) by ${run.user}`);
  say(`state: ${run.state}${run.reason ? ` (${run.reason})` : ''}`);
  if (!r) {
    say('release: no record: the run never reached a node, so nothing was checked or held');
  } else {
    say(policyLine(r));
    if (r.findings.length === 0) {
      say('disclosure findings: none');
    } else {
      say(`disclosure findings (${r.findings.length}):`);
      say(indent(table(['FILE', 'RULE', 'DETAIL'], r.findings.map((f) => [f.file, f.rule, f.detail]))));
    }
    if (r.reviewBranch !== null || r.mrUrl !== null) {
      say('review:');
      say(`  branch:        ${r.reviewBranch ?? '-'}`);
      say(`  commit:        ${r.reviewCommit ?? '-'}`);
      say(`  merge request: ${r.mrUrl ?? '-'}${r.mrIid !== null ? ` (!${r.mrIid})` : ''}`);
    } else if (r.policy === 'review') {
      say('review: none yet (no merge request opened)');
    }
    if (r.policy === 'review') {
      say(`approvals counted (${r.approvals.length}/${r.approvalsRequired}):${r.approvals.length === 0 ? ' none' : ''}`);
      if (r.approvals.length > 0) say(indent(table(['REVIEWER', 'AT'], r.approvals.map((a) => [a.user, a.at]))));
    }
    say(outcomeLine(run, r, heldSince(events), now));
  }
  say(`events (${events.length}):`);
  say(indent(table(['AT', 'STATE', 'REASON'], events.map((e) => [e.at, e.from === e.to ? `${e.to} (note)` : `${e.from ?? '-'} → ${e.to}`, e.reason]))));
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

function parseLimit(value: string): number {
  const n = /^[0-9]{1,4}$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= 1 && n <= 1000)) throw new AdminError(`--limit must be a whole number from 1 to 1000 (got "${value}")`);
  return n;
}

/** Add `secd admin release list|show` to the `admin` group. */
export function registerReleaseAdminCommands(program: Command): void {
  const admin = adminGroup(program);
  const release = admin.command('release').description('output release: held runs, their findings, approvals and outcome');

  adminAction(
    release
      .command('list')
      .description('runs held for review: approvals so far, age, merge request')
      .option('--all', 'also runs already released or withheld (and review runs still on their node), newest first')
      .option('--limit <n>', 'with --all, newest runs to show', '50')
      .option('--json', 'print JSON'),
    async (options: { all?: boolean; limit: string; json?: boolean; config?: string }) => {
      const limit = parseLimit(options.limit);
      const now = new Date();
      const rows = await withStores(loadAdminConfig(options.config), async ({ runs, releases }) => {
        const records = options.all
          ? (await releases.list({ limit: 1000 })).filter((r) => r.policy === 'review' || r.outcome !== null).slice(0, limit)
          : await releases.held();
        const listed: ListedRelease[] = [];
        for (const release of records) {
          const run = await runs.get(release.runId);
          if (run) listed.push({ run, release, heldAt: heldSince(await runs.events(run.id)) });
        }
        return listed;
      });
      if (options.json) {
        say(JSON.stringify(listJson(rows, now), null, 2));
        return;
      }
      if (rows.length === 0) {
        say(options.all ? 'secd admin: no run has been held for review yet' : 'secd admin: no run is held for review (see --all for decided ones)');
        return;
      }
      const age = (l: ListedRelease) => ageText(heldSeconds(l, now));
      const approvals = (l: ListedRelease) => `${l.release.approvals.length}/${l.release.approvalsRequired}`;
      if (options.all) {
        say(
          table(
            ['RUN', 'PROJECT', 'RESEARCHER', 'APPROVALS', 'OUTCOME', 'DECIDED BY', 'HELD FOR', 'MERGE REQUEST'],
            rows.map((l) => [l.run.id, l.run.project, l.run.user, approvals(l), outcomeWord(l), l.release.decidedBy ?? '-', age(l), l.release.mrUrl ?? '-']),
          ),
        );
      } else {
        say(
          table(
            ['RUN', 'PROJECT', 'RESEARCHER', 'APPROVALS', 'AGE', 'MERGE REQUEST'],
            rows.map((l) => [l.run.id, l.run.project, l.run.user, approvals(l), age(l), l.release.mrUrl ?? '-']),
          ),
        );
      }
    },
  );

  adminAction(
    release
      .command('show')
      .description("one run's release: policy, disclosure findings, review, each approval, outcome and audit events")
      .argument('<run id>')
      .option('--json', 'print JSON'),
    async (id: string, options: { json?: boolean; config?: string }) => {
      const found = await withStores(loadAdminConfig(options.config), async ({ runs, releases }) => {
        const run = await runs.get(id);
        if (!run) return null;
        return { run, release: await releases.get(id), events: await runs.events(id) };
      });
      if (found === null) throw new AdminError(`no run ${id} (held runs: "secd admin release list"; decided ones: "secd admin release list --all")`);
      if (options.json) {
        say(JSON.stringify(showJson(found.run, found.release, found.events), null, 2));
        return;
      }
      printShow(found.run, found.release, found.events, new Date());
    },
  );
}
