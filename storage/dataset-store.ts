/**
 * The access policy in the leader's database: datasets, which GitLab accounts may read them, and the
 * audit record of what each run was given (the temporary MySQL account's name, never its password,
 * and the bytes its dataset socket carried).
 *
 * A grant belongs to a GitLab user id (DESIGN §13); its username is kept only to show and to revoke
 * by. Grants made before migration 6 know only a name: they are honoured for no one until bound to
 * an id (`bindUnbound`, on an operator's word), because GitLab lets a released name be taken by a
 * different account.
 *
 * One Kysely text for SQLite and MySQL. Names compare exactly (SQLite's BINARY collation, MySQL's
 * utf8mb4_bin), except a grant's username where GitLab's own rule applies (no case: lower() on both
 * sides, as SQLite's COLLATE NOCASE did). Every write goes through `scope.write` (the active
 * leader's epoch rides with it, state-scope.ts); a check and the write it guards share one
 * transaction.
 */
import { sql, type Selectable } from 'kysely';
import { datasetNameProblem, datasetPathProblem, mysqlDatabaseProblem } from './dataset-path.js';
import { accountProblem, GRANT_COLUMNS, nameIs, toGrant, type DatasetGrant, type GrantAccount, type GrantBinding, type IdSeenUnderName } from './dataset-grant.js';
import type { DatasetsTable, RunDatasetsTable } from './sql/cluster-tables.js';
import type { StateScope } from './sql/state-scope.js';

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

type DbDataset = Selectable<DatasetsTable>;

function toSource(r: DbDataset): Dataset {
  if (r.kind === 'mysql' && r.mysql_database !== null) return { name: r.name, kind: 'mysql', mysqlDatabase: r.mysql_database };
  if (r.kind === 'path' && r.path !== null) return { name: r.name, kind: 'path', path: r.path };
  throw new Error(`dataset ${r.name} has an impossible row (kind ${r.kind})`);
}

function toDataset(r: DbDataset): StoredDataset {
  // The column's CHECK allows only these two; anything else is a bug, and `review` is the safe reading.
  return { ...toSource(r), release: r.release === 'direct' ? 'direct' : 'review', approvals: r.approvals === null ? null : Number(r.approvals) };
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
    private readonly scope: StateScope,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Add a dataset; names, sources and the policy are checked here so every caller gets the same
   * rules. A new dataset is `review` unless the caller says `direct`: holding outputs is the safe
   * default for data nobody has decided about yet (the column's own default, `direct`, is only for
   * rows that existed before migration 5).
   */
  async add(dataset: Dataset, policy: Partial<DatasetReleasePolicy> = {}): Promise<PolicyChange<StoredDataset>> {
    const problem =
      datasetNameProblem(dataset.name) ??
      (dataset.kind === 'mysql' ? mysqlDatabaseProblem(dataset.mysqlDatabase) : datasetPathProblem(dataset.path)) ??
      policyProblem(policy);
    if (problem) return { ok: false, code: 'invalid', reason: problem };
    return this.scope.write(async (trx): Promise<PolicyChange<StoredDataset>> => {
      const store = new DatasetStore(trx, this.now);
      if (await store.get(dataset.name)) return { ok: false, code: 'exists', reason: `dataset ${dataset.name} already exists` };
      await trx.db
        .insertInto('datasets')
        .values({
          name: dataset.name,
          kind: dataset.kind,
          mysql_database: dataset.kind === 'mysql' ? dataset.mysqlDatabase : null,
          path: dataset.kind === 'path' ? dataset.path : null,
          created_at: this.now().toISOString(),
          release: policy.release ?? 'review',
          approvals: policy.approvals ?? null,
        })
        .execute();
      return { ok: true, value: (await store.get(dataset.name))! };
    });
  }

  /**
   * Change a dataset's release policy; fields left out keep their value. Runs already handed to a
   * node keep the policy they were decided with (release-store.ts); the change applies from the next.
   */
  async setPolicy(name: string, change: Partial<DatasetReleasePolicy>): Promise<PolicyChange<{ before: DatasetReleasePolicy; after: DatasetReleasePolicy }>> {
    if (change.release === undefined && change.approvals === undefined) {
      return { ok: false, code: 'invalid', reason: 'nothing to change: give release ("direct" or "review"), approvals (a number, or null for release.approvals) or both' };
    }
    const problem = policyProblem(change);
    if (problem) return { ok: false, code: 'invalid', reason: problem };
    return this.scope.write(async (trx): Promise<PolicyChange<{ before: DatasetReleasePolicy; after: DatasetReleasePolicy }>> => {
      const current = await new DatasetStore(trx, this.now).get(name);
      if (!current) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(name) };
      const before: DatasetReleasePolicy = { release: current.release, approvals: current.approvals };
      const after: DatasetReleasePolicy = {
        release: change.release ?? before.release,
        approvals: change.approvals === undefined ? before.approvals : change.approvals,
      };
      await trx.db.updateTable('datasets').set({ release: after.release, approvals: after.approvals }).where('name', '=', name).execute();
      return { ok: true, value: { before, after } };
    });
  }

  /** Remove a dataset and every grant of it (runs already given it keep it until they end). */
  async remove(name: string): Promise<PolicyChange<{ grantsRemoved: number }>> {
    return this.scope.write(async (trx): Promise<PolicyChange<{ grantsRemoved: number }>> => {
      if (!(await new DatasetStore(trx, this.now).get(name))) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(name) };
      // The foreign key cascades too; deleting them first is what counts them.
      const grants = await trx.db.deleteFrom('dataset_grants').where('dataset', '=', name).executeTakeFirst();
      await trx.db.deleteFrom('datasets').where('name', '=', name).execute();
      return { ok: true, value: { grantsRemoved: Number(grants.numDeletedRows) } };
    });
  }

  /** One dataset with its policy, or undefined. */
  async get(name: string): Promise<StoredDataset | undefined> {
    const r = await this.scope.db.selectFrom('datasets').selectAll().where('name', '=', name).executeTakeFirst();
    return r ? toDataset(r) : undefined;
  }

  /** Every dataset with its policy, by name. */
  async list(): Promise<DatasetEntry[]> {
    const rows = await this.scope.db
      .selectFrom('datasets as d')
      .selectAll('d')
      .select((eb) =>
        eb
          .selectFrom('dataset_grants as g')
          .select((g) => g.fn.countAll<number>().as('n'))
          .whereRef('g.dataset', '=', 'd.name')
          .where('g.user_id', 'is not', null)
          .as('users'),
      )
      .orderBy('d.name')
      .execute();
    return rows.map((r) => ({ ...toDataset(r), createdAt: r.created_at, users: Number(r.users ?? 0) }));
  }

  /**
   * Let the account read `dataset`; granting twice is not an error (`created` says whether the
   * account could not read it before). A name-only grant of the same name and dataset is bound to
   * this account instead of being kept beside it: the operator granting again is the word that binds.
   * The stored name follows the account's current spelling.
   */
  async grant(account: GrantAccount, dataset: string, how: Exclude<GrantBinding, 'migrate'> = 'gitlab'): Promise<PolicyChange<{ created: boolean }>> {
    if (!(await this.get(dataset))) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(dataset) };
    const problem = accountProblem(account);
    if (problem) return { ok: false, code: 'invalid', reason: problem };
    return this.scope.write(async (trx): Promise<PolicyChange<{ created: boolean }>> => {
      const at = this.now().toISOString();
      const held = await trx.db
        .updateTable('dataset_grants')
        .set({ user: account.username })
        .where('user_id', '=', account.userId)
        .where('dataset', '=', dataset)
        .executeTakeFirst();
      if (Number(held.numUpdatedRows) === 1) {
        // The account already has it; a name-only row of the same name is this grant's shadow.
        await trx.db.deleteFrom('dataset_grants').where('user_id', 'is', null).where(nameIs('user', account.username)).where('dataset', '=', dataset).execute();
        return { ok: true, value: { created: false } };
      }
      const bound = await trx.db
        .updateTable('dataset_grants')
        .set({ user: account.username, user_id: account.userId, bound: how, bound_at: at })
        .where('user_id', 'is', null)
        .where(nameIs('user', account.username))
        .where('dataset', '=', dataset)
        .executeTakeFirst();
      if (Number(bound.numUpdatedRows) === 0) {
        await trx.db.insertInto('dataset_grants').values({ user: account.username, user_id: account.userId, dataset, granted_at: at, bound: how, bound_at: at }).execute();
      }
      return { ok: true, value: { created: true } };
    });
  }

  /**
   * Take back a grant, by the name it shows (GitLab is not asked: a deleted account's grant must
   * still go) or by user id. A name that two accounts' grants of the dataset carry (the name was
   * reused) is refused rather than guessed: the caller names the id. Runs already holding the grant
   * keep it until they end: a revoke stops new runs.
   */
  async revoke(who: string | { userId: number }, dataset: string): Promise<PolicyChange<{ userId: number | null }>> {
    if (!(await this.get(dataset))) return { ok: false, code: 'unknown_dataset', reason: unknownDataset(dataset) };
    return this.scope.write(async (trx): Promise<PolicyChange<{ userId: number | null }>> => {
      const query = trx.db.selectFrom('dataset_grants').select(['user', 'user_id']).where('dataset', '=', dataset);
      const rows = await (typeof who === 'string' ? query.where(nameIs('user', who)) : query.where('user_id', '=', who.userId)).orderBy('user_id').execute();
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
      const userId = row.user_id === null ? null : Number(row.user_id);
      const gone = trx.db.deleteFrom('dataset_grants').where('dataset', '=', dataset);
      await (userId === null ? gone.where('user_id', 'is', null).where('user', '=', row.user) : gone.where('user_id', '=', userId)).execute();
      return { ok: true, value: { userId } };
    });
  }

  /** Grants shown under one name (any account that carried it), or of everyone, by name then dataset. */
  async grants(user?: string): Promise<DatasetGrant[]> {
    const query = this.scope.db.selectFrom('dataset_grants').select(GRANT_COLUMNS);
    const rows = await (user === undefined
      ? query.orderBy('user').orderBy('user_id').orderBy('dataset')
      : query.where(nameIs('user', user)).orderBy('user_id').orderBy('dataset')
    ).execute();
    return rows.map(toGrant);
  }

  /** Name-only grants (made before migration 6): honoured for no one until bound. */
  async unboundGrants(): Promise<DatasetGrant[]> {
    const rows = await this.scope.db.selectFrom('dataset_grants').select(GRANT_COLUMNS).where('user_id', 'is', null).orderBy('user').orderBy('dataset').execute();
    return rows.map(toGrant);
  }

  /**
   * Bind a name-only grant to an account (`grants migrate --bind`); false when there is no such
   * name-only grant any more. If the account already holds a grant of the dataset, the name-only one
   * is dropped as its duplicate. The name is matched exactly: it is one `unboundGrants` listed.
   */
  async bindUnbound(user: string, dataset: string, userId: number): Promise<boolean> {
    if (!(Number.isSafeInteger(userId) && userId >= 1)) throw new Error(`bindUnbound: ${userId} is not a GitLab user id`);
    return this.scope.write(async (trx) => {
      const has = await trx.db.selectFrom('dataset_grants').select('dataset').where('user_id', '=', userId).where('dataset', '=', dataset).executeTakeFirst();
      const result = has
        ? await trx.db.deleteFrom('dataset_grants').where('user_id', 'is', null).where('user', '=', user).where('dataset', '=', dataset).executeTakeFirst()
        : await trx.db
            .updateTable('dataset_grants')
            .set({ user_id: userId, bound: 'migrate', bound_at: this.now().toISOString() })
            .where('user_id', 'is', null)
            .where('user', '=', user)
            .where('dataset', '=', dataset)
            .executeTakeFirst();
      return Number('numDeletedRows' in result ? result.numDeletedRows : result.numUpdatedRows) === 1;
    });
  }

  /** The user ids secd's runs recorded under `username` (GitLab compares names without case), oldest first. */
  async idsSeenUnder(username: string): Promise<IdSeenUnderName[]> {
    const rows = await this.scope.db
      .selectFrom('runs')
      .select((eb) => ['user_id', eb.fn.countAll<number>().as('runs'), eb.fn.min('created_at').as('first_run'), eb.fn.max('created_at').as('last_run')])
      .where(nameIs('user', username))
      .where('user_id', 'is not', null)
      .groupBy('user_id')
      .orderBy((eb) => eb.fn.min('created_at'))
      .orderBy('user_id')
      .execute();
    return rows.map((r) => ({ userId: Number(r.user_id), runs: Number(r.runs), firstRun: r.first_run, lastRun: r.last_run }));
  }

  /** The datasets the GitLab account `userId` may read, with their policies, by name. */
  async datasetsOf(userId: number): Promise<StoredDataset[]> {
    const rows = await this.scope.db.selectFrom('datasets as d').innerJoin('dataset_grants as g', 'g.dataset', 'd.name').selectAll('d').where('g.user_id', '=', userId).orderBy('d.name').execute();
    return rows.map(toDataset);
  }

  /** Audit: what a run was given (once per run; a second call keeps the first record). */
  async recordRunAccess(runId: string, mysqlUser: string | null, datasets: readonly Dataset[]): Promise<void> {
    await this.scope.write(async (trx) => {
      const insert = trx.db
        .insertInto('run_datasets')
        .values({ run_id: runId, mysql_user: mysqlUser, datasets: JSON.stringify(datasets.map(sourceOf)), granted_at: this.now().toISOString() });
      // Only the duplicate key is let pass (not INSERT IGNORE: on MySQL that would also swallow a
      // run that does not exist, which SQLite refuses).
      await (trx.engine === 'mysql'
        ? insert.onDuplicateKeyUpdate({ run_id: (eb) => eb.ref('run_id') })
        : insert.onConflict((oc) => oc.column('run_id').doNothing())
      ).execute();
    });
  }

  /** Audit: the run's temporary account is gone. */
  async markDropped(runId: string): Promise<void> {
    await this.scope.write((trx) =>
      trx.db.updateTable('run_datasets').set({ dropped_at: this.now().toISOString() }).where('run_id', '=', runId).where('dropped_at', 'is', null).execute(),
    );
  }

  /** Audit: bytes the node's dataset socket carried for the run. */
  async recordBytes(runId: string, bytes: { fromServer: number; toServer: number }): Promise<void> {
    await this.scope.write((trx) =>
      trx.db.updateTable('run_datasets').set({ bytes_from_server: bytes.fromServer, bytes_to_server: bytes.toServer }).where('run_id', '=', runId).execute(),
    );
  }

  /** The audit record of one run, or undefined when it was given nothing. */
  async runAccess(runId: string): Promise<RunDatasetAccess | undefined> {
    const r = await this.scope.db.selectFrom('run_datasets').selectAll().where('run_id', '=', runId).executeTakeFirst();
    return r ? toAccess(r) : undefined;
  }

  /** Audit: the runs that were given `dataset`, newest first, with their user. */
  async runsGiven(dataset: string, limit = 100): Promise<Array<RunDatasetAccess & { user: string }>> {
    // Whether the run's JSON list names the dataset: SQLite walks it with json_each; MySQL and
    // MariaDB ask JSON_CONTAINS whether some element has that name (strings compare exactly on both).
    const given =
      this.scope.engine === 'mysql'
        ? sql<boolean>`JSON_CONTAINS(a.datasets, JSON_OBJECT('name', ${dataset}))`
        : sql<boolean>`EXISTS (SELECT 1 FROM json_each(a.datasets) j WHERE json_extract(j.value, '$.name') = ${dataset})`;
    const rows = await this.scope.db
      .selectFrom('run_datasets as a')
      .innerJoin('runs as r', 'r.id', 'a.run_id')
      .selectAll('a')
      .select('r.user as user')
      .where(given)
      .orderBy('a.granted_at', 'desc')
      .limit(Math.max(1, Math.min(limit, 10_000)))
      .execute();
    return rows.map((r) => ({ ...toAccess(r), user: r.user }));
  }

  /** Runs whose temporary MySQL account has not been dropped yet, oldest first. */
  async openAccesses(): Promise<RunDatasetAccess[]> {
    const rows = await this.scope.db.selectFrom('run_datasets').selectAll().where('dropped_at', 'is', null).where('mysql_user', 'is not', null).orderBy('granted_at').execute();
    return rows.map(toAccess);
  }
}

function toAccess(r: Selectable<RunDatasetsTable>): RunDatasetAccess {
  return {
    runId: r.run_id,
    mysqlUser: r.mysql_user,
    datasets: JSON.parse(r.datasets) as Dataset[],
    grantedAt: r.granted_at,
    droppedAt: r.dropped_at,
    bytesFromServer: r.bytes_from_server === null ? null : Number(r.bytes_from_server),
    bytesToServer: r.bytes_to_server === null ? null : Number(r.bytes_to_server),
  };
}

function unknownDataset(name: string): string {
  return `no dataset named ${name} (see "secd admin dataset list")`;
}
