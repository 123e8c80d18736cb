/**
 * Output release records (DESIGN §10), one row per run that reached a node: the policy it was given
 * and by which datasets, what the disclosure checks found, and for a held run its review (the branch
 * and commit put up for review, the merge request), the approvals counted and the outcome. The run's
 * state stays in `runs` (run-store.ts); this table says why and by whom it left `held`.
 *
 * The types are spelled here rather than imported from scheduler/contract: storage imports nothing
 * of the scheduler. They are the same shapes (ReleasePolicy, DisclosureFinding).
 *
 * One Kysely text for SQLite and MySQL; every write goes through `scope.write` (the active leader's
 * epoch rides with it, state-scope.ts). Listings break ties between records of the same millisecond
 * by insertion order: SQLite's rowid, MySQL's `seq` column (cluster-tables.ts).
 */
import { sql, type Selectable, type Updateable } from 'kysely';
import type { RunReleasesTable } from './sql/cluster-tables.js';
import type { StateEngine } from './sql/state-database.js';
import type { StateScope } from './sql/state-scope.js';

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

type DbRelease = Selectable<RunReleasesTable>;

const COLUMNS: Record<keyof ReleasePatch, keyof RunReleasesTable> = {
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
    approvalsRequired: Number(r.approvals_required),
    datasets: JSON.parse(r.datasets) as string[],
    findings: JSON.parse(r.findings) as StoredFinding[],
    reviewProjectId: r.review_project_id === null ? null : Number(r.review_project_id),
    reviewBranch: r.review_branch,
    reviewCommit: r.review_commit,
    reviewPath: r.review_path,
    nodeEnd: r.node_end,
    nodeReason: r.node_reason,
    mrIid: r.mr_iid === null ? null : Number(r.mr_iid),
    mrUrl: r.mr_url,
    approvals: JSON.parse(r.approvals) as CountedApproval[],
    outcome: r.outcome === 'released' || r.outcome === 'withheld' ? r.outcome : null,
    decidedBy: r.decided_by,
    decidedAt: r.decided_at,
    statusPosted: r.status_posted,
    createdAt: r.created_at,
  };
}

/** The column that orders records inserted in the same millisecond (`table` is the table or its alias). */
function insertOrder(engine: StateEngine, table: string) {
  return sql.ref(`${table}.${engine === 'mysql' ? 'seq' : 'rowid'}`);
}

/** The only writer of `run_releases`. */
export class ReleaseStore {
  constructor(
    private readonly scope: StateScope,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Record a run's policy when it is handed to a node. The first decision stands: a run handed over
   * again (a node back without it) keeps the policy it ran under, whatever a data owner changed since.
   */
  async decide(runId: string, d: { policy: StoredReleasePolicy; approvalsRequired: number; datasets: readonly string[] }): Promise<RunReleaseRow> {
    return this.scope.write(async (trx) => {
      const insert = trx.db.insertInto('run_releases').values({
        run_id: runId,
        policy: d.policy,
        approvals_required: d.approvalsRequired,
        datasets: JSON.stringify(d.datasets),
        findings: '[]',
        approvals: '[]',
        created_at: this.now().toISOString(),
      });
      // Only the duplicate key is let pass (not INSERT IGNORE: on MySQL that would also swallow a
      // run that does not exist, which SQLite refuses).
      await (trx.engine === 'mysql'
        ? insert.onDuplicateKeyUpdate({ run_id: (eb) => eb.ref('run_id') })
        : insert.onConflict((oc) => oc.column('run_id').doNothing())
      ).execute();
      return (await new ReleaseStore(trx, this.now).get(runId))!;
    });
  }

  /** One run's record, or undefined. */
  async get(runId: string): Promise<RunReleaseRow | undefined> {
    const r = await this.scope.db.selectFrom('run_releases').selectAll().where('run_id', '=', runId).executeTakeFirst();
    return r ? toRow(r) : undefined;
  }

  /** Set the fields `patch` gives (undefined ones are left as they are). */
  async update(runId: string, patch: ReleasePatch): Promise<void> {
    const values: Updateable<RunReleasesTable> = {};
    const set = values as Record<string, unknown>;
    for (const [key, value] of Object.entries(patch) as Array<[keyof ReleasePatch, unknown]>) {
      if (value === undefined) continue;
      set[COLUMNS[key]] = JSON_COLUMNS.has(key) ? JSON.stringify(value) : value;
    }
    if (Object.keys(set).length === 0) return;
    await this.scope.write((trx) => trx.db.updateTable('run_releases').set(values).where('run_id', '=', runId).execute());
  }

  /** Records of runs now `held` (waiting for review), oldest first. */
  async held(): Promise<RunReleaseRow[]> {
    const rows = await this.scope.db
      .selectFrom('run_releases as rr')
      .innerJoin('runs as r', 'r.id', 'rr.run_id')
      .selectAll('rr')
      .where('r.state', '=', 'held')
      .orderBy('rr.created_at', 'asc')
      .orderBy(insertOrder(this.scope.engine, 'rr'), 'asc')
      .execute();
    return rows.map(toRow);
  }

  /** The held run whose review is merge request `iid` of project `projectId`, if any. */
  async heldByMergeRequest(projectId: number, iid: number): Promise<RunReleaseRow | undefined> {
    const r = await this.scope.db
      .selectFrom('run_releases as rr')
      .innerJoin('runs as r', 'r.id', 'rr.run_id')
      .selectAll('rr')
      .where('r.state', '=', 'held')
      .where('rr.review_project_id', '=', projectId)
      .where('rr.mr_iid', '=', iid)
      .executeTakeFirst();
    return r ? toRow(r) : undefined;
  }

  /** The newest records, newest first (audit listings). */
  async list(opts: { limit?: number; outcome?: 'released' | 'withheld' } = {}): Promise<RunReleaseRow[]> {
    const limit = Math.max(1, Math.min(opts.limit ?? 100, 1000));
    let query = this.scope.db.selectFrom('run_releases').selectAll();
    if (opts.outcome) query = query.where('outcome', '=', opts.outcome);
    const rows = await query.orderBy('created_at', 'desc').orderBy(insertOrder(this.scope.engine, 'run_releases'), 'desc').limit(limit).execute();
    return rows.map(toRow);
  }
}
