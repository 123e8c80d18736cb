/**
 * Brings a state database's schema up to date on either engine (state-migrations.ts's list), safe
 * when several leaders start at once against one MySQL database.
 *
 * How it locks, per engine (Kysely's own Migrator is not used: it takes GET_LOCK on MySQL, which
 * Galera refuses):
 * - SQLite: one transaction whose first statement writes the lock row, so it holds SQLite's write
 *   lock before it reads which migrations are applied; DDL is transactional there, so a migration
 *   and its record commit together.
 * - MySQL: DDL commits implicitly, so the lock cannot live in the migrating transaction. One pooled
 *   connection holds `UPDATE … lock row` open in a transaction (InnoDB row lock) while a second one
 *   reads, migrates and records; a second runner waits on that row, then finds nothing left to do.
 *   On Galera the row lock is local to one cluster node: start upgraded leaders one at a time.
 */
import { sql, type Kysely } from 'kysely';
import { databaseNowMs, type StateDatabase } from './state-database.js';
import { STATE_MIGRATIONS, type StateMigration } from './state-migrations.js';
import type { StateTables } from './state-tables.js';

/** What a run of the migrator did. */
export interface MigrateOutcome {
  /** Migrations this call applied, in order (empty when the schema was already current). */
  applied: string[];
}

/** The database holds migrations this secd does not know: it was migrated by a newer one. */
export class SchemaTooNew extends Error {
  readonly code = 'SCHEMA_TOO_NEW';
  constructor(readonly unknown: readonly string[]) {
    super(`the state database was migrated by a newer secd (unknown migrations: ${unknown.join(', ')}); upgrade this secd`);
    this.name = 'SchemaTooNew';
  }
}

/** Apply every migration of `migrations` (default: all of secd's) that `state` lacks. */
export async function migrateState(state: StateDatabase, migrations: readonly StateMigration[] = STATE_MIGRATIONS): Promise<MigrateOutcome> {
  checkNames(migrations);
  await createBookkeeping(state.db);
  if (state.engine === 'sqlite') {
    return state.db.transaction().execute(async (trx) => {
      await takeLockRow(trx);
      return applyPending(state, trx, migrations);
    });
  }
  return state.db.connection().execute((lockConn) =>
    lockConn.transaction().execute(async (lockTrx) => {
      await takeLockRow(lockTrx);
      return applyPending(state, state.db, migrations);
    }),
  );
}

/** The names of the migrations `state` has applied, in the order they were applied. */
export async function appliedMigrations(db: Kysely<StateTables>): Promise<string[]> {
  const rows = await db.selectFrom('secd_state_migrations').select(['name']).orderBy('applied_at_ms').orderBy('name').execute();
  return rows.map((r) => r.name);
}

function checkNames(migrations: readonly StateMigration[]): void {
  const seen = new Set<string>();
  for (const m of migrations) {
    if (!/^\d{4}-[a-z0-9-]+$/.test(m.name)) throw new Error(`migration name ${JSON.stringify(m.name)} is not NNNN-words`);
    if (seen.has(m.name)) throw new Error(`migration ${m.name} is listed twice`);
    seen.add(m.name);
  }
}

async function createBookkeeping(db: Kysely<StateTables>): Promise<void> {
  // Idempotent, and harmless when two runners race: both tables and the row exist either way.
  await db.schema
    .createTable('secd_state_migrations')
    .ifNotExists()
    .addColumn('name', 'varchar(128)', (c) => c.primaryKey())
    .addColumn('applied_at_ms', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('secd_state_migration_lock')
    .ifNotExists()
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('runs', 'bigint', (c) => c.notNull())
    .execute();
  await db.insertInto('secd_state_migration_lock').orIgnore().values({ id: 1, runs: 0 }).execute();
}

async function takeLockRow(db: Kysely<StateTables>): Promise<void> {
  await db
    .updateTable('secd_state_migration_lock')
    .set({ runs: sql<number>`runs + 1` })
    .where('id', '=', 1)
    .execute();
}

async function applyPending(state: StateDatabase, db: Kysely<StateTables>, migrations: readonly StateMigration[]): Promise<MigrateOutcome> {
  const done = new Set(await appliedMigrations(db));
  const known = new Set(migrations.map((m) => m.name));
  const unknown = [...done].filter((n) => !known.has(n));
  if (unknown.length > 0) throw new SchemaTooNew(unknown);
  const applied: string[] = [];
  for (const m of migrations) {
    if (done.has(m.name)) continue;
    await m.up(db as Kysely<any>, state.engine);
    await db
      .insertInto('secd_state_migrations')
      .values({ name: m.name, applied_at_ms: databaseNowMs(state.engine) })
      .execute();
    applied.push(m.name);
  }
  return { applied };
}
