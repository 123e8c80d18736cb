import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { countRunsByState } from './run-counts.js';
import { runHeads } from './run-heads.js';
import { RUN_STATES } from './run-states.js';
import { openDatabase } from './database.js';
import { openMysqlState, stateOverSqlite, type StateDatabase, type StateEngine } from './sql/state-database.js';
import { plainScope } from './sql/state-scope.js';
import { isStateWritable } from './state-health.js';
import { aNewRun } from '../test/support/run-rows.js';
import { MARIADB, MARIADB_ADMIN } from '../test/support/mariadb.js';
import { scratchStores, STATE_ENGINES, type ScratchStores } from '../test/support/scratch-state.js';

/** A state no write reaches: a closed SQLite handle, or a MySQL database that does not exist. */
async function unreachableState(engine: StateEngine): Promise<StateDatabase> {
  if (engine === 'mysql') return openMysqlState({ endpoint: MARIADB, login: MARIADB_ADMIN, database: 'secd_state_never_created' });
  const handle = openDatabase(':memory:');
  handle.close();
  return stateOverSqlite(handle);
}

describe.each(STATE_ENGINES)('what the reconciler, /metrics and /healthz read of the runs on %s', (engine) => {
  let stores: ScratchStores;
  beforeEach(async () => {
    stores = await scratchStores(engine);
  });
  afterEach(async () => {
    await stores.dispose();
  });

  it('the reconciler sees each project with a run once, ascending, and which commit of which ref has a run', async () => {
    const heads = runHeads(stores.scope);
    expect(await heads.knownProjects()).toEqual([]);
    await stores.runs.createRun(aNewRun({ id: 'a', projectId: 12 }));
    await stores.runs.createRun(aNewRun({ id: 'b', projectId: 3, commit: 'b'.repeat(40) }));
    await stores.runs.createRun(aNewRun({ id: 'c', projectId: 12, ref: 'refs/heads/dev' }));
    await stores.runs.transition('c', 'rejected', 'commit cccc is not signed');
    expect(await heads.knownProjects()).toEqual([3, 12]);
    expect(await heads.hasRunAt(3, 'refs/heads/main', 'b'.repeat(40))).toBe(true);
    expect(await heads.hasRunAt(12, 'refs/heads/dev', 'a'.repeat(40))).toBe(true);
    expect(await heads.hasRunAt(12, 'refs/heads/dev', 'b'.repeat(40))).toBe(false);
    expect(await heads.hasRunAt(4, 'refs/heads/main', 'b'.repeat(40))).toBe(false);
  });

  it('counts runs in every state, zero where there are none', async () => {
    for (const id of ['a', 'b', 'c']) await stores.runs.createRun(aNewRun({ id }));
    await stores.runs.transition('b', 'verified', 'signed');
    await stores.runs.transition('c', 'cancelled', 'superseded');
    const counts = await countRunsByState(stores.scope);
    expect(Object.keys(counts).sort()).toEqual([...RUN_STATES].sort());
    expect(counts).toMatchObject({ received: 1, verified: 1, cancelled: 1, queued: 0, succeeded: 0 });
    expect(typeof counts.received).toBe('number');
  });

  it('/healthz writes its one probe row each time and says false when the state takes no writes', async () => {
    const times = ['2026-05-01T00:00:00.000Z', '2026-05-01T00:00:05.000Z'];
    expect(await isStateWritable(stores.scope, () => new Date(times[0]!))).toBe(true);
    expect(await isStateWritable(stores.scope, () => new Date(times[1]!))).toBe(true);
    expect(await stores.state.db.selectFrom('health_probe').selectAll().execute()).toEqual([{ id: 1, at: times[1] }]);
    const unreachable = await unreachableState(engine);
    try {
      expect(await isStateWritable(plainScope(unreachable))).toBe(false);
    } finally {
      await unreachable.close();
    }
    expect(await isStateWritable({ ...stores.scope, write: () => Promise.reject(new Error('fenced out')) })).toBe(false);
  });

  it('lookups are exact: a ref, sha, user or delivery key differing only in case is another one', async () => {
    const run = await stores.runs.createRun(aNewRun({ ref: 'refs/heads/main', user: 'alice' }));
    expect((await stores.runs.findPush(7, 'refs/heads/main', run.beforeSha, run.commit))?.id).toBe('r1');
    expect(await stores.runs.findPush(7, 'refs/heads/Main', run.beforeSha, run.commit)).toBeUndefined();
    expect(await runHeads(stores.scope).hasRunAt(7, 'refs/heads/MAIN', run.commit)).toBe(false);
    expect(await runHeads(stores.scope).hasRunAt(7, 'refs/heads/main', run.commit.toUpperCase())).toBe(false);
    expect(await stores.state.db.selectFrom('runs').select('id').where('user', '=', 'Alice').execute()).toEqual([]);
    expect(await stores.state.db.selectFrom('runs').select('id').where('user', '=', 'alice').execute()).toEqual([{ id: 'r1' }]);
    await stores.runs.markVerified(7, ['ab'.repeat(20)], 'FPR');
    expect(await stores.runs.isVerified(7, 'AB'.repeat(20))).toBe(false);
    await stores.runs.claimDelivery('Idem-1', 'Push Hook', async () => 'first');
    expect(await stores.runs.claimDelivery('idem-1', 'Push Hook', async () => 'second')).toEqual({ first: true, value: 'second' });
  });
});
