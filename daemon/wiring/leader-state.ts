/**
 * Opens the leader's state as leader.yml's `state:` says (DESIGN §11) and brings its schema up to
 * date: the embedded SQLite file `<data_dir>/secd.db` (the default; `secd up` always), or a
 * MariaDB/MySQL database that several leaders share. Then the role: the sole leader of a SQLite
 * file, or one contender for the lease of a shared database (leader-role.ts).
 *
 * A leader whose MySQL state server does not answer (down, restarting, not reachable yet at boot)
 * waits for it, saying so every 30 s, instead of exiting: systemd gives up on a unit that fails five
 * starts in ten minutes, and a database outage would otherwise leave every leader dead until an
 * operator came. A refusal that waiting cannot fix (a wrong password, no such database) still
 * fails the start at once, naming it.
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

/** Connection failures that mean "the server is not there (yet)", worth waiting out. */
const UNREACHABLE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'PROTOCOL_CONNECTION_LOST', 'ER_CON_COUNT_ERROR', 'ER_SERVER_SHUTDOWN',
]);

/** True when `err` (or what caused it) says the database server could not be reached. */
export function isStateUnreachable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && UNREACHABLE.has(code)) return true;
  }
  return false;
}

/** How a leader waits for an unreachable state server. */
export interface StateWait {
  /** Pause between tries (default 2000 ms). */
  retryMs?: number;
  /** How often the wait is logged (default 30 s; the first failure always is). */
  sayEveryMs?: number;
}

/** Open and migrate the state, waiting for a MySQL server that does not answer; the role is built but not started. */
export async function openLeaderState(o: { state: StateConfig; ha: HaConfig; dataDir: string; log: Log; wait?: StateWait }): Promise<LeaderState> {
  const retryMs = o.wait?.retryMs ?? 2000;
  const sayEveryMs = o.wait?.sayEveryMs ?? 30_000;
  let opened: OpenState | null = null;
  let saidAt = -Infinity;
  const began = Date.now();
  while (!opened) {
    try {
      opened = await openStateDatabase({ state: o.state, dataDir: o.dataDir, leaseMs: o.ha.lease_ms });
    } catch (err) {
      if (o.state.engine !== 'mysql' || !isStateUnreachable(err)) throw err;
      if (Date.now() - saidAt >= sayEveryMs) {
        saidAt = Date.now();
        o.log.warn({ err: (err as Error).message, waited_ms: Date.now() - began }, 'waiting for the state database (it does not answer)');
      }
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }
  if (saidAt > -Infinity) o.log.info({ waited_ms: Date.now() - began, state: opened.where }, 'the state database answers');
  const role = opened.state.engine === 'sqlite' ? soleLeader(opened.state, o.log) : sharedLeader(opened.state, { leaseMs: o.ha.lease_ms, log: o.log.child({ component: 'ha' }) });
  return { ...opened, role };
}
