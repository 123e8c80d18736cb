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

/** An open, migrated state database without a role (`secd admin`, `secd admin state copy`). */
export interface OpenState {
  readonly state: StateDatabase;
  readonly where: string;
  close(): Promise<void>;
}

/**
 * Open and migrate the state `state:` names. `leaseMs` sets how long the MySQL server lets a session
 * sit idle inside a transaction (a paused leader holding the lease row); none for `secd admin`.
 */
export async function openStateDatabase(o: { state: StateConfig; dataDir: string; leaseMs?: number }): Promise<OpenState> {
  if (o.state.engine === 'sqlite') {
    const file = join(o.dataDir, 'secd.db');
    const handle = openDatabase(file);
    const state = stateOverSqlite(handle);
    const close = async () => {
      await state.close();
      handle.close();
    };
    try {
      await migrateState(state);
    } catch (err) {
      await close();
      throw err;
    }
    return { state, where: file, close };
  }
  const m = o.state;
  const state = openMysqlState({
    endpoint: { host: m.host, port: m.port },
    login: { user: m.user, password: m.password },
    database: m.database,
    // A session paused inside a transaction holds the lease row: the server ends it after a lease.
    ...(o.leaseMs !== undefined ? { idleTransactionTimeoutS: Math.max(1, Math.ceil(o.leaseMs / 1000)) } : {}),
  });
  const where = `mysql://${m.host}:${m.port}/${m.database}`;
  try {
    await migrateState(state);
  } catch (err) {
    await state.close();
    throw new Error(`could not open the state database ${where}: ${(err as Error).message}`, { cause: err });
  }
  return { state, where, close: () => state.close() };
}

/** Open and migrate the state; the role is built but not started. */
export async function openLeaderState(o: { state: StateConfig; ha: HaConfig; dataDir: string; log: Log }): Promise<LeaderState> {
  const opened = await openStateDatabase({ state: o.state, dataDir: o.dataDir, leaseMs: o.ha.lease_ms });
  const role = opened.state.engine === 'sqlite' ? soleLeader(opened.state, o.log) : sharedLeader(opened.state, { leaseMs: o.ha.lease_ms, log: o.log.child({ component: 'ha' }) });
  return { ...opened, role };
}
