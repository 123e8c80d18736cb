/**
 * The stores over a leader's SQLite state file, for tests that look at (or seed) what a leader or
 * `secd admin` left on disk: opened, migrated and scoped exactly as the leader and the admin
 * commands open it (storage/database.ts + stateOverSqlite + migrateState + a plain scope).
 *
 * The better-sqlite3 handle is handed out too, for tests that read the file with raw SQL or set a
 * pragma on it; `close()` closes the Kysely side first, then the handle.
 */
import { openDatabase, type SqliteDatabase } from '../../storage/database.js';
import { stateOverSqlite, type StateDatabase } from '../../storage/sql/state-database.js';
import { migrateState } from '../../storage/sql/state-migrate.js';
import { plainScope } from '../../storage/sql/state-scope.js';
import { stateStores, type StateStores } from '../../storage/state-stores.js';

/** Stores over one state file, its handles, and how to close them. */
export interface StateFile extends StateStores {
  /** The better-sqlite3 handle (raw SQL, pragmas). */
  handle: SqliteDatabase;
  state: StateDatabase;
  close(): Promise<void>;
}

/** Open the state file `file` (created and migrated if needed); `now` is the stores' clock. */
export async function openStateFile(file: string, now: () => Date = () => new Date()): Promise<StateFile> {
  const handle = openDatabase(file);
  const state = stateOverSqlite(handle);
  try {
    await migrateState(state);
  } catch (err) {
    await state.close();
    handle.close();
    throw err;
  }
  return {
    ...stateStores(plainScope(state), now),
    handle,
    state,
    async close() {
      try {
        await state.close();
      } finally {
        handle.close();
      }
    },
  };
}

/** Run `fn` on the stores of the state file `file` and close it afterwards. */
export async function withStateFile<T>(file: string, fn: (stores: StateFile) => Promise<T>, now?: () => Date): Promise<T> {
  const opened = await openStateFile(file, now);
  try {
    return await fn(opened);
  } finally {
    await opened.close();
  }
}
