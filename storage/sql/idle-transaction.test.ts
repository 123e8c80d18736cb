/**
 * A leader paused inside a transaction does not hold the lease row for long (state-database.ts's
 * idleTransactionTimeoutS, MariaDB's idle_transaction_timeout): the server ends the idle session, so
 * another leader's write of that row goes through within about the timeout, and the paused one's
 * next statement fails instead of committing later.
 */
import { sql } from 'kysely';
import { afterEach, expect, it } from 'vitest';
import { openMysqlState, type StateDatabase } from './state-database.js';
import { migrateState } from './state-migrate.js';
import { LEADER_LEASE } from './state-migrations.js';
import { scratchState, type ScratchState } from '../../test/support/scratch-state.js';
import { MARIADB, MARIADB_ADMIN } from '../../test/support/mariadb.js';

let scratch: ScratchState | null = null;
const pools: StateDatabase[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close().catch(() => undefined);
  await scratch?.dispose();
  scratch = null;
});

function pool(database: string, idleTransactionTimeoutS?: number): StateDatabase {
  const p = openMysqlState({ endpoint: MARIADB, login: MARIADB_ADMIN, database, ...(idleTransactionTimeoutS ? { idleTransactionTimeoutS } : {}) });
  pools.push(p);
  return p;
}

it('a transaction left idle past the timeout is ended by MariaDB and its row lock freed', async () => {
  scratch = await scratchState('mysql');
  const paused = pool(scratch.where, 1);
  await migrateState(paused);
  const other = pool(scratch.where);

  let held!: () => void;
  const release = new Promise<void>((r) => (held = r));
  const pausedTrx = paused.db.transaction().execute(async (trx) => {
    await trx.updateTable('secd_lease').set({ holder: 'paused' }).where('name', '=', LEADER_LEASE).execute();
    await release; // idle inside the transaction, as a SIGSTOPped process would be
    await sql`SELECT 1`.execute(trx);
  });
  const outcome = pausedTrx.then(() => 'committed', (err: unknown) => `failed: ${String(err)}`);
  await new Promise((r) => setTimeout(r, 100));

  const began = Date.now();
  await other.db.updateTable('secd_lease').set({ holder: 'other' }).where('name', '=', LEADER_LEASE).execute();
  const waited = Date.now() - began;
  held();
  expect(await outcome).toMatch(/^failed/);
  // Without the timeout this waits innodb_lock_wait_timeout (50 s by default) and then fails.
  expect(waited).toBeLessThan(10_000);
  const row = await other.db.selectFrom('secd_lease').select('holder').where('name', '=', LEADER_LEASE).executeTakeFirstOrThrow();
  expect(row.holder).toBe('other');
}, 30_000);

it('the timeout must be a whole number of seconds', () => {
  expect(() => openMysqlState({ endpoint: MARIADB, login: MARIADB_ADMIN, database: 'x', idleTransactionTimeoutS: 0.5 })).toThrow(/whole number of seconds/);
});
