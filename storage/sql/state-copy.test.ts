/**
 * `secd admin state copy` (state-copy.ts) on the real engines: a SQLite leader's runs with their
 * audit trail, deliveries, verified commits, nodes, datasets with grants, per-run access and release
 * records all arrive in a fresh MariaDB state database, where the same stores read them back equal;
 * the epoch is carried; a target that already holds state is refused and left as it was.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { copyState, TargetNotEmpty } from './state-copy.js';
import type { StateStores } from '../state-stores.js';
import { LEADER_LEASE } from './state-migrations.js';
import { scratchStores, type ScratchStores } from '../../test/support/scratch-state.js';

const NOW = () => new Date('2026-03-04T05:06:07Z');
const open: ScratchStores[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.dispose();
});

async function stores(engine: 'sqlite' | 'mysql'): Promise<ScratchStores> {
  const s = await scratchStores(engine, NOW);
  open.push(s);
  return s;
}

/** A small but complete leader history. */
async function history(s: StateStores): Promise<void> {
  for (const [i, id] of ['runaaaaaa1', 'runaaaaaa2', 'runaaaaaa3'].entries()) {
    const claimed = await s.runs.claimDelivery(`delivery-${i}`, 'Push Hook', (runs) =>
      runs.createRun({
        id, projectId: 7, project: 'lab/scan', ref: 'refs/heads/secd', beforeSha: String(i).repeat(40),
        commit: String(i + 1).repeat(40), user: 'ada', userId: 42, deliveryKey: `delivery-${i}`, fetchUrl: 'http://gitlab/lab/scan.git',
      }),
    );
    expect(claimed.first).toBe(true);
  }
  await s.runs.transition('runaaaaaa1', 'verified', 'signatures good', { signer: 'ABCD' });
  await s.runs.transition('runaaaaaa1', 'queued', 'waiting', { config: { gpus: 1, runfor: 3600 }, warnings: ['w'] });
  await s.runs.transition('runaaaaaa1', 'assigned', 'to gpu-01', { node: 'gpu-01', gpus: ['GPU-1'] });
  await s.runs.transition('runaaaaaa2', 'rejected', 'bad signature');
  await s.runs.markVerified(7, ['1'.repeat(40), '2'.repeat(40)], 'ABCD');
  await s.nodes.issueToken('gpu-01');
  await s.nodes.recordHello('gpu-01', 'gpu-01.lab', { gpus: [{ uuid: 'GPU-1' }] });
  await s.datasets.add({ name: 'icu', kind: 'mysql', mysqlDatabase: 'icu_2024' }, { release: 'review', approvals: 2 });
  await s.datasets.grant({ username: 'ada', userId: 42 }, 'icu');
  await s.datasets.recordRunAccess('runaaaaaa1', 'secd_runaaaaaa1', [{ name: 'icu', kind: 'mysql', mysqlDatabase: 'icu_2024' }]);
  await s.releases.decide('runaaaaaa1', { policy: 'review', approvalsRequired: 2, datasets: ['icu'] });
  await s.releases.update('runaaaaaa1', { findings: [{ file: 'a.csv', rule: 'small-counts', detail: 'n<10' }] });
}

/** Everything the stores can say, for comparing two databases. */
async function snapshot(s: StateStores) {
  const runs = await s.runs.list({ limit: 1000 });
  return {
    runs,
    events: await Promise.all(runs.map((r) => s.runs.events(r.id))),
    verified: await s.runs.isVerified(7, '2'.repeat(40)),
    nodes: await s.nodes.list(),
    datasets: await s.datasets.list(),
    grants: await s.datasets.grants(),
    access: await s.datasets.runAccess('runaaaaaa1'),
    releases: await s.releases.list({ limit: 1000 }),
  };
}

describe('state copy from SQLite to MariaDB', () => {
  it('moves every record, which the same stores read back equal, and carries the epoch', async () => {
    const from = await stores('sqlite');
    await history(from);
    await from.state.db.updateTable('secd_lease').set({ epoch: 17 }).where('name', '=', LEADER_LEASE).execute();
    const to = await stores('mysql');
    const outcome = await copyState(from.state, to.state);
    expect(outcome.rows).toMatchObject({ runs: 3, deliveries: 3, verified_commits: 2, nodes: 1, datasets: 1, dataset_grants: 1, run_datasets: 1, run_releases: 1 });
    expect(outcome.rows.run_events).toBe(7);
    expect(outcome.epoch).toBe(17);
    expect(await snapshot(to)).toEqual(await snapshot(from));
    // The copy is a working leader state: a re-sent delivery is still a duplicate, a node's token still works.
    const again = await to.runs.claimDelivery('delivery-0', 'Push Hook', async () => 'new run');
    expect(again.first).toBe(false);
    const token = await from.nodes.issueToken('gpu-02');
    expect((await to.nodes.authenticate('gpu-02', token)).ok).toBe(false);
  });

  it('refuses a target that already holds state, naming what it holds, and copies nothing', async () => {
    const from = await stores('sqlite');
    await history(from);
    const to = await stores('mysql');
    await to.nodes.issueToken('gpu-09');
    const err = await copyState(from.state, to.state).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetNotEmpty);
    expect(String((err as Error).message)).toContain('1 row(s) in nodes');
    expect(await to.runs.list()).toEqual([]);
  });

  it('a copy that fails half-way leaves the target empty', async () => {
    const from = await stores('sqlite');
    await history(from);
    // A value MySQL refuses (longer than a TEXT column holds) in the last table copied.
    await from.state.db.updateTable('run_releases').set({ review_branch: 'x'.repeat(70_000) }).execute();
    const to = await stores('mysql');
    await expect(copyState(from.state, to.state)).rejects.toThrow();
    expect(await to.runs.list()).toEqual([]);
    expect(await to.nodes.list()).toEqual([]);
  });
});
