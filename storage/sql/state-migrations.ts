/**
 * The state database's migrations, one list for both engines, written with Kysely's schema builder
 * so the same text gives SQLite and MySQL DDL. Applied in order by state-migrate.ts; a migration is
 * never edited once released, only appended. Each is idempotent where the engine lets it be
 * (`ifNotExists`, `orIgnore`): MySQL commits DDL as it goes, so a runner that died between a
 * migration and its record runs it again.
 *
 * On SQLite the stores' tables come from storage/migrations.ts (`user_version`, applied when the
 * file is opened), so an existing leader's file keeps its schema; on MySQL migration 0002 creates
 * the same tables in their final shape.
 */
import type { Kysely } from 'kysely';
import { createClusterTablesMysql } from './cluster-tables.js';
import { createRunTablesMysql } from './run-tables.js';
import type { StateEngine } from './state-database.js';

/** One step of the schema. */
export interface StateMigration {
  /** Unique and ordered: `NNNN-what`. */
  readonly name: string;
  /** Apply it; `db` is a transaction on SQLite, the pool on MySQL. */
  up(db: Kysely<any>, engine: StateEngine): Promise<void>;
}

/** The name of the one lease the leaders contend for. */
export const LEADER_LEASE = 'leader';

/** Every migration, oldest first. */
export const STATE_MIGRATIONS: readonly StateMigration[] = [
  {
    // The leader lease (DESIGN §11): one row per lease, present from the start so that acquiring is
    // always an UPDATE of an existing row (no insert race between two first leaders).
    name: '0001-leader-lease',
    async up(db) {
      await db.schema
        .createTable('secd_lease')
        .ifNotExists()
        .addColumn('name', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('holder', 'varchar(255)', (c) => c.notNull())
        .addColumn('epoch', 'bigint', (c) => c.notNull())
        .addColumn('expires_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('acquired_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('renewed_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('fence_seq', 'bigint', (c) => c.notNull().defaultTo(0))
        .execute();
      await db
        .insertInto('secd_lease')
        .orIgnore()
        .values({ name: LEADER_LEASE, holder: '', epoch: 0, expires_at_ms: 0, acquired_at_ms: 0, renewed_at_ms: 0 })
        .execute();
    },
  },
  {
    // The stores' tables (runs, deliveries, nodes, datasets, releases) on MySQL; SQLite has them
    // from storage/migrations.ts.
    name: '0002-leader-state',
    async up(db, engine) {
      if (engine !== 'mysql') return;
      await createRunTablesMysql(db);
      await createClusterTablesMysql(db);
    },
  },
];
