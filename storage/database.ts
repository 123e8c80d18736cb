/**
 * Opens the leader's SQLite database (WAL) and brings its schema up to date.
 * The only file that imports better-sqlite3 (it hands its path to wal-checkpointer.ts's worker).
 */
import Database from 'better-sqlite3';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { MIGRATIONS } from './migrations.js';
import { startWalCheckpointer } from './wal-checkpointer.js';

/** Where the SQLite library is: the checkpointer's worker loads it from there. */
export const SQLITE_MODULE = createRequire(import.meta.url).resolve('better-sqlite3');

/** How often the checkpointer folds the WAL back into a file database. */
const CHECKPOINT_EVERY_MS = 1000;

/** The database handle every store receives; main opens it once and hands it down. */
export type SqliteDatabase = Database.Database;
/** A prepared statement of it, taking positional or named parameters. */
export type SqliteStatement = Database.Statement<unknown[]>;

/** Open (creating if needed) the database at `path` (":memory:" for tests) and migrate it. */
export function openDatabase(path: string): SqliteDatabase {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // NORMAL is durable across process crashes in WAL mode; only power loss can drop the last commit.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  if (path !== ':memory:') {
    // Checkpoints fsync; they run in a worker, not inside whichever commit crosses the threshold
    // (that was a webhook answer's p99: see wal-checkpointer.ts).
    db.pragma('wal_autocheckpoint = 0');
    const checkpointer = startWalCheckpointer(path, CHECKPOINT_EVERY_MS, SQLITE_MODULE);
    const close = db.close.bind(db);
    db.close = () => {
      checkpointer.stop();
      return close();
    };
  }
  return db;
}

/** Apply every migration newer than the database's `user_version`, each in its own transaction. */
export function migrate(db: SqliteDatabase): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (const [index, sql] of MIGRATIONS.entries()) {
    const version = index + 1;
    if (version <= current) continue;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version}`);
    })();
  }
}

/** What a backup holds: its schema version and size, for the operator's log. */
export interface BackupSummary {
  userVersion: number;
  bytes: number;
}

/**
 * Online backup of the database at `source` into `destination` (SQLite's backup API: consistent
 * while the leader keeps writing). The source is opened read-only and never migrated or created, so
 * a backup taken with a newer secd cannot change the live schema under a running leader. The copy
 * lands under a temporary name and is renamed once `quick_check` passes.
 */
export async function backupDatabase(source: string, destination: string): Promise<BackupSummary> {
  const partial = `${destination}.partial-${process.pid}`;
  try {
    const db = new Database(source, { readonly: true, fileMustExist: true });
    try {
      await db.backup(partial);
    } finally {
      db.close();
    }
    const copy = new Database(partial, { readonly: true, fileMustExist: true });
    let userVersion: number;
    try {
      const check = copy.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new Error(`the copy failed SQLite's quick_check: ${String(check)}`);
      userVersion = copy.pragma('user_version', { simple: true }) as number;
    } finally {
      copy.close();
    }
    renameSync(partial, destination);
    return { userVersion, bytes: statSync(destination).size };
  } catch (err) {
    rmSync(partial, { force: true });
    throw err;
  }
}
