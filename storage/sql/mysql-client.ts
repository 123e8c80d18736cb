/**
 * The only file that imports mysql2 (DESIGN §3): every connection secd opens to a MySQL/MariaDB
 * server starts here — the leader's state database (storage/sql/state-database.ts, through Kysely's
 * MysqlDialect, which wants mysql2's callback pool) and the dataset server's admin pool and single
 * sessions (scheduler/policy/mysql-grants.ts, which wants promises). Callers get mysql2's own types:
 * the port in secd's terms is one level up, in those two files.
 */
import mysql from 'mysql2';
import type { Connection as PromiseConnection, Pool as PromisePool } from 'mysql2/promise';

/** Where a MySQL server listens: TCP, or a unix socket. */
export type MysqlEndpoint = { host: string; port: number } | { socketPath: string };

/** A login. */
export interface MysqlLogin {
  user: string;
  password: string;
}

/** What every connection secd opens shares. */
export interface MysqlConnectOptions {
  endpoint: MysqlEndpoint;
  login: MysqlLogin;
  /** Default database of the connection; none when omitted. */
  database?: string;
}

/** A pool's options on top of the connection's. */
export interface MysqlPoolOptions extends MysqlConnectOptions {
  /** Most connections open at once. */
  connectionLimit: number;
}

/** mysql2's callback pool: what Kysely's MysqlDialect drives. */
export type MysqlCallbackPool = mysql.Pool;
/** mysql2's promise pool. */
export type MysqlPromisePool = PromisePool;
/** mysql2's promise connection. */
export type MysqlPromiseConnection = PromiseConnection;

function endpointOptions(endpoint: MysqlEndpoint): { host: string; port: number } | { socketPath: string } {
  return 'socketPath' in endpoint ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port };
}

function commonOptions(o: MysqlConnectOptions) {
  return {
    ...endpointOptions(o.endpoint),
    user: o.login.user,
    password: o.login.password,
    ...(o.database ? { database: o.database } : {}),
    connectTimeout: 10_000,
    // One statement per call: a value can never smuggle in a second one.
    multipleStatements: false,
  };
}

/** MySQL's answer to a SET of a variable the server does not have (MySQL lacks MariaDB's idle_transaction_timeout). */
const ER_UNKNOWN_SYSTEM_VARIABLE = 1193;

/**
 * A callback pool (Kysely's MysqlDialect takes it as is). `sessionInit` statements run first on every
 * new connection, before any query of the pool's users; one the server does not know
 * (ER_UNKNOWN_SYSTEM_VARIABLE) is skipped, any other failure is told to `onInitError`.
 */
export function createMysqlCallbackPool(
  o: MysqlPoolOptions & { sessionInit?: readonly string[]; onInitError?: (statement: string, err: Error) => void },
): MysqlCallbackPool {
  const pool = mysql.createPool({ ...commonOptions(o), connectionLimit: o.connectionLimit, enableKeepAlive: true });
  const init = o.sessionInit ?? [];
  if (init.length > 0) {
    pool.on('connection', (conn) => {
      // Queued on the new connection before the pool hands it out, so they run before anything else.
      for (const statement of init) {
        conn.query(statement, (err: (Error & { errno?: number }) | null) => {
          if (err && err.errno !== ER_UNKNOWN_SYSTEM_VARIABLE) o.onInitError?.(statement, err);
        });
      }
    });
  }
  return pool;
}

/** A promise pool (the dataset server's admin side). */
export function createMysqlPromisePool(o: MysqlPoolOptions): MysqlPromisePool {
  return createMysqlCallbackPool(o).promise();
}

/** One promise connection; rejects with the server's error (e.g. code ER_ACCESS_DENIED_ERROR). */
export function createMysqlConnection(o: MysqlConnectOptions): Promise<MysqlPromiseConnection> {
  return new Promise((resolve, reject) => {
    const conn = mysql.createConnection(commonOptions(o));
    // A session the server ends while it is idle (a run's account dropped, its sessions killed; the
    // server restarted) emits 'error' with no query to reject: without a listener that is an uncaught
    // exception that ends the process. A query in flight still gets the error through its promise, and
    // the session is closed from then on.
    conn.on('error', () => undefined);
    conn.connect((err) => (err ? (conn.destroy(), reject(err)) : resolve(conn.promise())));
  });
}
