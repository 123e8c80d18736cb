/**
 * The leader lease (DESIGN §11): one row, its holder, a rising epoch and an expiry judged by the
 * database's clock, so leaders whose own clocks disagree still agree on who holds it. Every call is
 * one short transaction, retried when it loses a conflict (conflict-retry.ts): two leaders racing
 * for an expired lease on Galera both update it locally and one loses at commit, retries, and then
 * finds the lease taken.
 *
 * The rules:
 * - acquire: only when the lease has expired (or was released); the epoch rises by one.
 * - renew: only by its holder at its epoch and before it expires; an expired lease is gone, even if
 *   nobody has taken it yet (it is acquired again, with a new epoch).
 * - release: by its holder at its epoch; it expires at once so a standby need not wait.
 * What a lease protects is written through fencing.ts, which checks the epoch in the writing
 * transaction; this file only decides who holds it.
 */
import { sql, type Kysely } from 'kysely';
import { transactionWithRetry, type ConflictRetryOptions } from './conflict-retry.js';
import { databaseNowMs, type StateDatabase } from './state-database.js';
import { LEADER_LEASE } from './state-migrations.js';
import type { StateTables } from './state-tables.js';

/** The lease row as it is now, with the database's clock when it was read. */
export interface LeaseView {
  holder: string;
  epoch: number;
  expiresAtMs: number;
  acquiredAtMs: number;
  renewedAtMs: number;
  /** The database's clock at the read. */
  nowMs: number;
}

/** What an acquire attempt got. */
export type AcquireResult =
  | { won: true; epoch: number; expiresAtMs: number; nowMs: number }
  | { won: false; holder: string; epoch: number; expiresAtMs: number; nowMs: number };

/** One named lease row of a state database (migration 0001 creates `leader`). */
export class LeaderLease {
  constructor(
    private readonly state: StateDatabase,
    private readonly name: string = LEADER_LEASE,
    private readonly retry: ConflictRetryOptions = {},
  ) {}

  /** Take the lease for `holder` for `leaseMs` if it has expired or was released. */
  async acquire(holder: string, leaseMs: number): Promise<AcquireResult> {
    checkHolder(holder);
    checkLeaseMs(leaseMs);
    const now = databaseNowMs(this.state.engine);
    return transactionWithRetry(
      this.state,
      async (trx) => {
        const r = await trx
          .updateTable('secd_lease')
          .set({
            holder,
            epoch: sql<number>`epoch + 1`,
            expires_at_ms: sql<number>`${now} + ${leaseMs}`,
            acquired_at_ms: now,
            renewed_at_ms: now,
          })
          .where('name', '=', this.name)
          .where('expires_at_ms', '<=', now)
          .executeTakeFirst();
        const row = await readRow(trx, this.state, this.name);
        if (Number(r.numUpdatedRows) === 1) return { won: true, epoch: row.epoch, expiresAtMs: row.expiresAtMs, nowMs: row.nowMs };
        return { won: false, holder: row.holder, epoch: row.epoch, expiresAtMs: row.expiresAtMs, nowMs: row.nowMs };
      },
      this.retry,
    );
  }

  /** Extend the lease of `holder` at `epoch` by `leaseMs` from now; false when it is no longer theirs. */
  async renew(holder: string, epoch: number, leaseMs: number): Promise<boolean> {
    checkLeaseMs(leaseMs);
    const now = databaseNowMs(this.state.engine);
    return transactionWithRetry(
      this.state,
      async (trx) => {
        const r = await trx
          .updateTable('secd_lease')
          .set({ expires_at_ms: sql<number>`${now} + ${leaseMs}`, renewed_at_ms: now })
          .where('name', '=', this.name)
          .where('holder', '=', holder)
          .where('epoch', '=', epoch)
          .where('expires_at_ms', '>', now)
          .executeTakeFirst();
        return Number(r.numUpdatedRows) === 1;
      },
      this.retry,
    );
  }

  /** Give the lease up now (it expires at once); false when it was no longer theirs. */
  async release(holder: string, epoch: number): Promise<boolean> {
    return transactionWithRetry(
      this.state,
      async (trx) => {
        const r = await trx
          .updateTable('secd_lease')
          .set({ expires_at_ms: 0 })
          .where('name', '=', this.name)
          .where('holder', '=', holder)
          .where('epoch', '=', epoch)
          .executeTakeFirst();
        return Number(r.numUpdatedRows) === 1;
      },
      this.retry,
    );
  }

  /**
   * Take the lease for `holder` whoever holds it, with a new epoch, and no expiry that anyone else
   * waits on: only for the one process that can reach the state (a SQLite file, `state: sqlite`),
   * which leads from its start. Returns the epoch it now leads.
   */
  async seize(holder: string): Promise<number> {
    checkHolder(holder);
    const now = databaseNowMs(this.state.engine);
    return transactionWithRetry(
      this.state,
      async (trx) => {
        await trx
          .updateTable('secd_lease')
          .set({ holder, epoch: sql<number>`epoch + 1`, acquired_at_ms: now, renewed_at_ms: now, expires_at_ms: 0 })
          .where('name', '=', this.name)
          .executeTakeFirst();
        return (await readRow(trx, this.state, this.name)).epoch;
      },
      this.retry,
    );
  }

  /** The row as it is now. */
  read(): Promise<LeaseView> {
    return readRow(this.state.db, this.state, this.name);
  }
}

/** The lease row `name` (and the database's clock), read through `db` (a transaction or the pool). */
export async function readRow(db: Kysely<StateTables>, state: StateDatabase, name: string): Promise<LeaseView> {
  const row = await db
    .selectFrom('secd_lease')
    .select(['holder', 'epoch', 'expires_at_ms', 'acquired_at_ms', 'renewed_at_ms', databaseNowMs(state.engine).as('now_ms')])
    .where('name', '=', name)
    .executeTakeFirst();
  if (!row) throw new Error(`the state database has no lease row ${JSON.stringify(name)} (was it migrated? storage/sql/state-migrate.ts)`);
  return {
    holder: row.holder,
    epoch: Number(row.epoch),
    expiresAtMs: Number(row.expires_at_ms),
    acquiredAtMs: Number(row.acquired_at_ms),
    renewedAtMs: Number(row.renewed_at_ms),
    nowMs: Number(row.now_ms),
  };
}

function checkHolder(holder: string): void {
  if (holder.length === 0 || holder.length > 255) throw new Error(`a lease holder is 1 to 255 characters (got ${JSON.stringify(holder)})`);
}

function checkLeaseMs(leaseMs: number): void {
  if (!Number.isInteger(leaseMs) || leaseMs < 1) throw new Error(`a lease lasts a whole number of milliseconds, at least 1 (got ${leaseMs})`);
}
