/**
 * Where a store reads and how it writes (DESIGN §11). Every store of the leader's state
 * (storage/run-store.ts, node-store.ts, dataset-store.ts, release-store.ts) is built over a
 * StateScope instead of a database handle, so the same store code serves:
 * - the embedded leader and `secd admin` (plainScope: a transaction, retried on a lock conflict);
 * - the active leader of several (fencedScope: every transaction first checks the lease's epoch in
 *   that same transaction, storage/sql/fencing.ts, so a leader that lost its lease writes nothing);
 * - one open transaction (`write` joins it), which is how several store calls land together.
 *
 * A write function may run more than once (a conflict reruns the whole transaction): it touches
 * only the database.
 */
import type { Kysely, Transaction } from 'kysely';
import { withConflictRetry } from './conflict-retry.js';
import type { StateDatabase, StateEngine } from './state-database.js';
import type { StateTables } from './state-tables.js';

/** Where reads go and how writes are made. */
export interface StateScope {
  readonly engine: StateEngine;
  /** Reads: the database, or the open transaction when `inTransaction`. */
  readonly db: Kysely<StateTables>;
  /** True when this scope is one open transaction. */
  readonly inTransaction: boolean;
  /**
   * Run `fn` in one transaction and return its result; inside a transaction, in that one. `fn` gets
   * the transaction's scope: build the stores it uses over it.
   */
  write<T>(fn: (trx: StateScope) => Promise<T>): Promise<T>;
}

/** The scope of one open transaction: writes join it. */
export function transactionScope(engine: StateEngine, trx: Transaction<StateTables>): StateScope {
  const scope: StateScope = { engine, db: trx, inTransaction: true, write: (fn) => fn(scope) };
  return scope;
}

/** Transactions of `state`, each run again from its start when it loses a lock conflict. */
export function plainScope(state: StateDatabase): StateScope {
  return {
    engine: state.engine,
    db: state.db,
    inTransaction: false,
    write: (fn) => withConflictRetry(() => state.db.transaction().execute((trx) => fn(transactionScope(state.engine, trx)))),
  };
}

/**
 * Transactions through `fenced` (Leadership.inFencedTransaction: the epoch checked in the same
 * transaction, FencedOut thrown when this leader is no longer active). Reads are not fenced.
 */
export function fencedScope(
  state: StateDatabase,
  fenced: <T>(fn: (trx: Transaction<StateTables>) => Promise<T>) => Promise<T>,
): StateScope {
  return {
    engine: state.engine,
    db: state.db,
    inTransaction: false,
    write: (fn) => fenced((trx) => fn(transactionScope(state.engine, trx))),
  };
}
