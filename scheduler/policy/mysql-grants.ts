/**
 * The dataset server adapter: temporary MySQL/MariaDB accounts for runs. Its connections come from
 * storage/sql/mysql-client.ts (the only file that imports mysql2). Statements are built from names already checked by storage/dataset-path.ts (database
 * names) and by this module (account names), and values go through mysql2's escaping. Run accounts
 * get a connection limit and statement limits (RUN_ACCOUNT_LIMITS in dataset-access.ts).
 */
import { mysqlDatabaseProblem } from '../../storage/dataset-path.js';
import { createMysqlConnection, createMysqlPromisePool, type MysqlEndpoint, type MysqlLogin } from '../../storage/sql/mysql-client.js';
import { RUN_ACCOUNT_LIMITS, type DatasetServer, type RunAccount } from './dataset-access.js';

export type { MysqlEndpoint, MysqlLogin };

/** One open connection, in secd's terms (tests, the benchmark and `secd admin` use it). */
export interface MysqlSession {
  /** Run one statement; rows for a SELECT. `params` fill `?` placeholders (escaped by the client). */
  query(sql: string, params?: unknown[]): Promise<unknown[]>;
  /** Log in again on the same connection as `login` (COM_CHANGE_USER). */
  changeUser(login: MysqlLogin): Promise<void>;
  close(): Promise<void>;
}

const ACCOUNT = /^[A-Za-z0-9_]{1,80}$/;

/** Open one connection; rejects with the server's error (e.g. code ER_ACCESS_DENIED_ERROR). */
export async function connectMysql(endpoint: MysqlEndpoint, login: MysqlLogin, database?: string): Promise<MysqlSession> {
  const conn = await createMysqlConnection({ endpoint, login, ...(database ? { database } : {}) });
  return {
    async query(sql, params) {
      const [rows] = await conn.query(sql, params);
      return Array.isArray(rows) ? (rows as unknown[]) : [rows];
    },
    async changeUser(other) {
      await conn.changeUser({ user: other.user, password: other.password });
    },
    async close() {
      await conn.end().catch(() => conn.destroy());
    },
  };
}

/**
 * A database name inside a database-level GRANT: "_" and "%" are wildcards there, so "_" is escaped
 * (names with "%" or a backtick never get this far: the name is checked again, by the rule the
 * dataset store applied when it was registered).
 */
export function grantDatabaseName(db: string): string {
  if (mysqlDatabaseProblem(db) !== null) throw new Error(`refusing to grant on database name ${JSON.stringify(db)}`);
  return `\`${db.replace(/_/g, '\\_')}\``;
}

// 0 means "no limit" to MariaDB: a limit is never turned off by accident.
function wholeAtLeastOne(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new Error(`refusing account limit ${n}: a whole number of at least 1`);
  return n;
}

function positiveSeconds(s: number): number {
  if (!Number.isFinite(s) || s <= 0) throw new Error(`refusing MAX_STATEMENT_TIME ${s}: seconds above 0`);
  return s;
}

function checkAccount(user: string): void {
  if (!ACCOUNT.test(user)) throw new Error(`refusing MySQL account name ${JSON.stringify(user)}`);
}

/** The admin side of the dataset server, over a small connection pool. */
export function createMysqlDatasetServer(endpoint: MysqlEndpoint, admin: MysqlLogin): DatasetServer {
  const pool = createMysqlPromisePool({ endpoint, login: admin, connectionLimit: 2 });
  const run = async (sql: string, params?: unknown[]): Promise<unknown[]> => {
    const [rows] = await pool.query(sql, params);
    return Array.isArray(rows) ? (rows as unknown[]) : [rows];
  };

  return {
    async databaseExists(db) {
      const rows = await run('SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [db]);
      return rows.length > 0;
    },

    async createRunUser(account: RunAccount) {
      checkAccount(account.user);
      // A leftover of the same name (a leader that died mid-way) is replaced, not reused.
      await run("DROP USER IF EXISTS ?@'%'", [account.user]);
      // '%': nodes connect from their own addresses, which the leader does not know in advance.
      // MAX_STATEMENT_TIME is MariaDB's (10.1 and later; seconds, fractions allowed); MySQL 8 has no
      // per-account statement limit, and this statement fails there.
      await run("CREATE USER ?@'%' IDENTIFIED BY ? WITH MAX_USER_CONNECTIONS ? MAX_QUERIES_PER_HOUR ? MAX_STATEMENT_TIME ?", [
        account.user,
        account.password,
        account.maxConnections,
        wholeAtLeastOne(account.maxQueriesPerHour ?? RUN_ACCOUNT_LIMITS.maxQueriesPerHour),
        positiveSeconds(account.maxStatementSeconds ?? RUN_ACCOUNT_LIMITS.maxStatementSeconds),
      ]);
      try {
        for (const db of account.databases) {
          await run(`GRANT SELECT ON ${grantDatabaseName(db)}.* TO ?@'%'`, [account.user]);
        }
      } catch (err) {
        // Never leave an account with half its grants behind.
        await run("DROP USER IF EXISTS ?@'%'", [account.user]).catch(() => undefined);
        throw err;
      }
    },

    async dropRunUser(user) {
      checkAccount(user);
      // Drop first so no new session can start, then end the sessions already open: DROP USER alone
      // leaves them running.
      await run("DROP USER IF EXISTS ?@'%'", [user]);
      const sessions = (await run('SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ?', [user])) as Array<{
        id: number;
      }>;
      for (const { id } of sessions) {
        await run(`KILL CONNECTION ${Number(id)}`).catch(() => undefined);
      }
    },

    async listRunUsers(prefix) {
      const like = `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const rows = (await run("SELECT User AS user FROM mysql.user WHERE User LIKE ? AND Host = '%'", [like])) as Array<{
        user: string | Buffer;
      }>;
      return rows.map((r) => String(r.user));
    },

    async close() {
      await pool.end();
    },
  };
}
