/**
 * Runs, their append-only audit trail, webhook deliveries and verified commits in SQLite.
 * Every state change goes through `transition`, which checks the one table in run-states.ts and
 * appends the audit event in the same transaction.
 */
import type { SqliteDatabase, SqliteStatement as Statement } from './database.js';
import { canTransition, isTerminal, RUN_STATES, type RunState } from './run-states.js';

/** A run as stored (camelCase; the API maps it to snake_case). */
export interface RunRow {
  id: string;
  projectId: number;
  project: string;
  ref: string;
  beforeSha: string;
  commit: string;
  user: string;
  userId: number | null;
  deliveryKey: string | null;
  fetchUrl: string;
  state: RunState;
  reason: string;
  signer: string | null;
  config: unknown;
  warnings: string[];
  node: string | null;
  gpus: string[];
  exitCode: number | null;
  imageId: string | null;
  branch: string | null;
  statusPosted: string | null;
  /** A failed build's last build.log lines (a direct run's; null for every other run). */
  buildLogTail: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** What intake knows when a run is created. */
export type NewRun = Pick<
  RunRow,
  'id' | 'projectId' | 'project' | 'ref' | 'beforeSha' | 'commit' | 'user' | 'userId' | 'deliveryKey' | 'fetchUrl'
>;

/** Fields other than `state` a transition or update may set. */
export type RunPatch = Partial<
  Pick<
    RunRow,
    'reason' | 'signer' | 'config' | 'warnings' | 'node' | 'gpus' | 'exitCode' | 'imageId' | 'branch' | 'statusPosted' | 'buildLogTail' | 'startedAt' | 'finishedAt'
  >
>;

/** One audit event. */
export interface RunEvent {
  at: string;
  from: RunState | null;
  to: RunState;
  reason: string;
}

/** Outcome of a transition: illegal ones are values, so racing writers can tell and move on. */
export type TransitionResult =
  | { ok: true; run: RunRow }
  | { ok: false; code: 'not_found' }
  | { ok: false; code: 'illegal_transition'; from: RunState };

interface DbRun {
  id: string;
  project_id: number;
  project: string;
  ref: string;
  before_sha: string;
  commit_sha: string;
  user: string;
  user_id: number | null;
  delivery_key: string | null;
  fetch_url: string;
  state: string;
  reason: string;
  signer: string | null;
  config: string | null;
  warnings: string;
  node: string | null;
  gpus: string;
  exit_code: number | null;
  image_id: string | null;
  branch: string | null;
  status_posted: string | null;
  build_log_tail: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

const PATCH_COLUMNS: Record<keyof RunPatch, string> = {
  reason: 'reason',
  signer: 'signer',
  config: 'config',
  warnings: 'warnings',
  node: 'node',
  gpus: 'gpus',
  exitCode: 'exit_code',
  imageId: 'image_id',
  branch: 'branch',
  statusPosted: 'status_posted',
  buildLogTail: 'build_log_tail',
  startedAt: 'started_at',
  finishedAt: 'finished_at',
};

const JSON_FIELDS = new Set<keyof RunPatch>(['config', 'warnings', 'gpus']);

function toRow(r: DbRun): RunRow {
  if (!(RUN_STATES as readonly string[]).includes(r.state)) throw new Error(`run ${r.id} has unknown state ${r.state}`);
  return {
    id: r.id,
    projectId: r.project_id,
    project: r.project,
    ref: r.ref,
    beforeSha: r.before_sha,
    commit: r.commit_sha,
    user: r.user,
    userId: r.user_id,
    deliveryKey: r.delivery_key,
    fetchUrl: r.fetch_url,
    state: r.state as RunState,
    reason: r.reason,
    signer: r.signer,
    config: r.config === null ? null : JSON.parse(r.config),
    warnings: JSON.parse(r.warnings) as string[],
    node: r.node,
    gpus: JSON.parse(r.gpus) as string[],
    exitCode: r.exit_code,
    imageId: r.image_id,
    branch: r.branch,
    statusPosted: r.status_posted,
    buildLogTail: r.build_log_tail ?? null,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
  };
}

/** Queries and the only writer of the `runs` table. */
export class RunStore {
  /**
   * Prepared statements by SQL text. Preparing is most of a short query's cost, and the webhook
   * answer runs five of them; the texts are fixed (or one per set of states), so the map stays small.
   */
  private readonly statements = new Map<string, Statement>();

  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private sql(text: string): Statement {
    let stmt = this.statements.get(text);
    if (!stmt) {
      stmt = this.db.prepare(text);
      this.statements.set(text, stmt);
    }
    return stmt;
  }

  /** Insert a run in state `received` with its first audit event. */
  createRun(run: NewRun, reason = 'push received'): RunRow {
    const at = this.now().toISOString();
    this.db.transaction(() => {
      this.sql(
          `INSERT INTO runs (id, project_id, project, ref, before_sha, commit_sha, user, user_id, delivery_key, fetch_url, state, reason, created_at)
           VALUES (@id, @projectId, @project, @ref, @beforeSha, @commit, @user, @userId, @deliveryKey, @fetchUrl, 'received', @reason, @at)`,
        )
        .run({ ...run, reason, at });
      this.appendEvent(run.id, null, 'received', reason, at);
    })();
    return this.get(run.id)!;
  }

  /** One run, or undefined. */
  get(id: string): RunRow | undefined {
    const r = this.sql('SELECT * FROM runs WHERE id = ?').get(id) as DbRun | undefined;
    return r ? toRow(r) : undefined;
  }

  /** Runs newest first, optionally in one state. */
  list(opts: { state?: RunState; limit?: number } = {}): RunRow[] {
    const limit = Math.max(1, Math.min(opts.limit ?? 100, 1000));
    const rows = opts.state
      ? this.sql('SELECT * FROM runs WHERE state = ? ORDER BY created_at DESC, rowid DESC LIMIT ?').all(opts.state, limit)
      : this.sql('SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?').all(limit);
    return (rows as DbRun[]).map(toRow);
  }

  /** The first run started by the push that moved `ref` of a project from `before` to `after`, if any. */
  findPush(projectId: number, ref: string, before: string, after: string): RunRow | undefined {
    const r = this.sql('SELECT * FROM runs WHERE project_id = ? AND ref = ? AND before_sha = ? AND commit_sha = ? ORDER BY created_at ASC, rowid ASC LIMIT 1')
      .get(projectId, ref, before, after) as DbRun | undefined;
    return r ? toRow(r) : undefined;
  }

  /** Runs in any of `states`, oldest first (what the lifecycle resumes after a restart). */
  inStates(states: readonly RunState[]): RunRow[] {
    if (states.length === 0) return [];
    const marks = states.map(() => '?').join(',');
    const rows = this.sql(`SELECT * FROM runs WHERE state IN (${marks}) ORDER BY created_at ASC, rowid ASC`)
      .all(...states) as DbRun[];
    return rows.map(toRow);
  }

  /** A project's runs that have not ended, oldest first. */
  activeRunsOfProject(projectId: number): RunRow[] {
    const rows = this.sql('SELECT * FROM runs WHERE project_id = ? ORDER BY created_at ASC, rowid ASC')
      .all(projectId) as DbRun[];
    return rows.map(toRow).filter((r) => !isTerminal(r.state));
  }

  /** Move a run to `to` if the table allows it, setting `patch` and appending the audit event. */
  transition(id: string, to: RunState, reason: string, patch: RunPatch = {}): TransitionResult {
    return this.db.transaction((): TransitionResult => {
      const current = this.get(id);
      if (!current) return { ok: false, code: 'not_found' };
      if (!canTransition(current.state, to)) return { ok: false, code: 'illegal_transition', from: current.state };
      const at = this.now().toISOString();
      const full: RunPatch = { ...patch, reason };
      if (isTerminal(to) && patch.finishedAt === undefined) full.finishedAt = at;
      this.writePatch(id, full, to);
      this.appendEvent(id, current.state, to, reason, at);
      return { ok: true, run: this.get(id)! };
    })();
  }

  /**
   * Run `fn` in one transaction: its reads see one state of the database (other processes, such as
   * `secd admin`, write it too) and its writes land together or not at all. Transitions inside join it.
   */
  inTransaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Set fields that are not the state (what was posted to GitLab, the node's observations). */
  update(id: string, patch: RunPatch): void {
    this.writePatch(id, patch, null);
  }

  /**
   * Append an audit event that changes no state (an approval counted, a merge request opened): it
   * reads as `from` = `to` = the run's current state. False when there is no such run.
   */
  note(id: string, reason: string): boolean {
    return this.db.transaction((): boolean => {
      const current = this.get(id);
      if (!current) return false;
      this.appendEvent(id, current.state, current.state, reason, this.now().toISOString());
      return true;
    })();
  }

  /** The audit trail of one run, oldest first. */
  events(id: string): RunEvent[] {
    const rows = this.sql('SELECT at, from_state, to_state, reason FROM run_events WHERE run_id = ? ORDER BY seq')
      .all(id) as Array<{ at: string; from_state: string | null; to_state: string; reason: string }>;
    return rows.map((r) => ({ at: r.at, from: r.from_state as RunState | null, to: r.to_state as RunState, reason: r.reason }));
  }

  /**
   * Remember a webhook delivery; false when the key was seen before (a re-sent delivery).
   * `onFirst` runs in the same transaction, so a crash can't record the key without its run.
   */
  claimDelivery<T>(key: string, event: string, onFirst: () => T): { first: true; value: T } | { first: false; outcome: unknown } {
    return this.db.transaction(() => {
      const seen = this.sql('SELECT outcome FROM deliveries WHERE key = ?').get(key) as { outcome: string } | undefined;
      if (seen) return { first: false as const, outcome: JSON.parse(seen.outcome) as unknown };
      const value = onFirst();
      this.sql('INSERT INTO deliveries (key, received_at, event, outcome) VALUES (?, ?, ?, ?)')
        .run(key, this.now().toISOString(), event, JSON.stringify(value ?? null));
      return { first: true as const, value };
    })();
  }

  /** Whether a commit of this project already passed verification. */
  isVerified(projectId: number, sha: string): boolean {
    return this.sql('SELECT 1 FROM verified_commits WHERE project_id = ? AND sha = ?').get(projectId, sha) !== undefined;
  }

  /** Record commits that passed verification, so a later first push of another branch skips them. */
  markVerified(projectId: number, shas: readonly string[], signer: string): void {
    const at = this.now().toISOString();
    const insert = this.sql(
      'INSERT OR IGNORE INTO verified_commits (project_id, sha, signer, verified_at) VALUES (?, ?, ?, ?)',
    );
    this.db.transaction(() => {
      for (const sha of shas) insert.run(projectId, sha, signer, at);
    })();
  }

  private writePatch(id: string, patch: RunPatch, state: RunState | null): void {
    const sets: string[] = [];
    const values: unknown[] = [];
    for (const [key, value] of Object.entries(patch) as Array<[keyof RunPatch, unknown]>) {
      if (value === undefined) continue;
      sets.push(`${PATCH_COLUMNS[key]} = ?`);
      values.push(JSON_FIELDS.has(key) ? JSON.stringify(value) : value);
    }
    if (state) {
      sets.push('state = ?');
      values.push(state);
    }
    if (sets.length === 0) return;
    this.sql(`UPDATE runs SET ${sets.join(', ')} WHERE id = ?`).run(...values, id);
  }

  private appendEvent(id: string, from: RunState | null, to: RunState, reason: string, at: string): void {
    this.sql('INSERT INTO run_events (run_id, at, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?)')
      .run(id, at, from, to, reason);
  }
}
