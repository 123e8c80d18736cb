/**
 * The sysadmin guide's MySQL admin account (docs/sysadmin.md, section 5) is enough for secd, and
 * the run accounts it creates see only their datasets: the guide's own SQL, run on the real
 * MariaDB, then secd's dataset-server adapter logged in as that account.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectMysql, createMysqlDatasetServer, type MysqlSession } from '../../scheduler/policy/mysql-grants.js';
import type { DatasetServer } from '../../scheduler/policy/dataset-access.js';

const SERVER = { host: '127.0.0.1', port: 3306 };
const ROOT = { user: 'root', password: '' };
const GUIDE = resolve(import.meta.dirname, '../../docs/sysadmin.md');

/** The statements of the guide's admin-account SQL block, with this test's names put in. */
async function guideStatements(names: { admin: string; password: string; database: string }): Promise<string[]> {
  const text = await readFile(GUIDE, 'utf8');
  const section = text.slice(text.indexOf('## 5. MySQL'));
  const block = /```sql\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error('docs/sysadmin.md section 5 has no ```sql block');
  return block
    .split('\n')
    .filter((l) => !l.trim().startsWith('--'))
    .join('\n')
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) =>
      s
        .replaceAll("'secd_admin'@'leader.example.org'", `'${names.admin}'@'%'`)
        .replaceAll("'a long random password'", `'${names.password}'`)
        .replaceAll('`cohort_2024`', `\`${names.database}\``),
    );
}

describe("the guide's MySQL admin account", () => {
  const tag = randomBytes(4).toString('hex');
  const admin = `secd_admin_t${tag}`;
  const password = randomBytes(12).toString('hex');
  const dataset = `secd_t${tag}_cohort`;
  const other = `secd_t${tag}_other`;
  let root: MysqlSession;
  let server: DatasetServer;
  let statements: string[];

  beforeAll(async () => {
    root = await connectMysql(SERVER, ROOT);
    for (const db of [dataset, other]) {
      await root.query(`CREATE DATABASE \`${db}\``);
      await root.query(`CREATE TABLE \`${db}\`.patients (id INT PRIMARY KEY, age INT)`);
      await root.query(`INSERT INTO \`${db}\`.patients VALUES (1, 41), (2, 67)`);
    }
    statements = await guideStatements({ admin, password, database: dataset });
    for (const sql of statements) await root.query(sql);
    server = createMysqlDatasetServer(SERVER, { user: admin, password });
  });
  afterAll(async () => {
    await server?.close();
    for (const u of (await root.query("SELECT User AS u FROM mysql.user WHERE User LIKE ?", [`secd%t${tag}%`])) as { u: string }[]) {
      await root.query("DROP USER IF EXISTS ?@'%'", [String(u.u)]);
    }
    for (const db of [dataset, other]) await root.query(`DROP DATABASE IF EXISTS \`${db}\``);
    await root.close();
  });

  it('is created by the guide\'s statements, which grant nothing global beyond CREATE USER, PROCESS and CONNECTION ADMIN', async () => {
    expect(statements[0]).toMatch(/^CREATE USER /);
    const grants = ((await root.query(`SHOW GRANTS FOR '${admin}'@'%'`)) as Record<string, string>[]).map((r) => Object.values(r)[0]!);
    expect(grants.find((g) => g.includes('ON *.*'))).toMatch(/^GRANT PROCESS, CREATE USER, CONNECTION ADMIN ON \*\.\* TO /);
  });

  it('lets secd create a run account that reads its dataset and nothing else, list it, and drop it, ending its open session', async () => {
    const run = `secdrun_t${tag}`;
    const runPassword = randomBytes(12).toString('hex');
    await server.createRunUser({ user: run, password: runPassword, databases: [dataset], maxConnections: 2 });
    expect(await server.listRunUsers(`secdrun_t${tag}`)).toEqual([run]);

    const session = await connectMysql(SERVER, { user: run, password: runPassword });
    expect(await session.query(`SELECT COUNT(*) AS n FROM \`${dataset}\`.patients`)).toEqual([{ n: 2 }]);
    await expect(session.query(`SELECT * FROM \`${other}\`.patients`)).rejects.toMatchObject({ code: 'ER_TABLEACCESS_DENIED_ERROR' });

    await server.dropRunUser(run);
    expect(await server.listRunUsers(`secdrun_t${tag}`)).toEqual([]);
    // The session that was open is gone, and the account cannot log in again.
    await expect(session.query('SELECT 1')).rejects.toBeTruthy();
    await session.close();
    // MariaDB answers a dropped account with ER_ACCESS_DENIED_ERROR or, after an auth-plugin switch,
    // ER_ACCESS_DENIED_NO_PASSWORD_ERROR: both say the login was refused.
    await expect(connectMysql(SERVER, { user: run, password: runPassword })).rejects.toMatchObject({ code: expect.stringMatching(/^ER_ACCESS_DENIED/) });
  });

  it('cannot read password hashes or grant on databases it was not given', async () => {
    const session = await connectMysql(SERVER, { user: admin, password });
    try {
      await expect(session.query('SELECT authentication_string FROM mysql.user')).rejects.toMatchObject({ code: 'ER_COLUMNACCESS_DENIED_ERROR' });
      await session.query("CREATE USER ?@'%' IDENTIFIED BY 'x'", [`secdprobe_t${tag}`]);
      await expect(session.query(`GRANT SELECT ON \`${other}\`.* TO ?@'%'`, [`secdprobe_t${tag}`])).rejects.toMatchObject({
        code: 'ER_DBACCESS_DENIED_ERROR',
      });
    } finally {
      await session.query("DROP USER IF EXISTS ?@'%'", [`secdprobe_t${tag}`]).catch(() => undefined);
      await session.close();
    }
  });
});
