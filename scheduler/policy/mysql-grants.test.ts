/**
 * Temporary run accounts on the real MariaDB: SELECT on exactly the granted databases, nothing else,
 * and gone (sessions included) once dropped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountExists, cleanUp, loginError, MARIADB, MARIADB_ADMIN, seedDatabase, testTag } from '../../test/support/mariadb.js';
import { connectMysql, createMysqlDatasetServer } from './mysql-grants.js';

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
