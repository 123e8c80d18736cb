/**
 * The leader's state database on either engine, behind one Kysely instance (DESIGN §11):
 * better-sqlite3 (embedded, `state: sqlite`, the default) or MariaDB/MySQL through mysql2
 * (`state: { mysql: … }`, any number of leaders).
 *
 * Why Kysely: a typed query builder that speaks both dialects (SQLite and MySQL) with one query
 * text, keeps SQL visible (no ORM identity map, no hidden queries), has no runtime dependencies and
 * drives the drivers secd already has. Its Migrator is not used: on MySQL it locks with GET_LOCK,
 * which Galera refuses and which fences nothing (state-migrate.ts has the runner).
 *
 * Choices made here:
 * - The SQLite side runs over the handle storage/database.ts opened (the only better-sqlite3
 *   import), so state tables and today's stores share one file and one WAL; closing the
 *   StateDatabase leaves that handle open: its opener closes it.
 * - Kysely runs one SQLite statement or transaction at a time (its driver holds a mutex over the one
 *   connection); MySQL gets a pool, at least two connections (the migration runner holds one for
 *   its lock and migrates on another).
 * - While today's synchronous stores still write through the same SQLite handle, a Kysely
 *   transaction open across an `await` would take their writes into it (better-sqlite3 nests a
 *   transaction inside an open one as a savepoint). So nothing in the leader writes through Kysely
 *   on SQLite until the stores move over together.
 */
import { Kysely, MysqlDialect, SqliteDialect, sql, type RawBuilder } from 'kysely';
import type { SqliteDatabase } from '../database.js';
import { createMysqlCallbackPool, type MysqlEndpoint, type MysqlLogin } from './mysql-client.js';
import type { StateTables } from './state-tables.js';

/** Which engine holds the state. */
export type StateEngine = 'sqlite' | 'mysql';

/** An open state database: the Kysely instance every state store will take, and its engine. */
export interface StateDatabase {
  readonly engine: StateEngine;
  readonly db: Kysely<StateTables>;
  /** Ends the pool (MySQL); on SQLite only Kysely's side: the handle stays its opener's. */
  close(): Promise<void>;
}

/** Kysely over a SQLite handle opened by storage/database.ts. */
export function stateOverSqlite(handle: SqliteDatabase): StateDatabase {
  const db = new Kysely<StateTables>({
    dialect: new SqliteDialect({
      // Kysely's driver closes its database on destroy: hand it a view whose close does nothing.
      database: { prepare: (text: string) => handle.prepare(text), close: () => undefined },
    }),
  });
  return { engine: 'sqlite', db, close: () => db.destroy() };
}

/** Where the MySQL state database is. */
export interface MysqlStateOptions {
  endpoint: MysqlEndpoint;
  login: MysqlLogin;
  database: string;
  /** Pool size; at least 2 (default 8). */
  connectionLimit?: number;
}

/** Kysely over a mysql2 pool on `database` (which must exist: secd does not create databases). */
export function openMysqlState(o: MysqlStateOptions): StateDatabase {
  const connectionLimit = o.connectionLimit ?? 8;
  if (!Number.isInteger(connectionLimit) || connectionLimit < 2) {
    throw new Error(`the MySQL state pool needs at least 2 connections (got ${connectionLimit})`);
  }
  const pool = createMysqlCallbackPool({ endpoint: o.endpoint, login: o.login, database: o.database, connectionLimit });
  const db = new Kysely<StateTables>({ dialect: new MysqlDialect({ pool }) });
  return { engine: 'mysql', db, close: () => db.destroy() };
}

/**
 * The database's clock now, in whole milliseconds since the epoch, as an SQL expression: leases are
 * judged by it so that leaders whose own clocks disagree still agree on who holds one. MySQL's
 * UTC_TIMESTAMP does not depend on the session's time zone (NOW() would, and jumps at DST).
 */
export function databaseNowMs(engine: StateEngine): RawBuilder<number> {
  return engine === 'mysql'
    ? sql<number>`(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)`
    : sql<number>`CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)`;
}

/** Read the database's clock (ms since the epoch). */
export async function readDatabaseNowMs(state: StateDatabase): Promise<number> {
  const { rows } = await sql<{ now_ms: number | string }>`SELECT ${databaseNowMs(state.engine)} AS now_ms`.execute(state.db);
  return Number(rows[0]!.now_ms);
}
