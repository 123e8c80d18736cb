import { describe, expect, it } from 'vitest';
import { mysqlAdminWarnings } from './mysql-admin-warnings.js';

describe("the leader's start-up warnings about the dataset server's admin account", () => {
  it('root with an empty password gets both warnings, each saying what to do', () => {
    const warnings = mysqlAdminWarnings({ host: '10.0.0.5', admin_user: 'root', admin_password: '' });
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^mysql\.admin_user is root on the dataset server 10\.0\.0\.5: give secd its own account/);
    expect(warnings[1]).toMatch(/^mysql\.admin_user root has an empty password .*: set one \(credential mysql_admin_password/);
  });

  it('a named account with a password gets none', () => {
    expect(mysqlAdminWarnings({ host: 'db', admin_user: 'secd_admin', admin_password: 's3cret' })).toEqual([]);
  });
});
