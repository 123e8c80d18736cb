/**
 * Assigning the runs a planning round placed, a chunk at a time (RunStore.assignClaimed, called by
 * scheduler/lifecycle/plan-apply.ts inside its write transaction, after `claimQueued` locked and read
 * the runs). Per-run `transition` costs four statements a run (lock, UPDATE, audit INSERT, read
 * back); on MariaDB that was ~1.6 ms a run, most of a 1,000-run round (test/bench/plan-apply-engines.ts).
 * Here a chunk of up to ASSIGN_CHUNK runs costs one UPDATE with CASE per column, one multi-row INSERT
 * of the audit events and one SELECT, plus a savepoint around the UPDATE.
 *
 * The outcome is exactly what `transition(id, 'assigned', reason, { node, gpus })` per placement, in
 * placement order, would give: the same row fields (state, reason, node, gpus as JSON; no finish
 * time, `assigned` is not terminal), one `queued -> assigned` event per run with its reason, events
 * appended in placement order (run_events.seq follows it), the same refusals.
 *
 * Choices made here:
 * - The state check is made on the claimed rows (`canTransition(from, 'assigned')`), not read again:
 *   they were read and locked in this same transaction.
 * - Correctness never rests on the batch: the UPDATE also says `state = 'queued'`, and when it moves
 *   fewer rows than the chunk holds (a row passed as claimed that is not queued in the database) the
 *   chunk is rolled back to the savepoint taken just before it and done again run by run through
 *   `transition`, which refuses what it must.
 * - A placement whose run is not among the claimed rows is refused as `not_claimed` and not touched:
 *   it was not locked here (another writer may hold it, SKIP LOCKED), so it is not waited for either.
 * - A run placed twice: the second placement gets what `transition` would give it (refused from
 *   `assigned` after the first moved it, else refused as the first was).
 * - One time stamp per chunk (per-run `transition` reads the clock per run).
 */
import { sql, type Kysely } from 'kysely';
import { toRow } from './run-row.js';
import { canTransition, type RunState } from './run-states.js';
import type { RunPatch, RunRow, TransitionResult } from './run-row.js';
import type { StateScope } from './sql/state-scope.js';
import type { StateTables } from './sql/state-tables.js';

/** One accepted placement to assign: its node, GPUs and the reason shown on the run and its event. */
export interface AssignPlacement {
  runId: string;
  nodeId: string;
  gpus: readonly string[];
  reason: string;
}

/** What became of one placement, in the order they were given. */
export type AssignResult =
  | { runId: string; ok: true; run: RunRow }
  | { runId: string; ok: false; code: 'not_claimed' | 'not_found' }
  | { runId: string; ok: false; code: 'illegal_transition'; from: RunState };

/** Runs per UPDATE/INSERT/SELECT: ~1,400 parameters in the UPDATE, well under either engine's bound. */
export const ASSIGN_CHUNK = 200;

/** The per-run path a chunk falls back to: RunStore.transition to `assigned` in the same transaction. */
export type AssignOne = (runId: string, reason: string, patch: RunPatch) => Promise<TransitionResult>;

/**
 * Inside a write transaction: assign `placements` among `claimed` (the rows claimQueued gave this
 * transaction), see the file header. Throws when `scope` is not one open transaction.
 */
export async function assignClaimed(
  scope: StateScope,
  now: () => Date,
  claimed: readonly RunRow[],
  placements: readonly AssignPlacement[],
  assignOne: AssignOne,
): Promise<AssignResult[]> {
  if (!scope.inTransaction) {
    throw new Error('assignClaimed needs an open write transaction (call it on the store RunStore.inTransaction hands you): the claimed rows are locked only there');
  }
  const claimedById = new Map(claimed.map((r) => [r.id, r]));
  const results: Array<AssignResult | undefined> = new Array(placements.length);
  const firstPlacement = new Map<string, number>();
  const batch: Array<{ index: number; placement: AssignPlacement }> = [];
  placements.forEach((placement, index) => {
    const { runId } = placement;
    if (firstPlacement.has(runId)) return; // settled once the first one is
    firstPlacement.set(runId, index);
    const row = claimedById.get(runId);
    if (!row) results[index] = { runId, ok: false, code: 'not_claimed' };
    else if (!canTransition(row.state, 'assigned')) results[index] = { runId, ok: false, code: 'illegal_transition', from: row.state };
    else batch.push({ index, placement });
  });
  for (let i = 0; i < batch.length; i += ASSIGN_CHUNK) {
    const chunk = batch.slice(i, i + ASSIGN_CHUNK);
    const rows = await assignChunk(scope.db, now().toISOString(), chunk.map((c) => c.placement));
    for (const [k, { index, placement }] of chunk.entries()) {
      if (rows) {
        results[index] = { runId: placement.runId, ok: true, run: rows[k]! };
        continue;
      }
      const moved = await assignOne(placement.runId, placement.reason, { node: placement.nodeId, gpus: [...placement.gpus] });
      results[index] = moved.ok ? { runId: placement.runId, ok: true, run: moved.run } : { runId: placement.runId, ...moved };
    }
  }
  return placements.map((placement, index): AssignResult => {
    const settled = results[index];
    if (settled) return settled;
    const first = results[firstPlacement.get(placement.runId)!]!;
    return first.ok ? { runId: placement.runId, ok: false, code: 'illegal_transition', from: 'assigned' } : first;
  });
}

/**
 * One chunk in three statements: the rows moved (null, and nothing written, when not every one of
 * them was still queued), their events appended in chunk order, the rows read back in chunk order.
 */
async function assignChunk(db: Kysely<StateTables>, at: string, chunk: readonly AssignPlacement[]): Promise<RunRow[] | null> {
  const ids = chunk.map((p) => p.runId);
  const byRun = (value: (p: AssignPlacement) => string) =>
    sql<string>`case ${sql.ref('id')} ${sql.join(chunk.map((p) => sql`when ${p.runId} then ${value(p)}`), sql` `)} end`;
  await sql`savepoint secd_assign_chunk`.execute(db);
  const updated = await db
    .updateTable('runs')
    .set({ state: 'assigned', node: byRun((p) => p.nodeId), gpus: byRun((p) => JSON.stringify(p.gpus)), reason: byRun((p) => p.reason) })
    .where('id', 'in', ids)
    .where('state', '=', 'queued')
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) !== chunk.length) {
    await sql`rollback to savepoint secd_assign_chunk`.execute(db);
    await sql`release savepoint secd_assign_chunk`.execute(db);
    return null;
  }
  await sql`release savepoint secd_assign_chunk`.execute(db);
  await db
    .insertInto('run_events')
    .values(chunk.map((p) => ({ run_id: p.runId, at, from_state: 'queued', to_state: 'assigned', reason: p.reason })))
    .execute();
  const rows = new Map((await db.selectFrom('runs').selectAll().where('id', 'in', ids).execute()).map((r) => [r.id, toRow(r)]));
  return chunk.map((p) => {
    const row = rows.get(p.runId);
    if (!row) throw new Error(`run ${p.runId} vanished inside the transaction that assigned it`);
    return row;
  });
}
