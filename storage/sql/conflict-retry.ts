/**
 * Retrying a whole transaction that lost a conflict. InnoDB picks a victim when two transactions
 * wait on each other (ER_LOCK_DEADLOCK, 1213) and gives up on a long wait (ER_LOCK_WAIT_TIMEOUT,
 * 1205); Galera answers a write set that lost certification at COMMIT with the same 1213. In every
 * case the transaction was rolled back and running it again from its start is correct — so what is
 * retried is always a whole transaction, never a statement inside one.
 *
 * Bounded: a transaction that keeps losing is a bug or an overload, not something to hide; after
 * `attempts` tries the last conflict is thrown as a TransactionConflict naming how many were made.
 */
import type { Transaction } from 'kysely';
import type { StateDatabase } from './state-database.js';
import type { StateTables } from './state-tables.js';

/** MySQL/MariaDB error numbers that mean "rolled back by a conflict: run it again". */
export const CONFLICT_ERRNOS: ReadonlySet<number> = new Set([1213, 1205]);

/** How hard to retry. */
export interface ConflictRetryOptions {
  /** Tries in all, the first included (default 5). */
  attempts?: number;
  /** First pause between tries, doubled each time with jitter, at most 1 s (default 10 ms). */
  baseDelayMs?: number;
  /** Told about each conflict that is retried (for logs and tests). */
  onRetry?: (err: unknown, attempt: number) => void;
}

/** Every try lost a conflict. */
export class TransactionConflict extends Error {
  readonly code = 'TRANSACTION_CONFLICT';
  constructor(
    readonly attempts: number,
    readonly last: unknown,
  ) {
    super(`the transaction lost a lock conflict ${attempts} times in a row (last: ${String((last as Error)?.message ?? last)})`, { cause: last });
    this.name = 'TransactionConflict';
  }
}

/** True when `err` is a conflict the server rolled back (deadlock or lock wait timeout). */
export function isConflict(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { errno?: unknown; code?: unknown };
  return (typeof e.errno === 'number' && CONFLICT_ERRNOS.has(e.errno)) || e.code === 'ER_LOCK_DEADLOCK' || e.code === 'ER_LOCK_WAIT_TIMEOUT';
}

/** Run `attempt` (a whole transaction) until it does not lose a conflict, at most `attempts` times. */
export async function withConflictRetry<T>(attempt: (n: number) => Promise<T>, o: ConflictRetryOptions = {}): Promise<T> {
  const attempts = o.attempts ?? 5;
  if (!Number.isInteger(attempts) || attempts < 1) throw new Error(`attempts must be a whole number of at least 1 (got ${attempts})`);
  const base = o.baseDelayMs ?? 10;
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      if (!isConflict(err)) throw err;
      if (n >= attempts) throw new TransactionConflict(n, err);
      o.onRetry?.(err, n);
      const pause = Math.min(1000, base * 2 ** (n - 1)) * (0.5 + Math.random());
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}

/** `fn` in one transaction of `state`, run again from the start when it loses a conflict. */
export function transactionWithRetry<T>(
  state: StateDatabase,
  fn: (trx: Transaction<StateTables>, attempt: number) => Promise<T>,
  o: ConflictRetryOptions = {},
): Promise<T> {
  return withConflictRetry((n) => state.db.transaction().execute((trx) => fn(trx, n)), o);
}
