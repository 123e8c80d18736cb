/**
 * What the leader says at start about its dataset server's admin account (issue 13, finding 1): the
 * built-in default `root`, or an empty password, is fit only for a throw-away test server — on a
 * shared one, anything that reaches the server from the leader's address (or, for `root@'%'`, from
 * anywhere) could use it. The leader still starts: a test machine is a real use (the README's).
 */

/** The `mysql:` keys this looks at. */
export interface MysqlAdminSettings {
  host: string;
  admin_user: string;
  admin_password: string;
}

/** One sentence per problem, for the leader's log at warn level; none for a named account with a password. */
export function mysqlAdminWarnings(m: MysqlAdminSettings): string[] {
  const out: string[] = [];
  const where = `the dataset server ${m.host}`;
  if (m.admin_user === 'root') {
    out.push(
      `mysql.admin_user is root on ${where}: give secd its own account (docs/sysadmin.md §5, "secd_admin"), reachable from the leader's address only; root is for a throw-away test server`,
    );
  }
  if (m.admin_password === '') {
    out.push(
      `mysql.admin_user ${m.admin_user} has an empty password on ${where}: set one (credential mysql_admin_password or mysql.admin_password_file); an empty one is for a throw-away test server`,
    );
  }
  return out;
}
