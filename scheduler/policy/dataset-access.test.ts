/** The leader's dataset step with a recording dataset server (the adapter is tested against MariaDB). */
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../storage/database.js';
import { DatasetStore } from '../../storage/dataset-store.js';
import { RunStore } from '../../storage/run-store.js';
import type { RunState } from '../../storage/run-states.js';
import { RUN_ACCOUNT_LIMITS, RunDatasets, type DatasetServer, type RunAccount } from './dataset-access.js';
import type { Log } from '../common/log.js';

class RecordingServer implements DatasetServer {
  accounts = new Map<string, RunAccount>();
  failCreate: Error | null = null;
  async databaseExists() {
    return true;
  }
  async createRunUser(a: RunAccount) {
    if (this.failCreate) throw this.failCreate;
    this.accounts.set(a.user, a);
  }
  async dropRunUser(user: string) {
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

function setup(opts: { mysql?: boolean } = {}) {
  const db = openDatabase(':memory:');
  const store = new DatasetStore(db);
  const runs = new RunStore(db);
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
  store.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024' });
  store.add({ name: 'hr', kind: 'mysql', mysqlDatabase: 'hr' });
  store.add({ name: 'scans', kind: 'path', path: 'radiology/scans' });
  store.grant(ADA, 'sales');
  store.grant(ADA, 'scans');
  let n = 0;
  const newRun = (user: string, datasets: string[] | null, state: RunState = 'assigned', userId: number | null = 1) => {
    const id = `run${String(++n).padStart(7, '0')}`;
    runs.createRun({ id, projectId: 1, project: 'lab/p', ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit: '1'.repeat(40), user, userId, deliveryKey: null, fetchUrl: 'http://x' });
    for (const s of ['verified', 'queued', 'assigned', 'building', 'running', 'uploading', 'succeeded'] as RunState[]) {
      if (runs.get(id)!.state === state) break;
      runs.transition(id, s, 'test', s === 'queued' ? { config: { datasets } } : {});
    }
    return runs.get(id)!;
  };
  return { db, store, runs, server, lines, access, newRun };
}

describe('which datasets a run gets', () => {
  it('all of the user\'s grants by default, or those secd.yml names', () => {
    const { access } = setup();
    expect(access.forRun(ada, null)).toMatchObject({ ok: true, datasets: [{ name: 'sales' }, { name: 'scans' }] });
    expect(access.forRun(ada, ['scans'])).toMatchObject({ ok: true, datasets: [{ name: 'scans' }] });
    expect(access.forRun(ada, [])).toEqual({ ok: true, datasets: [] });
    expect(access.forRun({ user: 'bob', userId: 2 }, null)).toEqual({ ok: true, datasets: [] });
  });

  it('a dataset not granted, or unknown, refuses the run naming it', () => {
    const { access } = setup();
    expect(access.forRun(ada, ['sales', 'hr'])).toEqual({
      ok: false,
      reason: 'secd.yml: datasets lists "hr", which ada is not granted (ask its data owner for a grant)',
    });
    expect(access.forRun(ada, ['salez'])).toEqual({ ok: false, reason: 'secd.yml: datasets lists "salez", but no dataset has that name' });
  });

  it('a MySQL dataset on a leader without a dataset server is refused; file datasets still work', () => {
    const { access } = setup({ mysql: false });
    expect(access.forRun(ada, null)).toMatchObject({ ok: false, reason: expect.stringContaining('no dataset server') });
    expect(access.forRun(ada, ['scans'])).toMatchObject({ ok: true });
  });
});

describe('a run\'s temporary account', () => {
  it('is created with SELECT on exactly its MySQL datasets and statement limits, and the spec carries the credentials and mounts', async () => {
    const { access, server, newRun, store } = setup();
    const run = newRun('ada', null);
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
    expect(store.runAccess(run.id)).toMatchObject({ mysqlUser: `secd_${run.id}`, datasets: [{ name: 'sales' }, { name: 'scans' }], droppedAt: null });
  });

  it('is never logged with its password, and a server error quoting it is redacted', async () => {
    const { access, server, newRun, lines } = setup();
    await access.open(newRun('ada', null));
    server.failCreate = new Error("syntax error near 'S3cret-Passw0rd-for-tests'");
    const failed = await access.open(newRun('ada', ['sales']));
    expect(failed).toEqual({ ok: false, reason: "secd could not create the run's dataset account: syntax error near '***'" });
    expect(lines.join('\n')).not.toContain('S3cret');
  });

  it('a grant revoked while the run waited fails it at assignment', async () => {
    const { access, store, newRun } = setup();
    const run = newRun('ada', ['sales']);
    store.revoke({ userId: 1 }, 'sales');
    expect(await access.open(run)).toEqual({ ok: false, reason: expect.stringContaining('"sales", which ada is not granted') });
  });

  it('a run without MySQL datasets gets no account, only its file datasets', async () => {
    const { access, server, newRun } = setup();
    const run = newRun('ada', ['scans']);
    await access.open(run);
    expect(server.accounts.size).toBe(0);
    expect(access.specFor(run.id)).toMatchObject({ env: { SECD_DATASETS: expect.any(String) }, datasets: { mysql: null } });
    expect(access.specFor(run.id)!.env.DB_PASS).toBeUndefined();
  });

  it('is dropped when the run ends, with the socket\'s bytes in the audit', async () => {
    const { access, server, newRun, store, runs } = setup();
    const run = newRun('ada', null);
    await access.open(run);
    runs.transition(run.id, 'failed', 'test');
    await access.release(run.id, { fromServer: 9000, toServer: 100 });
    expect(server.accounts.size).toBe(0);
    expect(access.specFor(run.id)).toBeNull();
    expect(store.runAccess(run.id)).toMatchObject({ droppedAt: expect.any(String), bytesFromServer: 9000, bytesToServer: 100 });
  });

  it('the sweep drops accounts of runs that ended by any path, and keeps those still running', async () => {
    const { access, server, newRun, runs } = setup();
    const lost = newRun('ada', null);
    const live = newRun('ada', null);
    await access.open(lost);
    await access.open(live);
    runs.transition(lost.id, 'lost', 'node gone');
    await access.sweep();
    expect([...server.accounts.keys()]).toEqual([`secd_${live.id}`]);
  });

  it('on start, leftovers with the prefix are dropped unless their run is in flight', async () => {
    const { access, server, newRun } = setup();
    const live = newRun('ada', null, 'running');
    await server.createRunUser({ user: `secd_${live.id}`, password: 'x', databases: [], maxConnections: 1 });
    await server.createRunUser({ user: 'secd_gone000001', password: 'x', databases: [], maxConnections: 1 });
    await server.createRunUser({ user: 'other_user', password: 'x', databases: [], maxConnections: 1 });
    expect(await access.dropLeftovers()).toBe(1);
    expect([...server.accounts.keys()].sort()).toEqual(['other_user', `secd_${live.id}`]);
  });
});

describe('a run gets the grants of its pusher\'s account, never of a name', () => {
  it('a new account that took the released name "ada" gets neither her datasets at policy time nor at assignment', async () => {
    const { access, server, newRun, store } = setup();
    // ada (GitLab user 1) gave up the name; account 9 took it and pushes.
    expect(access.forRun({ user: 'ada', userId: 9 }, null)).toEqual({ ok: true, datasets: [] });
    expect(access.forRun({ user: 'ada', userId: 9 }, ['sales'])).toEqual({
      ok: false,
      reason: 'secd.yml: datasets lists "sales", which ada is not granted (ask its data owner for a grant)',
    });
    const taken = newRun('ada', ['sales'], 'assigned', 9);
    expect(await access.open(taken)).toEqual({ ok: false, reason: expect.stringContaining('"sales", which ada is not granted') });
    const all = newRun('ada', null, 'assigned', 9);
    expect(await access.open(all)).toEqual({ ok: true });
    expect(access.specFor(all.id)).toBeNull();
    expect(server.accounts.size).toBe(0);
    expect(store.runAccess(all.id)).toBeUndefined();
  });

  it('ada under a new name keeps her grants: the id decides', async () => {
    const { access, newRun, server } = setup();
    const run = newRun('ada.lovelace', ['sales'], 'assigned', 1);
    expect(await access.open(run)).toEqual({ ok: true });
    expect([...server.accounts.values()].map((a) => a.databases)).toEqual([['sales_2024']]);
  });

  it('a run recorded without a user id is given no dataset, and says why', async () => {
    const { access, newRun } = setup();
    const old = newRun('ada', null, 'assigned', null);
    expect(await access.open(old)).toEqual({
      ok: false,
      reason: 'this run has no GitLab user id (it was recorded before secd kept one), so it is given no dataset: push again to start a new run',
    });
    // One that needs none goes on without.
    expect(await access.open(newRun('carl', null, 'assigned', null))).toEqual({ ok: true });
  });

  it('a name-only grant from before the upgrade counts for no one, and the reason says what to do', () => {
    const { access, db } = setup();
    // What migration 6 leaves of a grant made by name: user_id null.
    db.prepare("INSERT INTO dataset_grants (user, dataset, granted_at) VALUES ('grace', 'hr', '2025-01-01T00:00:00.000Z')").run();
    expect(access.forRun({ user: 'grace', userId: 5 }, null)).toEqual({ ok: true, datasets: [] });
    expect(access.forRun({ user: 'grace', userId: 5 }, ['hr'])).toEqual({
      ok: false,
      reason: expect.stringContaining('granted to the name grace before secd bound grants to GitLab accounts; it counts for no one until an operator confirms'),
    });
  });
});
