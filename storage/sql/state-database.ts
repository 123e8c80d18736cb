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
 * - Every store reads and writes through this one Kysely instance (storage/state-stores.ts), so a
 *   transaction open across an `await` holds the connection and nothing else slips into it.
 */
import { Kysely, MysqlDialect, SqliteDialect, sql, type RawBuilder } from 'kysely';
import type { SqliteDatabase } from '../database.js';
import { createMysqlCallbackPool, type MysqlEndpoint, type MysqlLogin } from './mysql-client.js';
import type { StateTables } from './state-tables.js';

import type { StateEngine } from './state-engine.js';

export type { StateEngine } from './state-engine.js';

/** An open state database: the Kysely instance every state store will take, and its engine. */
export interface StateDatabase {
  readonly engine: StateEngine;
  readonly db: Kysely<StateTables>;
  /** Ends the pool (MySQL); on SQLite only Kysely's side: the handle stays its opener's. */
  close(): Promise<void>;
}

/** How many prepared SQLite statements are kept. */
const STATEMENT_CACHE_SIZE = 500;

/** Kysely over a SQLite handle opened by storage/database.ts. */
export function stateOverSqlite(handle: SqliteDatabase): StateDatabase {
  // Preparing is most of a short query's cost (the webhook answer runs several): statements are kept
  // by their text. Kysely runs one statement at a time on this connection, so sharing one is safe.
  // The texts are few (IN lists vary by count), and the map is emptied should it ever grow large.
  const statements = new Map<string, ReturnType<SqliteDatabase['prepare']>>();
  const prepare = (text: string) => {
    let stmt = statements.get(text);
    if (!stmt) {
      if (statements.size >= STATEMENT_CACHE_SIZE) statements.clear();
      stmt = handle.prepare(text);
      statements.set(text, stmt);
    }
    return stmt;
  };
  const db = new Kysely<StateTables>({
    dialect: new SqliteDialect({
      // Kysely's driver closes its database on destroy: hand it a view whose close does nothing.
      database: { prepare, close: () => undefined },
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
  /**
   * Seconds after which the server ends a session left idle inside an open transaction (MariaDB's
   * idle_transaction_timeout; MySQL has no such variable and skips it). A leader paused (SIGSTOP, a
   * frozen VM) in the middle of a fenced transaction keeps the lease row locked while its session
   * lives, so a standby's takeover would wait on that lock; the server ends such a session instead.
   * Also the session's innodb_lock_wait_timeout, so no statement waits on a lock longer.
   */
  idleTransactionTimeoutS?: number;
}

/** Kysely over a mysql2 pool on `database` (which must exist: secd does not create databases). */
export function openMysqlState(o: MysqlStateOptions): StateDatabase {
  const connectionLimit = o.connectionLimit ?? 8;
  if (!Number.isInteger(connectionLimit) || connectionLimit < 2) {
    throw new Error(`the MySQL state pool needs at least 2 connections (got ${connectionLimit})`);
  }
  const idle = o.idleTransactionTimeoutS;
  if (idle !== undefined && (!Number.isInteger(idle) || idle < 1)) throw new Error(`idleTransactionTimeoutS must be a whole number of seconds, at least 1 (got ${idle})`);
  const sessionInit = idle === undefined ? [] : [`SET SESSION idle_transaction_timeout = ${idle}`, `SET SESSION innodb_lock_wait_timeout = ${idle}`];
  const pool = createMysqlCallbackPool({ endpoint: o.endpoint, login: o.login, database: o.database, connectionLimit, sessionInit });
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
