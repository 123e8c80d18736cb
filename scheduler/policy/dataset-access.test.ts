/** The leader's dataset step with a recording dataset server (the adapter is tested against MariaDB). */
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunState } from '../../storage/run-states.js';
import { memoryStores } from '../../test/support/scratch-state.js';
import { RUN_ACCOUNT_LIMITS, RunDatasets, type DatasetServer, type RunAccount } from './dataset-access.js';
import type { Log } from '../common/log.js';

class RecordingServer implements DatasetServer {
  accounts = new Map<string, RunAccount>();
  drops: string[] = [];
  failCreate: Error | null = null;
  async databaseExists() {
    return true;
  }
  async createRunUser(a: RunAccount) {
    if (this.failCreate) throw this.failCreate;
    this.accounts.set(a.user, a);
  }
  async dropRunUser(user: string) {
    this.drops.push(user);
    this.accounts.delete(user);
  }
  async listRunUsers(prefix: string) {
    return [...this.accounts.keys()].filter((u) => u.startsWith(prefix));
  }
  async close() {}
}

function recordingLog(lines: string[]): Log {
  const record = (o: object, m?: string) => void lines.push(`${JSON.stringify(o)} ${m ?? ''}`);
  const log: Log = { debug: record, info: record, warn: record, error: record, child: () => log };
  return log;
}

/** ada is GitLab user 1; the grants are hers. */
const ADA = { username: 'ada', userId: 1 };
const ada = { user: 'ada', userId: 1 };

/** Every test's stores, closed after it. */
const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

async function setup(opts: { mysql?: boolean } = {}) {
  const stores = await memoryStores();
  opened.push(stores);
  const store = stores.datasets;
  const runs = stores.runs;
  const server = new RecordingServer();
  const lines: string[] = [];
  const access = new RunDatasets({
    store,
    runs,
    server: opts.mysql === false ? null : server,
    endpoint: opts.mysql === false ? null : { host: 'db.internal', port: 3306 },
    userPrefix: 'secd_',
    maxConnections: 4,
    log: recordingLog(lines),
    newPassword: () => 'S3cret-Passw0rd-for-tests',
  });
  await store.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024' });
  await store.add({ name: 'hr', kind: 'mysql', mysqlDatabase: 'hr' });
  await store.add({ name: 'scans', kind: 'path', path: 'radiology/scans' });
  await store.grant(ADA, 'sales');
  await store.grant(ADA, 'scans');
  let n = 0;
  const newRun = async (user: string, datasets: string[] | null, state: RunState = 'assigned', userId: number | null = 1) => {
    const id = `run${String(++n).padStart(7, '0')}`;
    await runs.createRun({ id, projectId: 1, project: 'lab/p', ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit: '1'.repeat(40), user, userId, deliveryKey: null, fetchUrl: 'http://x' });
    for (const s of ['verified', 'queued', 'assigned', 'building', 'running', 'uploading', 'succeeded'] as RunState[]) {
      if ((await runs.get(id))!.state === state) break;
      await runs.transition(id, s, 'test', s === 'queued' ? { config: { datasets } } : {});
    }
    return (await runs.get(id))!;
  };
  return { stores, store, runs, server, lines, access, newRun };
}

describe('which datasets a run gets', () => {
  it('all of the user\'s grants by default, or those secd.yml names', async () => {
    const { access } = await setup();
    expect(await access.forRun(ada, null)).toMatchObject({ ok: true, datasets: [{ name: 'sales' }, { name: 'scans' }] });
    expect(await access.forRun(ada, ['scans'])).toMatchObject({ ok: true, datasets: [{ name: 'scans' }] });
    expect(await access.forRun(ada, [])).toEqual({ ok: true, datasets: [] });
    expect(await access.forRun({ user: 'bob', userId: 2 }, null)).toEqual({ ok: true, datasets: [] });
  });

  it('a dataset not granted, or unknown, refuses the run naming it', async () => {
    const { access } = await setup();
    expect(await access.forRun(ada, ['sales', 'hr'])).toEqual({
      ok: false,
      reason: 'secd.yml: datasets lists "hr", which ada is not granted (ask its data owner for a grant)',
    });
    expect(await access.forRun(ada, ['salez'])).toEqual({ ok: false, reason: 'secd.yml: datasets lists "salez", but no dataset has that name' });
  });

  it('a MySQL dataset on a leader without a dataset server is refused; file datasets still work', async () => {
    const { access } = await setup({ mysql: false });
    expect(await access.forRun(ada, null)).toMatchObject({ ok: false, reason: expect.stringContaining('no dataset server') });
    expect(await access.forRun(ada, ['scans'])).toMatchObject({ ok: true });
  });
});

describe('a run\'s temporary account', () => {
  it('is created with SELECT on exactly its MySQL datasets and statement limits, and the spec carries the credentials and mounts', async () => {
    const { access, server, newRun, store } = await setup();
    const run = await newRun('ada', null);
    expect(await access.open(run)).toEqual({ ok: true });
    expect([...server.accounts.values()]).toEqual([
      {
        user: `secd_${run.id}`,
        password: 'S3cret-Passw0rd-for-tests',
        databases: ['sales_2024'],
        maxConnections: 4,
        maxStatementSeconds: RUN_ACCOUNT_LIMITS.maxStatementSeconds,
        maxQueriesPerHour: RUN_ACCOUNT_LIMITS.maxQueriesPerHour,
      },
    ]);
    const spec = access.specFor(run.id)!;
    expect(spec.env).toMatchObject({
      DB_HOST: 'localhost',
      DB_PORT: '3306',
      DB_SOCKET: '/run/mysqld/mysqld.sock',
      DB_USER: `secd_${run.id}`,
      DB_PASS: 'S3cret-Passw0rd-for-tests',
    });
    expect(JSON.parse(spec.env.SECD_DATASETS!)).toEqual({
      sales: { kind: 'mysql', database: 'sales_2024' },
      scans: { kind: 'path', path: '/datasets/scans' },
    });
    expect(spec.datasets).toEqual({ mysql: { host: 'db.internal', port: 3306 }, files: [{ name: 'scans', path: 'radiology/scans' }] });
    expect(await store.runAccess(run.id)).toMatchObject({ mysqlUser: `secd_${run.id}`, datasets: [{ name: 'sales' }, { name: 'scans' }], droppedAt: null });
  });

  it('is never logged with its password, and a server error quoting it is redacted', async () => {
    const { access, server, newRun, lines } = await setup();
    await access.open(await newRun('ada', null));
    server.failCreate = new Error("syntax error near 'S3cret-Passw0rd-for-tests'");
    const failed = await access.open(await newRun('ada', ['sales']));
    expect(failed).toEqual({ ok: false, reason: "secd could not create the run's dataset account: syntax error near '***'" });
    expect(lines.join('\n')).not.toContain('S3cret');
  });

  it('a grant revoked while the run waited fails it at assignment', async () => {
    const { access, store, newRun } = await setup();
    const run = await newRun('ada', ['sales']);
    await store.revoke({ userId: 1 }, 'sales');
    expect(await access.open(run)).toEqual({ ok: false, reason: expect.stringContaining('"sales", which ada is not granted') });
  });

  it('a run without MySQL datasets gets no account, only its file datasets', async () => {
    const { access, server, newRun } = await setup();
    const run = await newRun('ada', ['scans']);
    await access.open(run);
    expect(server.accounts.size).toBe(0);
    expect(access.specFor(run.id)).toMatchObject({ env: { SECD_DATASETS: expect.any(String) }, datasets: { mysql: null } });
    expect(access.specFor(run.id)!.env.DB_PASS).toBeUndefined();
  });

  it('is dropped when the run ends, with the socket\'s bytes in the audit', async () => {
    const { access, server, newRun, store, runs } = await setup();
    const run = await newRun('ada', null);
    await access.open(run);
    await runs.transition(run.id, 'failed', 'test');
    await access.release(run.id, { fromServer: 9000, toServer: 100 });
    expect(server.accounts.size).toBe(0);
    expect(access.specFor(run.id)).toBeNull();
    expect(await store.runAccess(run.id)).toMatchObject({ droppedAt: expect.any(String), bytesFromServer: 9000, bytesToServer: 100 });
  });

  it('a second release of the run while the first is under way joins it: the account is dropped once, the bytes kept', async () => {
    const { access, server, newRun, store, runs } = await setup();
    const run = await newRun('ada', null);
    await access.open(run);
    await runs.transition(run.id, 'failed', 'test');
    await Promise.all([access.release(run.id, { fromServer: 10, toServer: 1 }), access.release(run.id), access.sweep()]);
    expect(server.drops).toEqual([`secd_${run.id}`]);
    expect(await store.runAccess(run.id)).toMatchObject({ droppedAt: expect.any(String), bytesFromServer: 10, bytesToServer: 1 });
  });

  it('the sweep drops accounts of runs that ended by any path, and keeps those still running', async () => {
    const { access, server, newRun, runs } = await setup();
    const lost = await newRun('ada', null);
    const live = await newRun('ada', null);
    await access.open(lost);
    await access.open(live);
    await runs.transition(lost.id, 'lost', 'node gone');
    await access.sweep();
    expect([...server.accounts.keys()]).toEqual([`secd_${live.id}`]);
  });

  it('on start, leftovers with the prefix are dropped unless their run is in flight', async () => {
    const { access, server, newRun } = await setup();
    const live = await newRun('ada', null, 'running');
    await server.createRunUser({ user: `secd_${live.id}`, password: 'x', databases: [], maxConnections: 1 });
    await server.createRunUser({ user: 'secd_gone000001', password: 'x', databases: [], maxConnections: 1 });
    await server.createRunUser({ user: 'other_user', password: 'x', databases: [], maxConnections: 1 });
    expect(await access.dropLeftovers()).toBe(1);
    expect([...server.accounts.keys()].sort()).toEqual(['other_user', `secd_${live.id}`]);
  });
});

describe('a run gets the grants of its pusher\'s account, never of a name', () => {
  it('a new account that took the released name "ada" gets neither her datasets at policy time nor at assignment', async () => {
    const { access, server, newRun, store } = await setup();
    // ada (GitLab user 1) gave up the name; account 9 took it and pushes.
    expect(await access.forRun({ user: 'ada', userId: 9 }, null)).toEqual({ ok: true, datasets: [] });
    expect(await access.forRun({ user: 'ada', userId: 9 }, ['sales'])).toEqual({
      ok: false,
      reason: 'secd.yml: datasets lists "sales", which ada is not granted (ask its data owner for a grant)',
    });
    const taken = await newRun('ada', ['sales'], 'assigned', 9);
    expect(await access.open(taken)).toEqual({ ok: false, reason: expect.stringContaining('"sales", which ada is not granted') });
    const all = await newRun('ada', null, 'assigned', 9);
    expect(await access.open(all)).toEqual({ ok: true });
    expect(access.specFor(all.id)).toBeNull();
    expect(server.accounts.size).toBe(0);
    expect(await store.runAccess(all.id)).toBeUndefined();
  });

  it('ada under a new name keeps her grants: the id decides', async () => {
    const { access, newRun, server } = await setup();
    const run = await newRun('ada.lovelace', ['sales'], 'assigned', 1);
    expect(await access.open(run)).toEqual({ ok: true });
    expect([...server.accounts.values()].map((a) => a.databases)).toEqual([['sales_2024']]);
  });

  it('a run recorded without a user id is given no dataset, and says why', async () => {
    const { access, newRun } = await setup();
    const old = await newRun('ada', null, 'assigned', null);
    expect(await access.open(old)).toEqual({
      ok: false,
      reason: 'this run has no GitLab user id (it was recorded before secd kept one), so it is given no dataset: push again to start a new run',
    });
    // One that needs none goes on without.
    expect(await access.open(await newRun('carl', null, 'assigned', null))).toEqual({ ok: true });
  });

  it('a name-only grant from before the upgrade counts for no one, and the reason says what to do', async () => {
    const { access, stores } = await setup();
    // What migration 6 leaves of a grant made by name: user_id null.
    await sql`INSERT INTO dataset_grants (user, dataset, granted_at) VALUES ('grace', 'hr', '2025-01-01T00:00:00.000Z')`.execute(stores.state.db);
    expect(await access.forRun({ user: 'grace', userId: 5 }, null)).toEqual({ ok: true, datasets: [] });
    expect(await access.forRun({ user: 'grace', userId: 5 }, ['hr'])).toEqual({
      ok: false,
      reason: expect.stringContaining('granted to the name grace before secd bound grants to GitLab accounts; it counts for no one until an operator confirms'),
    });
  });
});
