/**
 * Opens the leader's state as leader.yml's `state:` says (DESIGN §11) and brings its schema up to
 * date: the embedded SQLite file `<data_dir>/secd.db` (the default; `secd up` always), or a
 * MariaDB/MySQL database that several leaders share. Then the role: the sole leader of a SQLite
 * file, or one contender for the lease of a shared database (leader-role.ts).
 */
import { join } from 'node:path';
import type { Log } from '../../scheduler/common/log.js';
import { openDatabase } from '../../storage/database.js';
import { openMysqlState, stateOverSqlite, type StateDatabase } from '../../storage/sql/state-database.js';
import { migrateState } from '../../storage/sql/state-migrate.js';
import type { HaConfig, StateConfig } from '../config/state-config.js';
import { sharedLeader, soleLeader, type LeaderRole } from './leader-role.js';

/** An open, migrated state database and this process's role on it. */
export interface LeaderState {
  readonly state: StateDatabase;
  readonly role: LeaderRole;
  /** Where it is, for the log: the file, or `mysql://host:port/database`. */
  readonly where: string;
  close(): Promise<void>;
}

/** Open and migrate the state; the role is built but not started. */
export async function openLeaderState(o: { state: StateConfig; ha: HaConfig; dataDir: string; log: Log }): Promise<LeaderState> {
  if (o.state.engine === 'sqlite') {
    const file = join(o.dataDir, 'secd.db');
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
      state,
      role: soleLeader(state, o.log),
      where: file,
      async close() {
        await state.close();
        handle.close();
      },
    };
  }
  const m = o.state;
  const state = openMysqlState({
    endpoint: { host: m.host, port: m.port },
    login: { user: m.user, password: m.password },
    database: m.database,
    // A session paused inside a transaction holds the lease row: the server ends it after a lease.
    idleTransactionTimeoutS: Math.max(1, Math.ceil(o.ha.lease_ms / 1000)),
  });
  const where = `mysql://${m.host}:${m.port}/${m.database}`;
  try {
    await migrateState(state);
  } catch (err) {
    await state.close();
    throw new Error(`could not open the state database ${where}: ${(err as Error).message}`, { cause: err });
  }
  return { state, role: sharedLeader(state, { leaseMs: o.ha.lease_ms, log: o.log.child({ component: 'ha' }) }), where, close: () => state.close() };
}
