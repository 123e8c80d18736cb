/**
 * Two leaders on one MySQL state at the same moment (two pools on one database): what SQLite never
 * sees, since it runs one transaction at a time.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { RunStore } from './run-store.js';
import { createRunTablesMysql } from './sql/run-tables.js';
import { plainScope } from './sql/state-scope.js';
import { stateStores, type StateStores } from './state-stores.js';
import { aNewRun } from '../test/support/run-rows.js';
import { scratchStores, type ScratchStores } from '../test/support/scratch-state.js';

describe('two leaders writing the runs on one MySQL state at once', () => {
  let one: ScratchStores;
  let two: StateStores;
  beforeEach(async () => {
    one = await scratchStores('mysql');
    two = stateStores(plainScope(one.scratch.open()));
  });
  afterEach(async () => {
    await one.dispose();
  });

  it('one delivery received by both creates one run; the other leader answers with the first outcome', async () => {
    const created: string[] = [];
    const claim = (stores: StateStores, id: string) =>
      stores.runs.claimDelivery('idem-7', 'Push Hook', async (runs) => {
        created.push(id);
        const run = await runs.createRun(aNewRun({ id, deliveryKey: 'idem-7' }));
        await sleep(150); // the other claim arrives while this one is still open
        return { run_id: run.id };
      });
    const [a, b] = await Promise.all([claim(one, 'run-a'), claim(two, 'run-b')]);
    const winners = [a, b].filter((c) => c.first);
    expect(winners).toHaveLength(1);
    const winner = winners[0]!;
    const loser = a.first ? b : a;
    expect(created).toEqual([winner.first && (winner.value as { run_id: string }).run_id]);
    expect(loser).toEqual({ first: false, outcome: winner.first && winner.value });
    expect((await one.runs.list()).map((r) => r.id)).toEqual(created);
  });

  it('two transitions of one run at once: the one that locks it second sees the first one’s state', async () => {
    await one.runs.createRun(aNewRun());
    for (const to of ['verified', 'queued'] as const) await one.runs.transition('r1', to, to);
    const first = one.runs.inTransaction(async (runs) => {
      const r = await runs.transition('r1', 'assigned', 'node n1 chosen', { node: 'n1' });
      await sleep(150); // still open when the second leader tries
      return r;
    });
    await sleep(30);
    const second = two.runs.transition('r1', 'assigned', 'node n2 chosen', { node: 'n2' });
    const [a, b] = await Promise.all([first, second]);
    expect(a.ok).toBe(true);
    expect(b).toEqual({ ok: false, code: 'illegal_transition', from: 'assigned' });
    expect((await two.runs.get('r1'))!.node).toBe('n1');
    expect((await one.runs.events('r1')).filter((e) => e.to === 'assigned')).toHaveLength(1);
  });

  it('creating the runs tables again (a migration re-run after a crash) keeps what they hold', async () => {
    await one.runs.createRun(aNewRun());
    await createRunTablesMysql(one.state.db);
    expect((await new RunStore(two.scope).get('r1'))?.id).toBe('r1');
  });
});
