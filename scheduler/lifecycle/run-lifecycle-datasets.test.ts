import { afterEach, describe, expect, it } from 'vitest';
import type { DatasetStore } from '../../storage/dataset-store.js';
import { RunDatasets, type DatasetServer, type RunAccount } from '../policy/dataset-access.js';
import { silentLog } from '../common/log.js';
import type { PushEvent } from '../intake/push-event.js';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

// The lifecycle with the dataset step: a push goes through policy to a fake node, and the dataset
// server holds each account creation until the test lets it through.

class GatedServer implements DatasetServer {
  accounts = new Map<string, RunAccount>();
  fail: Error | null = null;
  private gates: Array<() => void> = [];
  async databaseExists() {
    return true;
  }
  async createRunUser(a: RunAccount) {
    await new Promise<void>((release) => this.gates.push(release));
    if (this.fail) throw this.fail;
    this.accounts.set(a.user, a);
  }
  async dropRunUser(user: string) {
    this.accounts.delete(user);
  }
  async listRunUsers() {
    return [...this.accounts.keys()];
  }
  async close() {}
  /** Let every pending creation finish. */
  open(): void {
    for (const g of this.gates.splice(0)) g();
  }
  pending(): number {
    return this.gates.length;
  }
}

let fixture: LifecycleFixture | undefined;
afterEach(async () => fixture?.close());

async function setup(files: Record<string, string>) {
  const server = new GatedServer();
  const node = fakeNode('gpu-01', { cpuSlots: 4 });
  let policy: DatasetStore | undefined;
  let seq = 0;
  fixture = await lifecycleFixture([node], async ({ stores, store }) => {
    policy = stores.datasets;
    await policy.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024' });
    await policy.grant({ username: 'ada', userId: 1 }, 'sales');
    const datasets = new RunDatasets({
      store: policy,
      runs: store,
      server,
      endpoint: { host: 'db.internal', port: 3306 },
      userPrefix: 'secd_',
      maxConnections: 8,
      log: silentLog,
      newPassword: () => 'pw-for-tests-0123456789abcdef',
    });
    return {
      newRunId: () => `run${String(++seq).padStart(7, '0')}`,
      verifyPush: async ({ after }) => ({ ok: true, commits: [after], head: { sha: after, fingerprint: 'F'.repeat(40), username: 'ada' } }),
      readFileAt: async (_p, _sha, path) => (files[path] === undefined ? null : Buffer.from(files[path]!)),
      datasets,
    };
  });
  const { store, lifecycle, statuses } = fixture;
  const settled = fixture.settle;
  let pushes = 0;
  const push = async (): Promise<string> => {
    pushes++;
    const sha = String(pushes).repeat(40).slice(0, 40);
    const event = {
      event_name: 'push',
      before: '0'.repeat(40),
      after: sha,
      ref: 'refs/heads/main',
      user_id: 1,
      user_username: 'ada',
      project: { id: 7, path_with_namespace: 'lab/p', git_http_url: 'http://x/lab/p.git' },
    } as unknown as PushEvent;
    return (await lifecycle.acceptPush(event, `delivery-${pushes}`, 'Push Hook')).run_id;
  };
  /** Let the lifecycle's background steps run until the dataset server holds `n` creations (or nothing is left). */
  const settle = async (n = 0) => {
    for (let i = 0; i < 50 && server.pending() < n; i++) await new Promise((r) => setTimeout(r, 5));
    if (n === 0) await settled();
  };
  return { store, policy: policy!, server, lifecycle, assigned: node.assigned, statuses, push, settle, now: fixture.now };
}

const PROJECT = { Dockerfile: 'FROM scratch\n', 'secd.yml': 'datasets: [sales]\n' };

describe('the lifecycle with datasets', () => {
  it('the node gets the run only once its account exists, with the credentials in the spec', async () => {
    const t = await setup(PROJECT);
    const runId = await t.push();
    await t.settle(1);
    expect((await t.store.get(runId))?.state).toBe('assigned');
    expect(t.assigned).toEqual([]);
    t.server.open();
    await t.settle();
    expect(t.server.accounts.get(`secd_${runId}`)).toMatchObject({ databases: ['sales_2024'] });
    expect(t.assigned).toHaveLength(1);
    expect(t.assigned[0]!.env).toMatchObject({ DB_USER: `secd_${runId}`, DB_PASS: 'pw-for-tests-0123456789abcdef', DB_SOCKET: '/run/mysqld/mysqld.sock' });
    expect(t.assigned[0]!.datasets).toEqual({ mysql: { host: 'db.internal', port: 3306 }, files: [] });
  });

  it('a run whose account cannot be created fails with the reason, and its node never gets it', async () => {
    const t = await setup(PROJECT);
    const runId = await t.push();
    await t.settle(1);
    t.server.fail = new Error('the dataset server is down');
    t.server.open();
    await t.settle();
    expect(await t.store.get(runId)).toMatchObject({ state: 'failed', reason: "secd could not create the run's dataset account: the dataset server is down" });
    expect(t.assigned).toEqual([]);
    expect(t.statuses.at(-1)).toMatchObject({ state: 'failed' });
  });

  it('a run superseded while its account is being created is cancelled, never sent, and its account dropped', async () => {
    const t = await setup(PROJECT);
    const older = await t.push();
    await t.settle(1);
    const newer = await t.push();
    await t.settle(2);
    expect(await t.store.get(older)).toMatchObject({ state: 'cancelled', reason: expect.stringContaining('superseded') });
    t.server.open();
    await t.settle();
    expect(t.assigned.map((s) => s.runId)).toEqual([newer]);
    expect([...t.server.accounts.keys()]).toEqual([`secd_${newer}`]);
  });

  it('the run\'s result drops its account and records the bytes its socket carried', async () => {
    const t = await setup(PROJECT);
    const runId = await t.push();
    await t.settle(1);
    t.server.open();
    await t.settle();
    t.lifecycle.onResult('gpu-01', runId, {
      end: 'succeeded', reason: 'succeeded', exitCode: 0, imageId: 'sha256:x', branch: 'b', outputsPath: 'o',
      startedAt: null, finishedAt: t.now().toISOString(), datasetBytes: { fromServer: 4096, toServer: 128 },
    });
    await t.settle();
    expect(t.server.accounts.size).toBe(0);
    expect(await t.policy.runAccess(runId)).toMatchObject({ droppedAt: expect.any(String), bytesFromServer: 4096, bytesToServer: 128 });
  });

  it('asking for a dataset not granted rejects the run at policy time, naming it', async () => {
    const t = await setup({ ...PROJECT, 'secd.yml': 'datasets: [sales, payroll]\n' });
    const runId = await t.push();
    await t.settle();
    expect(await t.store.get(runId)).toMatchObject({ state: 'rejected', reason: 'secd.yml: datasets lists "payroll", but no dataset has that name' });
    expect(t.server.pending()).toBe(0);
  });
});
