import { afterEach, describe, expect, it } from 'vitest';
import type { AssignPlacement, RunRow, RunStore } from './run-store.js';
import { ASSIGN_CHUNK } from './run-assign.js';
import { aNewRun } from '../test/support/run-rows.js';
import { scratchStores, STATE_ENGINES, type ScratchStores } from '../test/support/scratch-state.js';

// RunStore.assignClaimed against per-run `transition`, on both engines: a planning round's batch
// must leave exactly the rows and audit trail one transition per placement would have left.

const AT = new Date('2026-03-04T05:06:07.000Z');

let stores: ScratchStores | undefined;
afterEach(async () => {
  await stores?.dispose();
  stores = undefined;
});

/** Queued runs made as the lifecycle makes them (received, verified, queued with a config). */
async function queuedRuns(store: RunStore, ids: readonly string[]): Promise<void> {
  for (const id of ids) {
    await store.createRun(aNewRun({ id, deliveryKey: id }));
    await store.transition(id, 'verified', 'all commits signed');
    const queued = await store.transition(id, 'queued', 'waiting for a node', { config: { gpus: 1 }, warnings: ['w'] });
    if (!queued.ok) throw new Error(`test: ${id} could not be queued`);
  }
}

/** A placement of run `id` on node `n<k>` with `gpus` GPUs and the reason applyPlan writes. */
function placement(id: string, k: number, gpus: number): AssignPlacement {
  const gpuIds = Array.from({ length: gpus }, (_, g) => `GPU-${k}-${g}`);
  return { runId: id, nodeId: `n${k}`, gpus: gpuIds, reason: `assigned to n${k}${gpus ? ` with ${gpus} GPU(s)` : ''}` };
}

/** The runs whose `queued -> assigned` events were appended, in run_events.seq order. */
async function assignedEventOrder(s: ScratchStores): Promise<string[]> {
  const rows = await s.state.db.selectFrom('run_events').select('run_id').where('to_state', '=', 'assigned').orderBy('seq').execute();
  return rows.map((r) => r.run_id);
}

/** A run read back as if it had another id (what two runs moved the same way must share). */
function asRun(run: RunRow | undefined, id: string): RunRow | undefined {
  return run && { ...run, id, deliveryKey: id };
}

describe.each(STATE_ENGINES)('assigning claimed runs in batches (%s)', (engine) => {
  it('leaves the same rows and audit events as one transition per placement, events in placement order', async () => {
    const s = (stores = await scratchStores(engine, () => AT));
    const ids = ['a1', 'a2', 'a3', 'a4'];
    await queuedRuns(s.runs, [...ids, ...ids.map((id) => id.replace('a', 'b'))]);
    // Placement order differs from id and insert order; one run is CPU-only (no GPUs).
    const order = [[3, 2], [1, 0], [4, 1], [2, 1]] as const;
    const viaTransition = await s.runs.inTransaction(async (runs) => {
      const out: RunRow[] = [];
      for (const [n, gpus] of order) {
        const p = placement(`b${n}`, n, gpus);
        const moved = await runs.transition(p.runId, 'assigned', p.reason, { node: p.nodeId, gpus: [...p.gpus] });
        if (!moved.ok) throw new Error(`test: b${n} could not be assigned (${moved.code})`);
        out.push(moved.run);
      }
      return out;
    });
    const batched = await s.runs.inTransaction(async (runs) => runs.assignClaimed(await runs.claimQueued(ids), order.map(([n, gpus]) => placement(`a${n}`, n, gpus))));

    expect(batched.map((r) => [r.runId, r.ok])).toEqual(order.map(([n]) => [`a${n}`, true]));
    for (const [i, [n]] of order.entries()) {
      const result = batched[i]!;
      expect(result.ok && asRun(result.run, `b${n}`)).toEqual(viaTransition[i]);
      expect(asRun(await s.runs.get(`a${n}`), `b${n}`)).toEqual(await s.runs.get(`b${n}`));
      expect(await s.runs.events(`a${n}`)).toEqual(await s.runs.events(`b${n}`));
    }
    expect(viaTransition[0]).toMatchObject({ state: 'assigned', node: 'n3', gpus: ['GPU-3-0', 'GPU-3-1'], reason: 'assigned to n3 with 2 GPU(s)', finishedAt: null });
    expect(viaTransition[1]).toMatchObject({ node: 'n1', gpus: [], reason: 'assigned to n1', config: { gpus: 1 }, warnings: ['w'] });
    expect((await s.runs.events('a3')).at(-1)).toEqual({ at: AT.toISOString(), from: 'queued', to: 'assigned', reason: 'assigned to n3 with 2 GPU(s)' });
    expect(await assignedEventOrder(s)).toEqual([...order.map(([n]) => `b${n}`), ...order.map(([n]) => `a${n}`)]);
  });

  it(`assigns more runs than one chunk of ${ASSIGN_CHUNK} holds, each with its own node, GPUs and event, in placement order`, async () => {
    const s = (stores = await scratchStores(engine, () => AT));
    const ids = Array.from({ length: 450 }, (_, i) => `r${String(i).padStart(3, '0')}`);
    await queuedRuns(s.runs, ids);
    // Placed in a shuffled order (a stride through the ids), so chunk order is not id order.
    const order = ids.map((_, i) => ids[(i * 7) % ids.length]!);
    const placements = order.map((id, i) => placement(id, i % 100, i % 3));
    const results = await s.runs.inTransaction(async (runs) => runs.assignClaimed(await runs.claimQueued(ids), placements));

    expect(results.filter((r) => r.ok)).toHaveLength(450);
    expect(results.map((r) => r.runId)).toEqual(order);
    for (const [i, p] of placements.entries()) {
      const stored = await s.runs.get(p.runId);
      expect(stored).toMatchObject({ state: 'assigned', node: p.nodeId, gpus: p.gpus, reason: p.reason, finishedAt: null });
      expect(results[i]!.ok && results[i]!.run).toEqual(stored);
    }
    expect(await assignedEventOrder(s)).toEqual(order);
    expect((await s.runs.events(order[449]!)).map((e) => [e.from, e.to])).toEqual([[null, 'received'], ['received', 'verified'], ['verified', 'queued'], ['queued', 'assigned']]);
  });

  it('refuses a claimed run that is not queued, a run not claimed and a second placement of one run, and assigns the rest', async () => {
    const s = (stores = await scratchStores(engine, () => AT));
    await queuedRuns(s.runs, ['q1', 'q2', 'q3', 'free']);
    await s.runs.createRun(aNewRun({ id: 'new', deliveryKey: 'new' }));
    const results = await s.runs.inTransaction(async (runs) => {
      const claimed = await runs.claimQueued(['q1', 'q2', 'q3']);
      const fresh = (await runs.get('new'))!; // passed as claimed, but `received`
      return runs.assignClaimed([...claimed, fresh], [
        placement('q1', 1, 1), placement('new', 2, 1), placement('free', 3, 1), placement('q2', 4, 1), placement('q1', 5, 1), placement('q3', 6, 1),
      ]);
    });

    expect(results.map((r) => (r.ok ? [r.runId, 'ok'] : [r.runId, r.code, 'from' in r ? r.from : undefined]))).toEqual([
      ['q1', 'ok'], ['new', 'illegal_transition', 'received'], ['free', 'not_claimed', undefined], ['q2', 'ok'], ['q1', 'illegal_transition', 'assigned'], ['q3', 'ok'],
    ]);
    expect(await s.runs.get('q1')).toMatchObject({ state: 'assigned', node: 'n1' });
    expect(await s.runs.get('new')).toMatchObject({ state: 'received', node: null, reason: 'push received' });
    expect(await s.runs.get('free')).toMatchObject({ state: 'queued', node: null, gpus: [], reason: 'waiting for a node' });
    expect((await s.runs.events('free')).at(-1)?.to).toBe('queued');
    expect(await assignedEventOrder(s)).toEqual(['q1', 'q2', 'q3']);
  });

  it('a row passed as queued that moved on in the database is refused as transition would, the rest of its chunk still assigned once', async () => {
    const s = (stores = await scratchStores(engine, () => AT));
    await queuedRuns(s.runs, ['q1', 'q2', 'q3']);
    const results = await s.runs.inTransaction(async (runs) => {
      const claimed = await runs.claimQueued(['q1', 'q2', 'q3']);
      // Cancelled after the claim was read (a caller holding stale rows): the batched UPDATE moves
      // two rows of three, so the chunk is undone and done run by run.
      await runs.transition('q2', 'cancelled', 'cancelled by an operator');
      return runs.assignClaimed(claimed, [placement('q3', 3, 1), placement('q2', 2, 1), placement('q1', 1, 0)]);
    });

    expect(results.map((r) => (r.ok ? [r.runId, r.run.state, r.run.node] : [r.runId, r.code, 'from' in r ? r.from : undefined]))).toEqual([
      ['q3', 'assigned', 'n3'], ['q2', 'illegal_transition', 'cancelled'], ['q1', 'assigned', 'n1'],
    ]);
    expect(await s.runs.get('q2')).toMatchObject({ state: 'cancelled', node: null, reason: 'cancelled by an operator' });
    expect(await s.runs.get('q1')).toMatchObject({ state: 'assigned', node: 'n1', gpus: [], reason: 'assigned to n1' });
    expect(await assignedEventOrder(s)).toEqual(['q3', 'q1']);
    expect((await s.runs.events('q3')).filter((e) => e.to === 'assigned')).toHaveLength(1);
  });

  it('refuses to run outside a write transaction and writes nothing', async () => {
    const s = (stores = await scratchStores(engine, () => AT));
    await queuedRuns(s.runs, ['q1']);
    const claimed = await s.runs.claimQueued(['q1']);
    await expect(s.runs.assignClaimed(claimed, [placement('q1', 1, 1)])).rejects.toThrow(/assignClaimed needs an open write transaction/);
    expect(await s.runs.get('q1')).toMatchObject({ state: 'queued', node: null });
  });
});
