/**
 * Temporary run accounts on the real MariaDB: SELECT on exactly the granted databases, nothing else,
 * statement limits, and gone (sessions included) once dropped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountExists, adminSession, cleanUp, loginError, MARIADB, MARIADB_ADMIN, seedDatabase, testTag } from '../../test/support/mariadb.js';
import { RUN_ACCOUNT_LIMITS } from './dataset-access.js';
import { connectMysql, createMysqlDatasetServer } from './mysql-grants.js';

/** An account's limits as the server keeps them. */
async function limitsOf(user: string): Promise<{ statementSeconds: number; queriesPerHour: number; connections: number }> {
  const admin = await adminSession();
  try {
    const rows = (await admin.query(
      "SELECT max_statement_time AS s, max_questions AS q, max_user_connections AS c FROM mysql.user WHERE User = ? AND Host = '%'",
      [user],
    )) as Array<{ s: string | number; q: string | number; c: string | number }>;
    return { statementSeconds: Number(rows[0]!.s), queriesPerHour: Number(rows[0]!.q), connections: Number(rows[0]!.c) };
  } finally {
    await admin.close();
  }
}

const tag = testTag();
const prefix = `secdg${tag}_`;
const granted = `secdg_${tag}_sales`;
// What the last "_" of the granted name would match if it were left a wildcard in the GRANT.
const lookalike = `secdg_${tag}Xsales`;
const secret = `secdg_${tag}_hr`;

async function rejectsWith(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
  return 'it worked';
}

describe('temporary MySQL accounts', () => {
  const server = createMysqlDatasetServer(MARIADB, MARIADB_ADMIN);
  const account = { user: `${prefix}run1`, password: 'Pw-' + tag + '-x9Y8z7W6v5U4', databases: [granted], maxConnections: 2 };

  beforeAll(async () => {
    for (const db of [granted, secret, lookalike]) {
      await seedDatabase(db, ['CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(10))', "INSERT INTO {db}.t VALUES (1, 'one')"]);
    }
    await server.createRunUser(account);
  });
  afterAll(async () => {
    await server.close();
    await cleanUp([granted, secret, lookalike], prefix);
  });

  it('reads the granted database and nothing else', async () => {
    const s = await connectMysql(MARIADB, account);
    try {
      expect(await s.query(`SELECT v FROM \`${granted}\`.t`)).toEqual([{ v: 'one' }]);
      expect(await rejectsWith(s.query(`SELECT v FROM \`${secret}\`.t`))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      // "_" in the granted name is not a wildcard: the X look-alike stays closed.
      expect(await rejectsWith(s.query(`SELECT v FROM \`${lookalike}\`.t`))).toBe('ER_TABLEACCESS_DENIED_ERROR');
    } finally {
      await s.close();
    }
  });

  it('cannot write, change or drop anything', async () => {
    const s = await connectMysql(MARIADB, account, granted);
    try {
      expect(await rejectsWith(s.query("INSERT INTO t VALUES (2, 'two')"))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      expect(await rejectsWith(s.query("UPDATE t SET v = 'x'"))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      expect(await rejectsWith(s.query('DELETE FROM t'))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      expect(await rejectsWith(s.query('DROP TABLE t'))).toBe('ER_TABLEACCESS_DENIED_ERROR');
      expect(await rejectsWith(s.query(`DROP DATABASE \`${granted}\``))).toBe('ER_DBACCESS_DENIED_ERROR');
      expect(await rejectsWith(s.query(`CREATE USER 'x${tag}'@'%'`))).toMatch(/DENIED/);
    } finally {
      await s.close();
    }
  });

  it('has a connection limit', async () => {
    const a = await connectMysql(MARIADB, account);
    const b = await connectMysql(MARIADB, account);
    try {
      expect(await loginError(MARIADB, account)).toBe('ER_USER_LIMIT_REACHED');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('has the default statement limits, which a run can live with', async () => {
    expect(await limitsOf(account.user)).toEqual({
      statementSeconds: RUN_ACCOUNT_LIMITS.maxStatementSeconds,
      queriesPerHour: RUN_ACCOUNT_LIMITS.maxQueriesPerHour,
      connections: 2,
    });
  });

  it('cannot keep the shared server busy: a statement over its time limit is stopped, and past its hourly count nothing runs', async () => {
    const limited = { user: `${prefix}busy`, password: account.password, databases: [granted], maxConnections: 2, maxStatementSeconds: 0.5, maxQueriesPerHour: 6 };
    await server.createRunUser(limited);
    const s = await connectMysql(MARIADB, limited);
    try {
      expect(await limitsOf(limited.user)).toEqual({ statementSeconds: 0.5, queriesPerHour: 6, connections: 2 });
      // SLEEP(30) would return 0 after 30 s; the limit interrupts it (MariaDB's error 1969, which
      // mysql2 has no name for).
      const slept = await s.query('SELECT SLEEP(30)').then(
        () => 'it worked',
        (err: { errno?: number; message?: string }) => `${err.errno}: ${err.message}`,
      );
      expect(slept).toMatch(/^1969: .*max_statement_time exceeded/);
      const codes: string[] = [];
      for (let i = 0; i < 8; i++) codes.push(await rejectsWith(s.query(`SELECT v FROM \`${granted}\`.t`)));
      expect(codes).toContain('ER_USER_LIMIT_REACHED');
      expect(codes.slice(codes.indexOf('ER_USER_LIMIT_REACHED'))).toEqual(codes.slice(codes.indexOf('ER_USER_LIMIT_REACHED')).map(() => 'ER_USER_LIMIT_REACHED'));
    } finally {
      await s.close();
      await server.dropRunUser(limited.user);
    }
  });

  it('is listed by prefix, and once dropped cannot log in, does not exist, and its open session is ended', async () => {
    expect(await server.listRunUsers(prefix)).toEqual([account.user]);
    const open = await connectMysql(MARIADB, account);
    await server.dropRunUser(account.user);
    expect(await rejectsWith(open.query('SELECT 1'))).not.toBe('it worked');
    await open.close();
    expect(await loginError(MARIADB, account)).toMatch(/^ER_ACCESS_DENIED/);
    expect(await accountExists(account.user)).toBe(false);
    expect(await server.listRunUsers(prefix)).toEqual([]);
  });
});
