/**
 * The state database's migration runner on both engines (storage/sql/state-migrate.ts): a fresh
 * database gets every migration once, an up-to-date one nothing, a newer one is refused by name,
 * and two leaders starting together against one MariaDB database apply each migration once.
 */
import { sql, type Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { appliedMigrations, migrateState, SchemaTooNew } from './state-migrate.js';
import { LEADER_LEASE, STATE_MIGRATIONS, type StateMigration } from './state-migrations.js';
import { scratchState, STATE_ENGINES, type ScratchState } from '../../test/support/scratch-state.js';

let scratch: ScratchState | null = null;
afterEach(async () => {
  await scratch?.dispose();
  scratch = null;
});

/** A migration that counts how often it really ran, and takes its time doing it. */
function countedMigration(name: string, table: string, runs: { n: number }, pauseMs = 0): StateMigration {
  return {
    name,
    async up(db: Kysely<any>) {
      runs.n++;
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      await db.schema.createTable(table).addColumn('id', 'integer', (c) => c.primaryKey()).execute();
    },
  };
}

async function tableNames(db: Kysely<any>): Promise<string[]> {
  return (await db.introspection.getTables()).map((t) => t.name).sort();
}

describe.each(STATE_ENGINES)('state migrations on %s', (engine) => {
  it('a fresh database gets every migration once, with the leader lease row, and a second run applies nothing', async () => {
    scratch = await scratchState(engine);
    const state = scratch.open();
    const first = await migrateState(state);
    expect(first.applied).toEqual(STATE_MIGRATIONS.map((m) => m.name));
    expect(await appliedMigrations(state.db)).toEqual(STATE_MIGRATIONS.map((m) => m.name));
    expect(await tableNames(state.db)).toEqual(expect.arrayContaining(['secd_lease', 'secd_state_migrations', 'secd_state_migration_lock']));
    const lease = await state.db.selectFrom('secd_lease').selectAll().execute();
    expect(lease.map((r) => ({ name: r.name, holder: r.holder, epoch: Number(r.epoch) }))).toEqual([{ name: LEADER_LEASE, holder: '', epoch: 0 }]);

    expect((await migrateState(state)).applied).toEqual([]);
  });

  it('a migration added later is applied on the next start, after the ones already there', async () => {
    scratch = await scratchState(engine);
    const state = scratch.open();
    await migrateState(state);
    const runs = { n: 0 };
    const later = [...STATE_MIGRATIONS, countedMigration('9001-probe-table', 'probe_table', runs)];
    expect((await migrateState(state, later)).applied).toEqual(['9001-probe-table']);
    expect((await migrateState(state, later)).applied).toEqual([]);
    expect(runs.n).toBe(1);
    expect(await tableNames(state.db)).toContain('probe_table');
  });

  it('a database migrated by a newer secd is refused, naming the migration it does not know', async () => {
    scratch = await scratchState(engine);
    const state = scratch.open();
    await migrateState(state, [...STATE_MIGRATIONS, countedMigration('9002-from-the-future', 'future_table', { n: 0 })]);
    const err = await migrateState(state).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaTooNew);
    expect((err as Error).message).toContain('9002-from-the-future');
  });

  it('a migration that fails is not recorded, and the next start applies it', async () => {
    scratch = await scratchState(engine);
    const state = scratch.open();
    let fail = true;
    const flaky: StateMigration = {
      name: '9003-flaky',
      async up(db: Kysely<any>) {
        if (fail) throw new Error('disk full (pretend)');
        await db.schema.createTable('flaky_table').addColumn('id', 'integer').execute();
      },
    };
    await expect(migrateState(state, [...STATE_MIGRATIONS, flaky])).rejects.toThrow('disk full (pretend)');
    expect(await appliedMigrations(state.db)).not.toContain('9003-flaky');
    fail = false;
    expect((await migrateState(state, [...STATE_MIGRATIONS, flaky])).applied).toEqual(
      engine === 'sqlite' ? [...STATE_MIGRATIONS.map((m) => m.name), '9003-flaky'] : ['9003-flaky'],
    );
  });

  it('refuses a migration list with a name listed twice', async () => {
    scratch = await scratchState(engine);
    const twice = [STATE_MIGRATIONS[0]!, STATE_MIGRATIONS[0]!];
    await expect(migrateState(scratch.open(), twice)).rejects.toThrow(`migration ${STATE_MIGRATIONS[0]!.name} is listed twice`);
  });
});

describe('state migrations on mysql, two leaders starting at once', () => {
  it('each migration runs exactly once: the second runner waits on the lock row, then finds nothing to do', async () => {
    scratch = await scratchState('mysql');
    const [a, b] = [scratch.open(), scratch.open()];
    const runs = { n: 0 };
    const list = [...STATE_MIGRATIONS, countedMigration('9004-slow', 'slow_table', runs, 400)];
    const [ra, rb] = await Promise.all([migrateState(a, list), migrateState(b, list)]);
    expect(runs.n).toBe(1);
    expect([...ra.applied, ...rb.applied].sort()).toEqual(list.map((m) => m.name).sort());
    // One of them did all the work; the other waited and applied nothing.
    expect([ra.applied.length, rb.applied.length].sort()).toEqual([0, list.length]);
    const { rows } = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM secd_state_migrations`.execute(a.db);
    expect(Number(rows[0]!.n)).toBe(list.length);
  });
});
