/**
 * The runs' tables as Kysely sees them (runs, run_events, deliveries, verified_commits,
 * health_probe), and their MySQL DDL. SQLite's DDL stays in storage/migrations.ts (an existing
 * leader's file keeps its schema); the MySQL tables are the same columns in their final shape
 * (after all seven SQLite migrations).
 *
 * Choices made for MySQL/MariaDB:
 * - InnoDB, utf8mb4 with the binary collation: ids, refs, users and shas compare case- and
 *   byte-exactly as they do in SQLite (utf8mb4_bin is a PAD SPACE collation: trailing spaces are
 *   ignored in comparisons, which no git ref, GitLab username, sha or trimmed header value has).
 * - varchar for what is keyed or indexed (an index cannot hold a TEXT column whole), TEXT or
 *   MEDIUMTEXT for prose and JSON. Widths: refs 512 (runs_push is project + ref + two shas and must
 *   fit InnoDB's 3072-byte key), delivery keys 768 (a reconciled push's key holds its ref), ISO times 32.
 *   Under strict SQL mode (MariaDB's default) a longer value is an error, never silently cut.
 * - TEXT columns have no DEFAULT (MySQL refuses literal defaults on them): the run store writes
 *   reason, warnings and gpus on every insert, on both engines.
 * - `runs.seq`: an AUTO_INCREMENT ordering column, because SQLite's queries break ties of
 *   created_at by `rowid`, which MySQL lacks. The stores order by rowid on SQLite and by seq here
 *   (`runsInsertOrder`). It is not in `RunsTable`: SQLite has no such column.
 * - Indexes are created after their table, each only if information_schema does not list it yet
 *   (MySQL has no CREATE INDEX IF NOT EXISTS), so a runner that died half-way can run it again.
 */
import { sql, type Generated, type Kysely, type RawBuilder } from 'kysely';
import type { StateEngine } from './state-engine.js';

/** One run (storage/run-store.ts maps it to RunRow). */
export interface RunsTable {
  id: string;
  project_id: number;
  /** path_with_namespace */
  project: string;
  ref: string;
  before_sha: string;
  commit_sha: string;
  /** GitLab username of the pusher */
  user: string;
  user_id: number | null;
  delivery_key: string | null;
  /** the project's git URL (no credentials) */
  fetch_url: string;
  state: string;
  reason: string;
  /** fingerprint of the head commit's key */
  signer: string | null;
  /** resolved secd.yml (JSON) */
  config: string | null;
  /** JSON array of strings */
  warnings: string;
  node: string | null;
  /** JSON array of GPU uuids */
  gpus: string;
  exit_code: number | null;
  image_id: string | null;
  branch: string | null;
  /** last GitLab commit status state posted */
  status_posted: string | null;
  /** a failed direct run's last build.log lines (migration 7) */
  build_log_tail: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

/** One audit event of a run (append-only). */
export interface RunEventsTable {
  seq: Generated<number>;
  run_id: string;
  at: string;
  from_state: string | null;
  to_state: string;
  reason: string;
}

/** A webhook delivery seen, with the answer given the first time (JSON). */
export interface DeliveriesTable {
  key: string;
  received_at: string;
  event: string;
  outcome: string;
}

/** A commit of a project that passed signature verification. */
export interface VerifiedCommitsTable {
  project_id: number;
  sha: string;
  signer: string;
  verified_at: string;
}

/** The one row /healthz writes to prove the state is writable. */
export interface HealthProbeTable {
  id: number;
  at: string;
}

/** The runs' tables. */
export interface RunTables {
  runs: RunsTable;
  run_events: RunEventsTable;
  deliveries: DeliveriesTable;
  verified_commits: VerifiedCommitsTable;
  health_probe: HealthProbeTable;
}

/** The MySQL column type of a run id (tables that reference runs(id) must use the same). */
export const MYSQL_RUN_ID_TYPE = 'varchar(64)';

/** Table options of every MySQL state table: InnoDB, byte-exact utf8mb4. */
export const MYSQL_TABLE_OPTIONS: RawBuilder<unknown> = sql`ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`;

/** The column that orders runs inserted at the same created_at: rowid on SQLite, seq on MySQL. */
export function runsInsertOrder(engine: StateEngine): RawBuilder<unknown> {
  return sql.ref(engine === 'mysql' ? 'runs.seq' : 'runs.rowid');
}

/** Create index `name` on `table` unless it exists (MySQL: no CREATE INDEX IF NOT EXISTS). */
export async function ensureMysqlIndex(db: Kysely<any>, table: string, name: string, columns: readonly string[]): Promise<void> {
  const { rows } = await sql`SELECT 1 AS present FROM information_schema.statistics
    WHERE table_schema = DATABASE() AND table_name = ${table} AND index_name = ${name} LIMIT 1`.execute(db);
  if (rows.length === 0) await db.schema.createIndex(name).on(table).columns([...columns]).execute();
}

/** Create the runs' tables on MySQL (idempotent). */
export async function createRunTablesMysql(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('runs')
    .ifNotExists()
    .addColumn('id', MYSQL_RUN_ID_TYPE, (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull().autoIncrement().unique())
    .addColumn('project_id', 'bigint', (c) => c.notNull())
    .addColumn('project', 'text', (c) => c.notNull())
    .addColumn('ref', 'varchar(512)', (c) => c.notNull())
    .addColumn('before_sha', 'varchar(64)', (c) => c.notNull())
    .addColumn('commit_sha', 'varchar(64)', (c) => c.notNull())
    .addColumn('user', 'varchar(255)', (c) => c.notNull())
    .addColumn('user_id', 'bigint')
    .addColumn('delivery_key', 'varchar(768)')
    .addColumn('fetch_url', 'text', (c) => c.notNull())
    .addColumn('state', 'varchar(32)', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('signer', 'varchar(255)')
    .addColumn('config', sql`mediumtext`)
    .addColumn('warnings', sql`mediumtext`, (c) => c.notNull())
    .addColumn('node', 'varchar(255)')
    .addColumn('gpus', 'text', (c) => c.notNull())
    .addColumn('exit_code', 'integer')
    .addColumn('image_id', 'varchar(255)')
    .addColumn('branch', 'text')
    .addColumn('status_posted', 'varchar(32)')
    .addColumn('build_log_tail', sql`mediumtext`)
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('started_at', 'varchar(32)')
    .addColumn('finished_at', 'varchar(32)')
    .modifyEnd(MYSQL_TABLE_OPTIONS)
    .execute();
  await ensureMysqlIndex(db, 'runs', 'runs_state', ['state']);
  await ensureMysqlIndex(db, 'runs', 'runs_project', ['project_id', 'created_at']);
  await ensureMysqlIndex(db, 'runs', 'runs_created', ['created_at']);
  await ensureMysqlIndex(db, 'runs', 'runs_push', ['project_id', 'ref', 'before_sha', 'commit_sha']);

  await db.schema
    .createTable('run_events')
    .ifNotExists()
    .addColumn('seq', 'bigint', (c) => c.notNull().autoIncrement().primaryKey())
    .addColumn('run_id', MYSQL_RUN_ID_TYPE, (c) => c.notNull())
    .addColumn('at', 'varchar(32)', (c) => c.notNull())
    .addColumn('from_state', 'varchar(32)')
    .addColumn('to_state', 'varchar(32)', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addForeignKeyConstraint('run_events_run_fk', ['run_id'], 'runs', ['id'])
    .modifyEnd(MYSQL_TABLE_OPTIONS)
    .execute();
  await ensureMysqlIndex(db, 'run_events', 'run_events_run', ['run_id', 'seq']);

  await db.schema
    .createTable('deliveries')
    .ifNotExists()
    .addColumn('key', 'varchar(768)', (c) => c.primaryKey())
    .addColumn('received_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('event', 'varchar(255)', (c) => c.notNull())
    .addColumn('outcome', sql`mediumtext`, (c) => c.notNull())
    .modifyEnd(MYSQL_TABLE_OPTIONS)
    .execute();

  await db.schema
    .createTable('verified_commits')
    .ifNotExists()
    .addColumn('project_id', 'bigint', (c) => c.notNull())
    .addColumn('sha', 'varchar(64)', (c) => c.notNull())
    .addColumn('signer', 'varchar(255)', (c) => c.notNull())
    .addColumn('verified_at', 'varchar(32)', (c) => c.notNull())
    .addPrimaryKeyConstraint('verified_commits_pk', ['project_id', 'sha'])
    .modifyEnd(MYSQL_TABLE_OPTIONS)
    .execute();

  await db.schema
    .createTable('health_probe')
    .ifNotExists()
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('at', 'varchar(32)', (c) => c.notNull())
    .modifyEnd(MYSQL_TABLE_OPTIONS)
    .execute();
}
