/**
 * The leader's dataset step (DESIGN §1 "datasets"): which datasets a run may read, a temporary MySQL
 * account with SELECT on exactly those, created just before the run is handed to a node and dropped
 * when it ends, and the audit record of both.
 *
 * Choices made here:
 * - A run gets the grants of its pusher's GitLab account (the run's `userId`, from the authenticated
 *   push; DESIGN §13), narrowed by `datasets:` in secd.yml; a name there that is not granted (or does
 *   not exist) rejects the run at policy time, naming it. Grants are checked again when the account
 *   is created: a grant revoked while the run waited fails it with that reason. The username is never
 *   the key: another account that takes a released name gets nothing of the first one's. A run
 *   without a user id (rows from before secd kept one) is given no dataset, and a name-only grant
 *   (made before grants were bound to accounts) none until an operator binds it; both say so.
 * - The account is `<user_prefix><run id>` with a 192-bit random password that lives only in the
 *   leader's memory and in the run's spec (the node's container environment). It is never logged,
 *   stored in SQLite, shown by the API or written to run.json.
 * - Accounts are dropped when the run reaches any terminal state: at once for results the lifecycle
 *   receives, and by a sweep for every other path (lost nodes, operator action). On start the leader
 *   drops every account with its prefix whose run is not in flight.
 * - The container sees the dataset server only through the node's per-run socket, so DB_HOST is
 *   `localhost` (socket-aware clients use DB_SOCKET), DB_PORT the server's port. The socket admits
 *   only DB_USER (daemon/executor/dataset-forwarder.ts).
 * - Run accounts carry statement limits (RUN_ACCOUNT_LIMITS) besides their connection limit.
 * - The stores are async: a run's release is registered before its first await, so a second release
 *   of the same run joins the first instead of dropping the account twice.
 */
import { randomBytes } from 'node:crypto';
import type { DatasetStore, StoredDataset } from '../../storage/dataset-store.js';
import { DATASETS_MOUNT } from '../../storage/dataset-path.js';
import type { RunRow, RunStore } from '../../storage/run-store.js';
import { IN_FLIGHT_STATES, isTerminal } from '../../storage/run-states.js';
import { errorText } from '../common/errors.js';
import type { Log } from '../common/log.js';
import { redactCredentials } from '../common/redact.js';
import { DATASET_SOCKET } from '../contract/container-paths.js';
import type { RunSpec } from '../contract/run-spec.js';

/** A temporary account for one run. */
export interface RunAccount {
  user: string;
  password: string;
  /** MySQL databases to GRANT SELECT on (and nothing else). */
  databases: string[];
  maxConnections: number;
  /** Longest one statement may run, in seconds (MariaDB MAX_STATEMENT_TIME); default RUN_ACCOUNT_LIMITS. */
  maxStatementSeconds?: number;
  /** Statements per hour (MAX_QUERIES_PER_HOUR); default RUN_ACCOUNT_LIMITS. */
  maxQueriesPerHour?: number;
}

/**
 * What one run may ask of the shared dataset server (issue 13), so it cannot load it for its whole
 * `runfor`: a statement stops after an hour (a 50 GB SELECT at 100 MB/s takes under ten minutes;
 * longer reads go in chunks), and 360,000 statements an hour is 100 a second all hour long, far more
 * than a data loader that fetches batches needs. MariaDB counts a statement against the hourly limit
 * whatever it does; past it, the run's next statement fails with ER_USER_LIMIT_REACHED.
 */
export const RUN_ACCOUNT_LIMITS = { maxStatementSeconds: 3600, maxQueriesPerHour: 360_000 } as const;

/** The dataset server as the leader uses it (scheduler/policy/mysql-grants.ts is the adapter). */
export interface DatasetServer {
  databaseExists(db: string): Promise<boolean>;
  /** Create the account (replacing a leftover of the same name) with SELECT on its databases. */
  createRunUser(account: RunAccount): Promise<void>;
  /** Drop the account (if it exists) and end its open sessions. */
  dropRunUser(user: string): Promise<void>;
  /** Accounts whose name starts with `prefix`. */
  listRunUsers(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * What the node needs to give a run its datasets (RunSpec.datasets): where the per-run socket
 * forwards to (null: no MySQL dataset), and file datasets mounted read-only at /datasets/<name>.
 */
export type RunDatasetsSpec = NonNullable<RunSpec['datasets']>;

/** Whose grants a run gets: the pusher's GitLab user id (the key; null for old rows) and name (to show). */
export interface RunOwner {
  user: string;
  userId: number | null | undefined;
}

/** A run's datasets decided at policy time, or why the run is refused. */
export type DatasetPolicy = { ok: true; datasets: StoredDataset[] } | { ok: false; reason: string };

/** Everything the dataset step needs, handed down by main. */
export interface DatasetAccessDeps {
  store: DatasetStore;
  runs: Pick<RunStore, 'get' | 'inStates'>;
  /** Null when the leader has no `mysql:` section: MySQL datasets are refused, file datasets work. */
  server: DatasetServer | null;
  /** The dataset server's address as nodes reach it. */
  endpoint: { host: string; port: number } | null;
  userPrefix: string;
  maxConnections: number;
  /** Statement limits of run accounts; default RUN_ACCOUNT_LIMITS (tests shorten them). */
  accountLimits?: { maxStatementSeconds: number; maxQueriesPerHour: number };
  log: Log;
  /** Tests pin it; the default is 24 random bytes, base64url. */
  newPassword?: () => string;
}

/** The leader's dataset step: policy, temporary accounts, audit. */
export class RunDatasets {
  /** Credentials of runs handed (or about to be handed) to nodes; memory only. */
  private readonly granted = new Map<string, { env: Record<string, string>; datasets: RunDatasetsSpec }>();
  private readonly releasing = new Map<string, Promise<void>>();

  constructor(private readonly deps: DatasetAccessDeps) {}

  /** Policy time: the datasets the run's pusher gets when secd.yml asks for `requested` (null: all grants). */
  async forRun(who: RunOwner, requested: readonly string[] | null): Promise<DatasetPolicy> {
    const { store } = this.deps;
    if (who.userId === null || who.userId === undefined) {
      // Nothing may be looked up by the name alone; say why instead of giving a silent empty set. The
      // grants shown under the name only tell whether the run could have wanted any (they may be
      // another account's, so they are not named).
      const wants = requested === null ? (await store.grants(who.user)).length > 0 : requested.length > 0;
      if (!wants) return { ok: true, datasets: [] };
      return {
        ok: false,
        reason: 'this run has no GitLab user id (it was recorded before secd kept one), so it is given no dataset: push again to start a new run',
      };
    }
    const grants = await store.datasetsOf(who.userId);
    let chosen: StoredDataset[] = grants;
    if (requested !== null) {
      chosen = [];
      for (const name of requested) {
        const found = grants.find((d) => d.name === name);
        if (!found) {
          const exists = (await store.get(name)) !== undefined;
          const unbound = exists && (await store.unboundGrants()).some((g) => g.dataset === name && g.user.toLowerCase() === who.user.toLowerCase());
          return {
            ok: false,
            reason: !exists
              ? `secd.yml: datasets lists "${name}", but no dataset has that name`
              : unbound
                ? `secd.yml: datasets lists "${name}", granted to the name ${who.user} before secd bound grants to GitLab accounts; ` +
                  'it counts for no one until an operator confirms it is yours (secd admin grants migrate, or grant it again)'
                : `secd.yml: datasets lists "${name}", which ${who.user} is not granted (ask its data owner for a grant)`,
          };
        }
        chosen.push(found);
      }
    }
    const mysqlOne = chosen.find((d) => d.kind === 'mysql');
    if (mysqlOne && (this.deps.server === null || this.deps.endpoint === null)) {
      return {
        ok: false,
        reason: `dataset ${mysqlOne.name} is a MySQL database, but this leader has no dataset server (mysql: in its config)`,
      };
    }
    return { ok: true, datasets: chosen };
  }

  /**
   * Just before the run goes to a node: check its grants again, create its temporary account and
   * record the audit. Afterwards `specFor(run.id)` carries the credentials.
   */
  async open(run: Pick<RunRow, 'id' | 'user' | 'userId' | 'config'>): Promise<{ ok: true } | { ok: false; reason: string }> {
    const requested = (run.config as { datasets?: string[] | null } | null)?.datasets ?? null;
    const policy = await this.forRun({ user: run.user, userId: run.userId ?? null }, requested);
    if (!policy.ok) return { ok: false, reason: policy.reason.replace(/^secd\.yml: /, 'at assignment: ') };
    const datasets = policy.datasets;
    if (datasets.length === 0) return { ok: true };

    const databases = datasets.flatMap((d) => (d.kind === 'mysql' ? [d.mysqlDatabase] : []));
    const files = datasets.flatMap((d) => (d.kind === 'path' ? [{ name: d.name, path: d.path }] : []));
    const catalog: Record<string, { kind: 'mysql'; database: string } | { kind: 'path'; path: string }> = {};
    for (const d of datasets) {
      catalog[d.name] = d.kind === 'mysql' ? { kind: 'mysql', database: d.mysqlDatabase } : { kind: 'path', path: `${DATASETS_MOUNT}/${d.name}` };
    }
    const env: Record<string, string> = { SECD_DATASETS: JSON.stringify(catalog) };
    let mysqlUser: string | null = null;
    let endpoint: RunDatasetsSpec['mysql'] = null;
    if (databases.length > 0) {
      const { server } = this.deps;
      endpoint = this.deps.endpoint;
      if (server === null || endpoint === null) return { ok: false, reason: 'this leader has no dataset server (mysql: in its config)' };
      mysqlUser = `${this.deps.userPrefix}${run.id}`;
      const password = this.deps.newPassword?.() ?? randomBytes(24).toString('base64url');
      // The audit row first: if the leader dies right after CREATE USER, the sweep still finds the account.
      await this.deps.store.recordRunAccess(run.id, mysqlUser, datasets);
      try {
        const limits = this.deps.accountLimits ?? RUN_ACCOUNT_LIMITS;
        await server.createRunUser({ user: mysqlUser, password, databases, maxConnections: this.deps.maxConnections, ...limits });
      } catch (err) {
        // A server error could quote the statement: the password never leaves this function.
        const why = redactCredentials(errorText(err), [password]);
        this.deps.log.error({ runId: run.id, mysqlUser, err: why }, "could not create the run's dataset account");
        return { ok: false, reason: `secd could not create the run's dataset account: ${why}` };
      }
      Object.assign(env, {
        DB_HOST: 'localhost',
        DB_PORT: String(endpoint.port),
        DB_SOCKET: DATASET_SOCKET,
        DB_USER: mysqlUser,
        DB_PASS: password,
      });
    } else {
      await this.deps.store.recordRunAccess(run.id, null, datasets);
    }
    this.granted.set(run.id, { env, datasets: { mysql: endpoint, files } });
    this.deps.log.info({ runId: run.id, mysqlUser, datasets: datasets.map((d) => d.name) }, 'dataset access granted');
    return { ok: true };
  }

  /** The env (DB_*, SECD_DATASETS) and node instructions of a run that was opened; null: none. */
  specFor(runId: string): { env: Record<string, string>; datasets: RunDatasetsSpec } | null {
    const g = this.granted.get(runId);
    return g ? { env: { ...g.env }, datasets: { mysql: g.datasets.mysql, files: [...g.datasets.files] } } : null;
  }

  /** The run ended: record its socket's bytes and drop its account. Never rejects (a later sweep retries). */
  release(runId: string, bytes?: { fromServer: number; toServer: number } | null): Promise<void> {
    this.granted.delete(runId);
    const recorded = bytes
      ? Promise.resolve()
          .then(() => this.deps.store.recordBytes(runId, bytes))
          .catch((err: unknown) => {
            this.deps.log.warn({ runId, err: errorText(err) }, "could not record the bytes of the run's dataset socket");
          })
      : Promise.resolve();
    const running = this.releasing.get(runId);
    if (running) return recorded.then(() => running);
    // Registered before any await: a release of the same run in the meantime joins this one.
    const task = recorded.then(() => this.drop(runId)).finally(() => this.releasing.delete(runId));
    this.releasing.set(runId, task);
    return task;
  }

  /** Drop the accounts of every run that has ended (whatever ended it). */
  async sweep(): Promise<void> {
    for (const access of await this.deps.store.openAccesses()) {
      const run = await this.deps.runs.get(access.runId);
      if (!run || isTerminal(run.state)) await this.release(access.runId);
    }
  }

  /** On start: drop every account with our prefix whose run is not in flight. Returns how many. */
  async dropLeftovers(): Promise<number> {
    const { server } = this.deps;
    if (server === null) return 0;
    const live = new Set((await this.deps.runs.inStates(IN_FLIGHT_STATES)).map((r) => `${this.deps.userPrefix}${r.id}`));
    let dropped = 0;
    for (const user of await server.listRunUsers(this.deps.userPrefix)) {
      if (live.has(user)) continue;
      await server.dropRunUser(user);
      dropped++;
      this.deps.log.info({ mysqlUser: user }, 'dropped a leftover dataset account');
    }
    await this.sweep();
    return dropped;
  }

  /** Wait for drops in progress and close the connection to the dataset server. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.releasing.values()]);
    await this.deps.server?.close();
  }

  private async drop(runId: string): Promise<void> {
    let mysqlUser: string | null = null;
    try {
      const access = await this.deps.store.runAccess(runId);
      if (!access || access.mysqlUser === null || access.droppedAt !== null) return;
      if (this.deps.server === null) return;
      mysqlUser = access.mysqlUser;
      await this.deps.server.dropRunUser(mysqlUser);
      await this.deps.store.markDropped(runId);
      this.deps.log.info({ runId, mysqlUser }, 'dataset account dropped');
    } catch (err) {
      this.deps.log.warn({ runId, mysqlUser, err: errorText(err) }, 'could not drop the dataset account; will retry');
    }
  }
}
