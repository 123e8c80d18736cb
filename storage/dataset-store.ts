/**
 * The access policy in the leader's database: datasets, which GitLab accounts may read them, and the
 * audit record of what each run was given (the temporary MySQL account's name, never its password,
 * and the bytes its dataset socket carried).
 *
 * A grant belongs to a GitLab user id (DESIGN §13); its username is kept only to show and to revoke
 * by. Grants made before migration 6 know only a name: they are honoured for no one until bound to
 * an id (`bindUnbound`, on an operator's word), because GitLab lets a released name be taken by a
 * different account.
 */
import type { SqliteDatabase } from './database.js';
import { datasetNameProblem, datasetPathProblem, mysqlDatabaseProblem } from './dataset-path.js';
import { accountProblem, toGrant, type DatasetGrant, type DbGrant, type GrantAccount, type GrantBinding, type IdSeenUnderName } from './dataset-grant.js';

export type { DatasetGrant, GrantAccount, GrantBinding, IdSeenUnderName } from './dataset-grant.js';

/** A dataset: a MySQL database on the dataset server, or a folder under the nodes' dataset_root. */
export type DatasetSource = { kind: 'mysql'; mysqlDatabase: string } | { kind: 'path'; path: string };

/** A dataset as the policy knows it. */
export type Dataset = { name: string } & DatasetSource;

/**
 * How the outputs of a run that read the dataset leave the cluster (DESIGN §10): `direct` to the
 * researcher at once, `review` held until `approvals` output checkers approved. `approvals` null
 * means the leader's `release.approvals`, read when a run is decided, so changing the config moves
 * every dataset that never chose its own number.
 */
export interface DatasetReleasePolicy {
  release: 'direct' | 'review';
  approvals: number | null;
}

/** A dataset as stored: its source and its release policy. */
export type StoredDataset = Dataset & DatasetReleasePolicy;

/** A dataset with its policy, when it was added and how many accounts may read it (name-only grants not counted). */
export type DatasetEntry = StoredDataset & { createdAt: string; users: number };

/** What one run was given, for the audit log. */
export interface RunDatasetAccess {
  runId: string;
  mysqlUser: string | null;
  datasets: Dataset[];
  grantedAt: string;
  droppedAt: string | null;
  bytesFromServer: number | null;
  bytesToServer: number | null;
}

/** Outcome of a policy change: done, or a stable code and one line for the operator. */
export type PolicyChange<T = void> =
  | ({ ok: true } & ([T] extends [void] ? unknown : { value: T }))
  | { ok: false; code: 'invalid' | 'exists' | 'unknown_dataset' | 'not_granted'; reason: string };

interface DbDataset {
  name: string;
  kind: string;
  mysql_database: string | null;
  path: string | null;
  created_at: string;
  release: string;
  approvals: number | null;
}

function toSource(r: DbDataset): Dataset {
  if (r.kind === 'mysql' && r.mysql_database !== null) return { name: r.name, kind: 'mysql', mysqlDatabase: r.mysql_database };
  if (r.kind === 'path' && r.path !== null) return { name: r.name, kind: 'path', path: r.path };
  throw new Error(`dataset ${r.name} has an impossible row (kind ${r.kind})`);
}

function toDataset(r: DbDataset): StoredDataset {
  // The column's CHECK allows only these two; anything else is a bug, and `review` is the safe reading.
  return { ...toSource(r), release: r.release === 'direct' ? 'direct' : 'review', approvals: r.approvals };
}

/** The source alone (the audit record of what a run was given keeps the shape it always had). */
function sourceOf(d: Dataset): Dataset {
  return d.kind === 'mysql' ? { name: d.name, kind: 'mysql', mysqlDatabase: d.mysqlDatabase } : { name: d.name, kind: 'path', path: d.path };
}

/** Why `change` is not a policy (the CLI checks too; this is the rule every caller gets), or null. */
function policyProblem(change: Partial<DatasetReleasePolicy>): string | null {
  if (change.release !== undefined && change.release !== 'direct' && change.release !== 'review') {
    return `release must be "direct" or "review" (got ${JSON.stringify(change.release)})`;
  }
  const n = change.approvals;
  if (n !== undefined && n !== null && !(Number.isSafeInteger(n) && n >= 1)) {
    return `approvals must be a whole number of 1 or more, or null for release.approvals (got ${String(n)})`;
  }
  return null;
}

/** Queries and the only writer of datasets, dataset_grants and run_datasets. */
export class DatasetStore {
  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Add a dataset; names, sources and the policy are checked here so every caller gets the same
   * rules. A new dataset is `review` unless the caller says `direct`: holding outputs is the safe
   * default for data nobody has decided about yet (the column's own default, `direct`, is only for
   * rows that existed before migration 5).
   */
  add(dataset: Dataset, policy: Partial<DatasetReleasePolicy> = {}): PolicyChange<StoredDataset> {
    const problem =
      datasetNameProblem(dataset.name) ??
      (dataset.kind === 'mysql' ? mysqlDatabaseProblem(dataset.mysqlDatabase) : datasetPathProblem(dataset.path)) ??
      policyProblem(policy);
    if (problem) return { ok: false, code: 'invalid', reason: problem };
    if (this.get(dataset.name)) return { ok: false, code: 'exists', reason: `dataset ${dataset.name} already exists` };
    this.db
      .prepare('INSERT INTO datasets (name, kind, mysql_database, path, created_at, release, approvals) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(
        dataset.name,
        dataset.kind,
        dataset.kind === 'mysql' ? dataset.mysqlDatabase : null,
        dataset.kind === 'path' ? dataset.path : null,
        this.now().toISOString(),
        policy.release ?? 'review',
        policy.approvals ?? null,
      );
    return { ok: true, value: this.get(dataset.name)! };
  }

  /**
   * Change a dataset's release policy; fields left out keep their value. Runs already handed to a
   * node keep the policy they were decided with (release-store.ts); the change applies from the next.
   */
  setPolicy(name: string, change: Partial<DatasetReleasePolicy>): PolicyChange<{ before: DatasetReleasePolicy; after: DatasetReleasePolicy }> {
    if (change.release === undefined && change.approvals === undefined) {
      return { ok: false, code: 'invalid', reason: 'nothing to change: give release ("direct" or "review"), approvals (a number, or null for release.approvals) or both' };
    }
    const problem = policyProblem(change);
    if (problem) return { ok: false, code: 'invalid', reason: problem };
    return this.db.transaction((): PolicyChange<{ before: DatasetReleasePolicy; after: DatasetReleasePolicy }> => {
      const current = this.get(name);
      if (!current) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(name) };
      const before: DatasetReleasePolicy = { release: current.release, approvals: current.approvals };
      const after: DatasetReleasePolicy = {
        release: change.release ?? before.release,
        approvals: change.approvals === undefined ? before.approvals : change.approvals,
      };
      this.db.prepare('UPDATE datasets SET release = ?, approvals = ? WHERE name = ?').run(after.release, after.approvals, name);
      return { ok: true, value: { before, after } };
    })();
  }

  /** Remove a dataset and every grant of it (runs already given it keep it until they end). */
  remove(name: string): PolicyChange<{ grantsRemoved: number }> {
    return this.db.transaction((): PolicyChange<{ grantsRemoved: number }> => {
      if (!this.get(name)) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(name) };
      const grants = this.db.prepare('DELETE FROM dataset_grants WHERE dataset = ?').run(name).changes;
      this.db.prepare('DELETE FROM datasets WHERE name = ?').run(name);
      return { ok: true, value: { grantsRemoved: grants } };
    })();
  }

  /** One dataset with its policy, or undefined. */
  get(name: string): StoredDataset | undefined {
    const r = this.db.prepare('SELECT * FROM datasets WHERE name = ?').get(name) as DbDataset | undefined;
    return r ? toDataset(r) : undefined;
  }

  /** Every dataset with its policy, by name. */
  list(): DatasetEntry[] {
    const rows = this.db
      .prepare(
        `SELECT d.*, (SELECT COUNT(*) FROM dataset_grants g WHERE g.dataset = d.name AND g.user_id IS NOT NULL) AS users
         FROM datasets d ORDER BY d.name`,
      )
      .all() as Array<DbDataset & { users: number }>;
    return rows.map((r) => ({ ...toDataset(r), createdAt: r.created_at, users: r.users }));
  }

  /**
   * Let the account read `dataset`; granting twice is not an error (`created` says whether the
   * account could not read it before). A name-only grant of the same name and dataset is bound to
   * this account instead of being kept beside it: the operator granting again is the word that binds.
   * The stored name follows the account's current spelling.
   */
  grant(account: GrantAccount, dataset: string, how: Exclude<GrantBinding, 'migrate'> = 'gitlab'): PolicyChange<{ created: boolean }> {
    if (!this.get(dataset)) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(dataset) };
    const problem = accountProblem(account);
    if (problem) return { ok: false, code: 'invalid', reason: problem };
    return this.db.transaction((): PolicyChange<{ created: boolean }> => {
      const at = this.now().toISOString();
      const held = this.db.prepare('UPDATE dataset_grants SET user = ? WHERE user_id = ? AND dataset = ?').run(account.username, account.userId, dataset);
      if (held.changes === 1) {
        // The account already has it; a name-only row of the same name is this grant's shadow.
        this.db.prepare('DELETE FROM dataset_grants WHERE user_id IS NULL AND user = ? COLLATE NOCASE AND dataset = ?').run(account.username, dataset);
        return { ok: true, value: { created: false } };
      }
      const bound = this.db
        .prepare('UPDATE dataset_grants SET user = ?, user_id = ?, bound = ?, bound_at = ? WHERE user_id IS NULL AND user = ? COLLATE NOCASE AND dataset = ?')
        .run(account.username, account.userId, how, at, account.username, dataset);
      if (bound.changes === 0) {
        this.db
          .prepare('INSERT INTO dataset_grants (user, user_id, dataset, granted_at, bound, bound_at) VALUES (?, ?, ?, ?, ?, ?)')
          .run(account.username, account.userId, dataset, at, how, at);
      }
      return { ok: true, value: { created: true } };
    })();
  }

  /**
   * Take back a grant, by the name it shows (GitLab is not asked: a deleted account's grant must
   * still go) or by user id. A name that two accounts' grants of the dataset carry (the name was
   * reused) is refused rather than guessed: the caller names the id. Runs already holding the grant
   * keep it until they end: a revoke stops new runs.
   */
  revoke(who: string | { userId: number }, dataset: string): PolicyChange<{ userId: number | null }> {
    if (!this.get(dataset)) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(dataset) };
    return this.db.transaction((): PolicyChange<{ userId: number | null }> => {
      const rows = (
        typeof who === 'string'
          ? this.db.prepare('SELECT user, user_id FROM dataset_grants WHERE user = ? COLLATE NOCASE AND dataset = ?').all(who, dataset)
          : this.db.prepare('SELECT user, user_id FROM dataset_grants WHERE user_id = ? AND dataset = ?').all(who.userId, dataset)
      ) as Array<{ user: string; user_id: number | null }>;
      const label = typeof who === 'string' ? who : `GitLab user ${who.userId}`;
      if (rows.length === 0) return { ok: false, code: 'not_granted', reason: `${label} has no grant on dataset ${dataset}` };
      if (rows.length > 1) {
        const ids = rows.map((r) => (r.user_id === null ? 'a name-only grant' : `user id ${r.user_id}`)).join(' and ');
        return {
          ok: false,
          code: 'invalid',
          reason: `the name ${who as string} holds grants of ${rows.length} accounts on ${dataset} (${ids}): say which with --user-id`,
        };
      }
      const row = rows[0]!;
      if (row.user_id === null) {
        this.db.prepare('DELETE FROM dataset_grants WHERE user_id IS NULL AND user = ? AND dataset = ?').run(row.user, dataset);
      } else {
        this.db.prepare('DELETE FROM dataset_grants WHERE user_id = ? AND dataset = ?').run(row.user_id, dataset);
      }
      return { ok: true, value: { userId: row.user_id } };
    })();
  }

  /** Grants shown under one name (any account that carried it), or of everyone, by name then dataset. */
  grants(user?: string): DatasetGrant[] {
    const rows = (
      user === undefined
        ? this.db.prepare('SELECT * FROM dataset_grants ORDER BY user, user_id, dataset').all()
        : this.db.prepare('SELECT * FROM dataset_grants WHERE user = ? COLLATE NOCASE ORDER BY user_id, dataset').all(user)
    ) as DbGrant[];
    return rows.map(toGrant);
  }

  /** Name-only grants (made before migration 6): honoured for no one until bound. */
  unboundGrants(): DatasetGrant[] {
    const rows = this.db.prepare('SELECT * FROM dataset_grants WHERE user_id IS NULL ORDER BY user, dataset').all() as DbGrant[];
    return rows.map(toGrant);
  }

  /**
   * Bind a name-only grant to an account (`grants migrate --bind`); false when there is no such
   * name-only grant any more. If the account already holds a grant of the dataset, the name-only one
   * is dropped as its duplicate.
   */
  bindUnbound(user: string, dataset: string, userId: number): boolean {
    if (!(Number.isSafeInteger(userId) && userId >= 1)) throw new Error(`bindUnbound: ${userId} is not a GitLab user id`);
    return this.db.transaction((): boolean => {
      const has = this.db.prepare('SELECT 1 FROM dataset_grants WHERE user_id = ? AND dataset = ?').get(userId, dataset) !== undefined;
      const changed = has
        ? this.db.prepare('DELETE FROM dataset_grants WHERE user_id IS NULL AND user = ? AND dataset = ?').run(user, dataset).changes
        : this.db
            .prepare("UPDATE dataset_grants SET user_id = ?, bound = 'migrate', bound_at = ? WHERE user_id IS NULL AND user = ? AND dataset = ?")
            .run(userId, this.now().toISOString(), user, dataset).changes;
      return changed === 1;
    })();
  }

  /** The user ids secd's runs recorded under `username` (GitLab compares names without case). */
  idsSeenUnder(username: string): IdSeenUnderName[] {
    const rows = this.db
      .prepare(
        `SELECT user_id, COUNT(*) AS runs, MIN(created_at) AS first_run, MAX(created_at) AS last_run FROM runs
         WHERE user = ? COLLATE NOCASE AND user_id IS NOT NULL GROUP BY user_id ORDER BY MIN(created_at)`,
      )
      .all(username) as Array<{ user_id: number; runs: number; first_run: string; last_run: string }>;
    return rows.map((r) => ({ userId: r.user_id, runs: r.runs, firstRun: r.first_run, lastRun: r.last_run }));
  }

  /** The datasets the GitLab account `userId` may read, with their policies, by name. */
  datasetsOf(userId: number): StoredDataset[] {
    const rows = this.db
      .prepare('SELECT d.* FROM datasets d JOIN dataset_grants g ON g.dataset = d.name WHERE g.user_id = ? ORDER BY d.name')
      .all(userId) as DbDataset[];
    return rows.map(toDataset);
  }

  /** Audit: what a run was given (once per run; a second call keeps the first record). */
  recordRunAccess(runId: string, mysqlUser: string | null, datasets: readonly Dataset[]): void {
    this.db
      .prepare('INSERT OR IGNORE INTO run_datasets (run_id, mysql_user, datasets, granted_at) VALUES (?, ?, ?, ?)')
      .run(runId, mysqlUser, JSON.stringify(datasets.map(sourceOf)), this.now().toISOString());
  }

  /** Audit: the run's temporary account is gone. */
  markDropped(runId: string): void {
    this.db
      .prepare('UPDATE run_datasets SET dropped_at = ? WHERE run_id = ? AND dropped_at IS NULL')
      .run(this.now().toISOString(), runId);
  }

  /** Audit: bytes the node's dataset socket carried for the run. */
  recordBytes(runId: string, bytes: { fromServer: number; toServer: number }): void {
    this.db
      .prepare('UPDATE run_datasets SET bytes_from_server = ?, bytes_to_server = ? WHERE run_id = ?')
      .run(bytes.fromServer, bytes.toServer, runId);
  }

  /** The audit record of one run, or undefined when it was given nothing. */
  runAccess(runId: string): RunDatasetAccess | undefined {
    const r = this.db.prepare('SELECT * FROM run_datasets WHERE run_id = ?').get(runId) as DbAccess | undefined;
    return r ? toAccess(r) : undefined;
  }

  /** Audit: the runs that were given `dataset`, newest first, with their user. */
  runsGiven(dataset: string, limit = 100): Array<RunDatasetAccess & { user: string }> {
    const rows = this.db
      .prepare(
        `SELECT a.*, r.user AS user FROM run_datasets a JOIN runs r ON r.id = a.run_id
         WHERE EXISTS (SELECT 1 FROM json_each(a.datasets) j WHERE json_extract(j.value, '$.name') = ?)
         ORDER BY a.granted_at DESC LIMIT ?`,
      )
      .all(dataset, Math.max(1, Math.min(limit, 10_000))) as Array<DbAccess & { user: string }>;
    return rows.map((r) => ({ ...toAccess(r), user: r.user }));
  }

  /** Runs whose temporary MySQL account has not been dropped yet, oldest first. */
  openAccesses(): RunDatasetAccess[] {
    const rows = this.db
      .prepare('SELECT * FROM run_datasets WHERE dropped_at IS NULL AND mysql_user IS NOT NULL ORDER BY granted_at')
      .all() as DbAccess[];
    return rows.map(toAccess);
  }
}

interface DbAccess {
  run_id: string;
  mysql_user: string | null;
  datasets: string;
  granted_at: string;
  dropped_at: string | null;
  bytes_from_server: number | null;
  bytes_to_server: number | null;
}

function toAccess(r: DbAccess): RunDatasetAccess {
  return {
    runId: r.run_id,
    mysqlUser: r.mysql_user,
    datasets: JSON.parse(r.datasets) as Dataset[],
    grantedAt: r.granted_at,
    droppedAt: r.dropped_at,
    bytesFromServer: r.bytes_from_server,
    bytesToServer: r.bytes_to_server,
  };
}

function unknownDataset(name: string): string {
  return `no dataset named ${name} (see "secd admin dataset list")`;
}
