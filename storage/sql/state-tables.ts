/**
 * The tables the leader's state database holds on both engines, as Kysely sees them: the lease and
 * the migration bookkeeping here, the runs' tables in run-tables.ts, nodes, datasets and releases in
 * cluster-tables.ts.
 *
 * Times are whole milliseconds since the epoch by the DATABASE's clock (state-clock.ts): leaders on
 * different machines compare them, and only the database's clock is the same for all of them.
 */
import type { Generated } from 'kysely';
import type { ClusterTables } from './cluster-tables.js';
import type { RunTables } from './run-tables.js';

/** One row per lease (today only `leader`): who holds it, its epoch, until when. */
export interface LeaseTable {
  /** Which lease: `leader`. */
  name: string;
  /** Who holds it (`<hostname>:<pid>:<random>`); '' when nobody ever has or it was released. */
  holder: string;
  /** Rises by one on every takeover; the active leader's fencing token. */
  epoch: number;
  /** Database time (ms) after which anyone may take it; 0 when released. */
  expires_at_ms: number;
  /** Database time (ms) when the current epoch began. */
  acquired_at_ms: number;
  /** Database time (ms) of the last renewal (or the acquisition). */
  renewed_at_ms: number;
  /** Counts fenced transactions: each one writes the row, so Galera certifies it against a takeover. */
  fence_seq: Generated<number>;
}

/** Migrations applied by storage/sql/state-migrate.ts. */
export interface StateMigrationTable {
  name: string;
  applied_at_ms: number;
}

/** The lock row the migration runner holds (one row, id 1). */
export interface StateMigrationLockTable {
  id: number;
  runs: number;
}

/** Every table of the state database Kysely knows about. */
export interface StateTables extends RunTables, ClusterTables {
  secd_lease: LeaseTable;
  secd_state_migrations: StateMigrationTable;
  secd_state_migration_lock: StateMigrationLockTable;
}
