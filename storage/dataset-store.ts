/**
 * The access policy in the leader's database: datasets, which GitLab users may read them, and the
 * audit record of what each run was given (the temporary MySQL account's name, never its password,
 * and the bytes its dataset socket carried).
 */
import type { SqliteDatabase } from './database.js';
import { datasetNameProblem, datasetPathProblem, mysqlDatabaseProblem } from './dataset-path.js';

/** A dataset: a MySQL database on the dataset server, or a folder under the nodes' dataset_root. */
export type DatasetSource = { kind: 'mysql'; mysqlDatabase: string } | { kind: 'path'; path: string };

/** A dataset as the policy knows it. */
export type Dataset = { name: string } & DatasetSource;

/** A dataset with when it was added and how many users may read it. */
export type DatasetEntry = Dataset & { createdAt: string; users: number };

/** One user's right to read one dataset. */
export interface DatasetGrant {
  user: string;
  dataset: string;
  grantedAt: string;
}

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
}

function toDataset(r: DbDataset): Dataset {
  if (r.kind === 'mysql' && r.mysql_database !== null) return { name: r.name, kind: 'mysql', mysqlDatabase: r.mysql_database };
  if (r.kind === 'path' && r.path !== null) return { name: r.name, kind: 'path', path: r.path };
  throw new Error(`dataset ${r.name} has an impossible row (kind ${r.kind})`);
}

/** Queries and the only writer of datasets, dataset_grants and run_datasets. */
export class DatasetStore {
  constructor(
    private readonly db: SqliteDatabase,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Add a dataset; names and sources are checked here so every caller gets the same rules. */
  add(dataset: Dataset): PolicyChange<Dataset> {
    const problem =
      datasetNameProblem(dataset.name) ??
      (dataset.kind === 'mysql' ? mysqlDatabaseProblem(dataset.mysqlDatabase) : datasetPathProblem(dataset.path));
    if (problem) return { ok: false, code: 'invalid', reason: problem };
    if (this.get(dataset.name)) return { ok: false, code: 'exists', reason: `dataset ${dataset.name} already exists` };
    this.db
      .prepare('INSERT INTO datasets (name, kind, mysql_database, path, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(
        dataset.name,
        dataset.kind,
        dataset.kind === 'mysql' ? dataset.mysqlDatabase : null,
        dataset.kind === 'path' ? dataset.path : null,
        this.now().toISOString(),
      );
    return { ok: true, value: this.get(dataset.name)! };
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

  /** One dataset, or undefined. */
  get(name: string): Dataset | undefined {
    const r = this.db.prepare('SELECT * FROM datasets WHERE name = ?').get(name) as DbDataset | undefined;
    return r ? toDataset(r) : undefined;
  }

  /** Every dataset, by name. */
  list(): DatasetEntry[] {
    const rows = this.db
      .prepare(
        `SELECT d.*, (SELECT COUNT(*) FROM dataset_grants g WHERE g.dataset = d.name) AS users
         FROM datasets d ORDER BY d.name`,
      )
      .all() as Array<DbDataset & { users: number }>;
    return rows.map((r) => ({ ...toDataset(r), createdAt: r.created_at, users: r.users }));
  }

  /** Let `user` read `dataset`; granting twice is not an error (`created` says which). */
  grant(user: string, dataset: string): PolicyChange<{ created: boolean }> {
    if (!this.get(dataset)) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(dataset) };
    const created =
      this.db
        .prepare('INSERT OR IGNORE INTO dataset_grants (user, dataset, granted_at) VALUES (?, ?, ?)')
        .run(user, dataset, this.now().toISOString()).changes === 1;
    return { ok: true, value: { created } };
  }

  /** Take back a grant. Runs already holding it keep it until they end: a revoke stops new runs. */
  revoke(user: string, dataset: string): PolicyChange {
    if (!this.get(dataset)) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(dataset) };
    const removed = this.db.prepare('DELETE FROM dataset_grants WHERE user = ? AND dataset = ?').run(user, dataset).changes;
    if (removed === 0) return { ok: false, code: 'not_granted', reason: `${user} has no grant on dataset ${dataset}` };
    return { ok: true };
  }

  /** Grants of one user, or of everyone, by user then dataset. */
  grants(user?: string): DatasetGrant[] {
    const rows = (
      user === undefined
        ? this.db.prepare('SELECT * FROM dataset_grants ORDER BY user, dataset').all()
        : this.db.prepare('SELECT * FROM dataset_grants WHERE user = ? ORDER BY dataset').all(user)
    ) as Array<{ user: string; dataset: string; granted_at: string }>;
    return rows.map((r) => ({ user: r.user, dataset: r.dataset, grantedAt: r.granted_at }));
  }

  /** The datasets `user` may read, by name. */
  datasetsOf(user: string): Dataset[] {
    const rows = this.db
      .prepare('SELECT d.* FROM datasets d JOIN dataset_grants g ON g.dataset = d.name WHERE g.user = ? ORDER BY d.name')
      .all(user) as DbDataset[];
    return rows.map(toDataset);
  }

  /** Audit: what a run was given (once per run; a second call keeps the first record). */
  recordRunAccess(runId: string, mysqlUser: string | null, datasets: readonly Dataset[]): void {
    this.db
      .prepare('INSERT OR IGNORE INTO run_datasets (run_id, mysql_user, datasets, granted_at) VALUES (?, ?, ?, ?)')
      .run(runId, mysqlUser, JSON.stringify(datasets), this.now().toISOString());
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
