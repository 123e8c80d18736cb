/**
 * Output release records (DESIGN §10), one row per run that reached a node: the policy it was given
 * and by which datasets, what the disclosure checks found, and for a held run its review (the branch
 * and commit put up for review, the merge request), the approvals counted and the outcome. The run's
 * state stays in `runs` (run-store.ts); this table says why and by whom it left `held`.
 *
 * The types are spelled here rather than imported from scheduler/contract: storage imports nothing
 * of the scheduler. They are the same shapes (ReleasePolicy, DisclosureFinding).
 */
import type { SqliteDatabase } from './database.js';

/** `direct`: results to the researcher at once; `review`: held until checkers approve. */
export type StoredReleasePolicy = 'direct' | 'review';

/** One disclosure finding as stored (scheduler/contract/disclosure.ts DisclosureFinding). */
export interface StoredFinding {
  file: string;
  rule: string;
  detail: string;
}

/** An approval secd counted towards a release: the reviewer and when secd first saw it. */
export interface CountedApproval {
  user: string;
  userId: number;
  at: string;
}

/** A run's release record. */
export interface RunReleaseRow {
  runId: string;
  policy: StoredReleasePolicy;
  approvalsRequired: number;
  /** Datasets that decided the policy (empty: release.default). */
  datasets: string[];
  findings: StoredFinding[];
  reviewProjectId: number | null;
  reviewBranch: string | null;
  /** The results commit the node pushed to the review project: exactly what a release pushes on. */
  reviewCommit: string | null;
  /** The results folder inside that commit (`outputs/secd-…`): what the review lists. */
  reviewPath: string | null;
  /** How the node saw the run end, restored when it is released (`succeeded`, `timed_out`, …). */
  nodeEnd: string | null;
  nodeReason: string | null;
  mrIid: number | null;
  mrUrl: string | null;
  approvals: CountedApproval[];
  outcome: 'released' | 'withheld' | null;
  /** The reviewers who released it (comma-separated) or the user who withheld it. */
  decidedBy: string | null;
  decidedAt: string | null;
  /** The last state of the run's `secd/release` commit status that GitLab took. */
  statusPosted: string | null;
  createdAt: string;
}

/** Fields set after the decision. */
export type ReleasePatch = Partial<
  Pick<
    RunReleaseRow,
    'findings' | 'reviewProjectId' | 'reviewBranch' | 'reviewCommit' | 'reviewPath' | 'nodeEnd' | 'nodeReason' | 'mrIid' | 'mrUrl' | 'approvals' | 'outcome' | 'decidedBy' | 'decidedAt' | 'statusPosted'
  >
>;

interface DbRelease {
  run_id: string;
  policy: string;
  approvals_required: number;
  datasets: string;
  findings: string;
  review_project_id: number | null;
  review_branch: string | null;
  review_commit: string | null;
  review_path: string | null;
  node_end: string | null;
  node_reason: string | null;
  mr_iid: number | null;
  mr_url: string | null;
  approvals: string;
  outcome: string | null;
  decided_by: string | null;
  decided_at: string | null;
  status_posted: string | null;
  created_at: string;
}

const COLUMNS: Record<keyof ReleasePatch, string> = {
  findings: 'findings',
  reviewProjectId: 'review_project_id',
  reviewBranch: 'review_branch',
  reviewCommit: 'review_commit',
  reviewPath: 'review_path',
  nodeEnd: 'node_end',
  nodeReason: 'node_reason',
  mrIid: 'mr_iid',
  mrUrl: 'mr_url',
  approvals: 'approvals',
  outcome: 'outcome',
  decidedBy: 'decided_by',
  decidedAt: 'decided_at',
  statusPosted: 'status_posted',
};
const JSON_COLUMNS = new Set<keyof ReleasePatch>(['findings', 'approvals']);

function toRow(r: DbRelease): RunReleaseRow {
  return {
    runId: r.run_id,
    policy: r.policy === 'review' ? 'review' : 'direct',
    approvalsRequired: r.approvals_required,
    datasets: JSON.parse(r.datasets) as string[],
    findings: JSON.parse(r.findings) as StoredFinding[],
    reviewProjectId: r.review_project_id,
    reviewBranch: r.review_branch,
    reviewCommit: r.review_commit,
    reviewPath: r.review_path,
    nodeEnd: r.node_end,
    nodeReason: r.node_reason,
    mrIid: r.mr_iid,
    mrUrl: r.mr_url,
    approvals: JSON.parse(r.approvals) as CountedApproval[],
    outcome: r.outcome === 'released' || r.outcome === 'withheld' ? r.outcome : null,
    decidedBy: r.decided_by,
    decidedAt: r.decided_at,
    statusPosted: r.status_posted,
    createdAt: r.created_at,
  };
}

/** The only writer of `run_releases`. */
export class ReleaseStore {
  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Record a run's policy when it is handed to a node. The first decision stands: a run handed over
   * again (a node back without it) keeps the policy it ran under, whatever a data owner changed since.
   */
  decide(runId: string, d: { policy: StoredReleasePolicy; approvalsRequired: number; datasets: readonly string[] }): RunReleaseRow {
    this.db
      .prepare('INSERT OR IGNORE INTO run_releases (run_id, policy, approvals_required, datasets, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(runId, d.policy, d.approvalsRequired, JSON.stringify(d.datasets), this.now().toISOString());
    return this.get(runId)!;
  }

  get(runId: string): RunReleaseRow | undefined {
    const r = this.db.prepare('SELECT * FROM run_releases WHERE run_id = ?').get(runId) as DbRelease | undefined;
    return r ? toRow(r) : undefined;
  }

  update(runId: string, patch: ReleasePatch): void {
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const [key, value] of Object.entries(patch) as Array<[keyof ReleasePatch, unknown]>) {
      if (value === undefined) continue;
      sets.push(`${COLUMNS[key]} = ?`);
      values.push(JSON_COLUMNS.has(key) ? JSON.stringify(value) : value);
    }
    if (sets.length === 0) return;
    this.db.prepare(`UPDATE run_releases SET ${sets.join(', ')} WHERE run_id = ?`).run(...values, runId);
  }

  /** Records of runs now `held` (waiting for review), oldest first. */
  held(): RunReleaseRow[] {
    const rows = this.db
      .prepare(
        `SELECT rr.* FROM run_releases rr JOIN runs r ON r.id = rr.run_id
         WHERE r.state = 'held' ORDER BY rr.created_at ASC, rr.rowid ASC`,
      )
      .all() as DbRelease[];
    return rows.map(toRow);
  }

  /** The held run whose review is merge request `iid` of project `projectId`, if any. */
  heldByMergeRequest(projectId: number, iid: number): RunReleaseRow | undefined {
    const r = this.db
      .prepare(
        `SELECT rr.* FROM run_releases rr JOIN runs r ON r.id = rr.run_id
         WHERE r.state = 'held' AND rr.review_project_id = ? AND rr.mr_iid = ?`,
      )
      .get(projectId, iid) as DbRelease | undefined;
    return r ? toRow(r) : undefined;
  }

  /** The newest records, newest first (audit listings). */
  list(opts: { limit?: number; outcome?: 'released' | 'withheld' } = {}): RunReleaseRow[] {
    const limit = Math.max(1, Math.min(opts.limit ?? 100, 1000));
    const rows = opts.outcome
      ? this.db.prepare('SELECT * FROM run_releases WHERE outcome = ? ORDER BY created_at DESC, rowid DESC LIMIT ?').all(opts.outcome, limit)
      : this.db.prepare('SELECT * FROM run_releases ORDER BY created_at DESC, rowid DESC LIMIT ?').all(limit);
    return (rows as DbRelease[]).map(toRow);
  }
}
