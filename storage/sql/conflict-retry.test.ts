/**
 * Retrying a transaction that lost a conflict (storage/sql/conflict-retry.ts): a real InnoDB
 * deadlock between two connections on MariaDB, whose victim is run again and lands; the bound; and
 * errors that are not conflicts passing straight through.
 */
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { isConflict, transactionWithRetry, TransactionConflict, withConflictRetry } from './conflict-retry.js';
import { scratchState, type ScratchState } from '../../test/support/scratch-state.js';

let scratch: ScratchState | null = null;
afterEach(async () => {
  await scratch?.dispose();
  scratch = null;
});

/** Resolves once `open()` has been called. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe('a real deadlock on MariaDB', () => {
  it('two transactions lock two rows in opposite orders: InnoDB kills one, it is run again, and both changes land', async () => {
    scratch = await scratchState('mysql');
    const [a, b] = [scratch.open(), scratch.open()];
    await sql`CREATE TABLE accounts (id INT PRIMARY KEY, balance INT NOT NULL) ENGINE=InnoDB`.execute(a.db);
    await sql`INSERT INTO accounts VALUES (1, 100), (2, 100)`.execute(a.db);
    const aHolds1 = gate();
    const bHolds2 = gate();
    const retried: Array<{ who: string; errno: unknown; attempt: number }> = [];
    const attempts = { a: 0, b: 0 };

    // a moves 10 from 1 to 2, b moves 5 from 2 to 1: on their first try each waits for the other.
    const moveA = transactionWithRetry(
      a,
      async (trx, attempt) => {
        attempts.a = attempt;
        await sql`UPDATE accounts SET balance = balance - 10 WHERE id = 1`.execute(trx);
        if (attempt === 1) {
          aHolds1.open();
          await bHolds2.opened;
        }
        await sql`UPDATE accounts SET balance = balance + 10 WHERE id = 2`.execute(trx);
      },
      { onRetry: (err, attempt) => retried.push({ who: 'a', errno: (err as { errno?: unknown }).errno, attempt }) },
    );
    const moveB = transactionWithRetry(
      b,
      async (trx, attempt) => {
        attempts.b = attempt;
        await sql`UPDATE accounts SET balance = balance - 5 WHERE id = 2`.execute(trx);
        if (attempt === 1) {
          bHolds2.open();
          await aHolds1.opened;
        }
        await sql`UPDATE accounts SET balance = balance + 5 WHERE id = 1`.execute(trx);
      },
      { onRetry: (err, attempt) => retried.push({ who: 'b', errno: (err as { errno?: unknown }).errno, attempt }) },
    );
    await Promise.all([moveA, moveB]);

    // Exactly one victim, told ER_LOCK_DEADLOCK once, and it succeeded on its second try.
    expect(retried).toHaveLength(1);
    expect(retried[0]).toMatchObject({ errno: 1213, attempt: 1 });
    expect(attempts[retried[0]!.who as 'a' | 'b']).toBe(2);
    const { rows } = await sql<{ id: number; balance: number }>`SELECT id, balance FROM accounts ORDER BY id`.execute(a.db);
    expect(rows.map((r) => [r.id, r.balance])).toEqual([
      [1, 95],
      [2, 105],
    ]);
  });
});

describe('the retry bound', () => {
  it('a transaction that loses every time is given up after the bound, naming how many tries were made', async () => {
    let tries = 0;
    const err = await withConflictRetry(
      async () => {
        tries++;
        throw Object.assign(new Error('Deadlock found when trying to get lock; try restarting transaction'), { errno: 1213, code: 'ER_LOCK_DEADLOCK' });
      },
      { attempts: 3, baseDelayMs: 1 },
    ).catch((e: unknown) => e);
    expect(tries).toBe(3);
    expect(err).toBeInstanceOf(TransactionConflict);
    expect((err as Error).message).toBe(
      'the transaction lost a lock conflict 3 times in a row (last: Deadlock found when trying to get lock; try restarting transaction)',
    );
  });

  it('a lock wait timeout is retried too; anything else is thrown at once, untouched', async () => {
    expect(isConflict({ errno: 1205, code: 'ER_LOCK_WAIT_TIMEOUT' })).toBe(true);
    expect(isConflict({ errno: 1062, code: 'ER_DUP_ENTRY' })).toBe(false);
    expect(isConflict(new Error('boom'))).toBe(false);
    let tries = 0;
    const dup = Object.assign(new Error('Duplicate entry'), { errno: 1062 });
    await expect(
      withConflictRetry(async () => {
        tries++;
        throw dup;
      }),
    ).rejects.toBe(dup);
    expect(tries).toBe(1);
    await expect(withConflictRetry(async () => 1, { attempts: 0 })).rejects.toThrow('attempts must be a whole number of at least 1 (got 0)');
  });
});
