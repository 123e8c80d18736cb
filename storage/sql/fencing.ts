/**
 * Fencing (DESIGN §11): every state change the active leader makes runs in a transaction that first
 * checks, in that same transaction, that the lease row still has the leader's epoch and has not
 * expired by the database's clock. A leader that was paused (SIGSTOP, a long GC, a VM migration) or
 * cut off past its lease therefore changes nothing when it wakes: its transaction throws FencedOut
 * and is rolled back, whatever its own timers believe.
 *
 * The check is an UPDATE of the lease row (`fence_seq + 1 … WHERE epoch = ? AND not expired`) that
 * must touch one row, not a SELECT … FOR UPDATE: on InnoDB both hold the row lock until commit (so
 * a takeover waits for the fenced transaction, and a fenced transaction that waits on a takeover
 * sees the new epoch), but only a write puts the row in Galera's write set, so that a takeover on
 * another cluster node and this transaction cannot both commit. The price: the active leader's
 * fenced transactions run one at a time, which is what one writer means anyway.
 */
import { sql, type Transaction } from 'kysely';
import { withConflictRetry, type ConflictRetryOptions } from './conflict-retry.js';
import { readRow, type LeaseView } from './leader-lease.js';
import { databaseNowMs, type StateDatabase } from './state-database.js';
import { LEADER_LEASE } from './state-migrations.js';
import type { StateTables } from './state-tables.js';

/** A write refused because the writer's epoch is no longer the lease's (or the lease expired). */
export class FencedOut extends Error {
  readonly code = 'FENCED_OUT';
  constructor(
    /** The epoch the writer held. */
    readonly epoch: number,
    /** The lease as the refusing transaction saw it (null: the writer had no epoch at all). */
    readonly lease: LeaseView | null,
  ) {
    super(
      lease === null
        ? `refused a write: this leader holds no lease`
        : lease.epoch !== epoch
          ? `refused a write at epoch ${epoch}: the lease is at epoch ${lease.epoch}, held by ${lease.holder || 'nobody'}`
          : `refused a write at epoch ${epoch}: the lease expired ${lease.nowMs - lease.expiresAtMs} ms ago by the database's clock`,
    );
    this.name = 'FencedOut';
  }
}

/** True when `err` is a FencedOut (also across module copies: by its code). */
export function isFencedOut(err: unknown): err is FencedOut {
  return err instanceof FencedOut || (typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'FENCED_OUT');
}

/**
 * Run `fn` in one transaction that holds the lease row at `epoch`; throws FencedOut (and writes
 * nothing) when the lease has moved on. A conflict reruns the whole transaction, so `fn` may run more
 * than once: keep effects outside the database out of it.
 */
export function inFencedTransaction<T>(
  state: StateDatabase,
  epoch: number,
  fn: (trx: Transaction<StateTables>) => Promise<T>,
  o: ConflictRetryOptions & { lease?: string } = {},
): Promise<T> {
  const name = o.lease ?? LEADER_LEASE;
  const now = databaseNowMs(state.engine);
  return withConflictRetry(
    () =>
      state.db.transaction().execute(async (trx) => {
        const r = await trx
          .updateTable('secd_lease')
          .set({ fence_seq: sql<number>`fence_seq + 1` })
          .where('name', '=', name)
          .where('epoch', '=', epoch)
          .where('expires_at_ms', '>', now)
          .executeTakeFirst();
        if (Number(r.numUpdatedRows) !== 1) throw new FencedOut(epoch, await readRow(trx, state, name));
        return fn(trx);
      }),
    o,
  );
}
