/**
 * A throw-away state database on either engine, for tests that must hold on both (storage/sql):
 * a SQLite file in a temporary folder (opened by storage/database.ts, as the leader opens it), or a
 * database with a random name on the test MariaDB (test/support/mariadb.ts), dropped afterwards.
 * `open()` gives another independent handle or pool on the same database — a second leader.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type SqliteDatabase } from '../../storage/database.js';
import { openMysqlState, stateOverSqlite, type StateDatabase, type StateEngine } from '../../storage/sql/state-database.js';
import { adminSession, MARIADB, MARIADB_ADMIN, testTag } from './mariadb.js';
import { migrateState } from '../../storage/sql/state-migrate.js';
import { plainScope } from '../../storage/sql/state-scope.js';
import { stateStores, type StateStores } from '../../storage/state-stores.js';

/** Both engines, for `describe.each`. */
export const STATE_ENGINES: readonly StateEngine[] = ['sqlite', 'mysql'];

/** One scratch database and every handle opened on it. */
export interface ScratchState {
  engine: StateEngine;
  /** SQLite: the file; MySQL: the database name. */
  where: string;
  /** A new handle (SQLite) or pool (MySQL) on the database. */
  open(): StateDatabase;
  /** Close every handle and remove the database. */
  dispose(): Promise<void>;
}

/** A fresh, empty state database on `engine`. */
export async function scratchState(engine: StateEngine): Promise<ScratchState> {
  const closers: Array<() => Promise<void>> = [];
  if (engine === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'secd-state-'));
    const file = join(dir, 'secd.db');
    return {
      engine,
      where: file,
      open() {
        const handle: SqliteDatabase = openDatabase(file);
        const state = stateOverSqlite(handle);
        closers.push(async () => {
          await state.close();
          handle.close();
        });
        return state;
      },
      async dispose() {
        for (const c of closers.splice(0)) await c().catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const database = `secd_state_${testTag()}`;
  const admin = await adminSession();
  try {
    await admin.query(`CREATE DATABASE \`${database}\``);
  } finally {
    await admin.close();
  }
  return {
    engine,
    where: database,
    open() {
      const state = openMysqlState({ endpoint: MARIADB, login: MARIADB_ADMIN, database });
      closers.push(() => state.close());
      return state;
    },
    async dispose() {
      for (const c of closers.splice(0)) await c().catch(() => undefined);
      const a = await adminSession();
      try {
        await a.query(`DROP DATABASE IF EXISTS \`${database}\``);
      } finally {
        await a.close();
      }
    },
  };
}

/** A migrated scratch database on `engine` with every store over it (plain, unfenced writes). */
export interface ScratchStores extends StateStores {
  state: StateDatabase;
  /** The scratch database (another handle: `scratch.open()`). */
  scratch: ScratchState;
  /** Close it and remove the database. */
  dispose(): Promise<void>;
}

/** Fresh stores on `engine` (default SQLite), as the leader builds them. */
export async function scratchStores(engine: StateEngine = 'sqlite', now: () => Date = () => new Date()): Promise<ScratchStores> {
  const scratch = await scratchState(engine);
  const state = scratch.open();
  await migrateState(state);
  return { ...stateStores(plainScope(state), now), state, scratch, dispose: () => scratch.dispose() };
}

/**
 * Stores over an in-memory SQLite database, migrated: the quick kind for unit tests of code above
 * the stores. Nothing to dispose beyond `close()`.
 */
export async function memoryStores(now: () => Date = () => new Date()): Promise<StateStores & { state: StateDatabase; close(): Promise<void> }> {
  const handle = openDatabase(':memory:');
  const state = stateOverSqlite(handle);
  await migrateState(state);
  return {
    ...stateStores(plainScope(state), now),
    state,
    async close() {
      await state.close();
      handle.close();
    },
  };
}
