/**
 * The real MariaDB of the test machine (127.0.0.1:3306, root without a password, as .ci/run starts
 * it): databases seeded by the tests and names unique to each test file, so files running side by
 * side never touch each other's databases or temporary accounts.
 */
import { randomBytes } from 'node:crypto';
import { connectMysql, type MysqlEndpoint, type MysqlLogin, type MysqlSession } from '../../scheduler/policy/mysql-grants.js';

/** Where the test MariaDB listens. */
export const MARIADB: { host: string; port: number } = {
  host: process.env.SECD_TEST_MYSQL_HOST ?? '127.0.0.1',
  port: Number(process.env.SECD_TEST_MYSQL_PORT ?? 3306),
};

/** Its administrator. */
export const MARIADB_ADMIN: MysqlLogin = {
  user: process.env.SECD_TEST_MYSQL_USER ?? 'root',
  password: process.env.SECD_TEST_MYSQL_PASSWORD ?? '',
};

/** A short random tag: database names and account prefixes of one test file. */
export function testTag(): string {
  return randomBytes(4).toString('hex');
}

/** An admin connection; fails loudly when MariaDB is not running. */
export async function adminSession(): Promise<MysqlSession> {
  try {
    return await connectMysql(MARIADB, MARIADB_ADMIN);
  } catch (err) {
    throw new Error(`MariaDB is not reachable at ${MARIADB.host}:${MARIADB.port} (.ci/run starts it): ${String(err)}`);
  }
}

/** Create database `name` and run `statements` in it (each one statement). */
export async function seedDatabase(name: string, statements: readonly string[]): Promise<void> {
  const admin = await adminSession();
  try {
    await admin.query(`DROP DATABASE IF EXISTS \`${name}\``);
    await admin.query(`CREATE DATABASE \`${name}\``);
    for (const sql of statements) await admin.query(sql.replaceAll('{db}', `\`${name}\``));
  } finally {
    await admin.close();
  }
}

/** Drop the databases and every account whose name starts with `accountPrefix`. */
export async function cleanUp(databases: readonly string[], accountPrefix?: string): Promise<void> {
  const admin = await adminSession();
  try {
    for (const db of databases) await admin.query(`DROP DATABASE IF EXISTS \`${db}\``);
    if (accountPrefix) {
      const rows = (await admin.query('SELECT User AS user, Host AS host FROM mysql.user WHERE User LIKE ?', [
        `${accountPrefix.replace(/_/g, '\\_')}%`,
      ])) as Array<{ user: string; host: string }>;
      for (const r of rows) await admin.query('DROP USER IF EXISTS ?@?', [String(r.user), String(r.host)]);
    }
  } finally {
    await admin.close();
  }
}

/** Whether an account exists on the server. */
export async function accountExists(user: string): Promise<boolean> {
  const admin = await adminSession();
  try {
    return (await admin.query('SELECT 1 FROM mysql.user WHERE User = ?', [user])).length > 0;
  } finally {
    await admin.close();
  }
}

/** Try to log in; the server's error code when refused (e.g. ER_ACCESS_DENIED_ERROR), null when it worked. */
export async function loginError(endpoint: MysqlEndpoint, login: MysqlLogin): Promise<string | null> {
  try {
    const s = await connectMysql(endpoint, login);
    await s.close();
    return null;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}
