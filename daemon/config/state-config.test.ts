/**
 * `state:` and `ha:` (DESIGN §11; daemon/config/state-config.ts), parsed as leader.yml will parse
 * them once they join leaderShape: the SQLite default, the MariaDB form with its password from one
 * source, the lease's bounds, and a message naming the key for each mistake.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { configParser } from './config-file.js';
import { configMessage } from './config-test-kit.js';
import { DEFAULT_LEASE_MS, stateShape } from './state-config.js';

const parse = configParser((ctx) => z.strictObject(stateShape(ctx)));
const FILE = '/etc/secd/leader.yml';

function messageOf(text: string, env: Record<string, string> = {}): string {
  return configMessage(() => parse(text, FILE, env));
}

describe('state:', () => {
  it('defaults to the embedded SQLite file, with the default lease', () => {
    expect(parse('', FILE, {})).toEqual({ state: { engine: 'sqlite' }, ha: { lease_ms: DEFAULT_LEASE_MS } });
    expect(parse('state: sqlite\n', FILE, {})).toEqual({ state: { engine: 'sqlite' }, ha: { lease_ms: 10_000 } });
  });

  it('takes a MariaDB database as DESIGN §11 writes it, the password read from its file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'secd-state-config-'));
    writeFileSync(join(dir, 'state-password'), 's3cret\n');
    const text = `state:\n  mysql: { host: db.example.org, port: 3307, user: secd, password_file: state-password, database: secd_state }\nha:\n  lease_ms: 15000\n`;
    expect(parse(text, join(dir, 'leader.yml'), {})).toEqual({
      state: { engine: 'mysql', host: 'db.example.org', port: 3307, user: 'secd', password: 's3cret', database: 'secd_state' },
      ha: { lease_ms: 15_000 },
    });
  });

  it('takes the password from the systemd credential state_mysql_password, and defaults host and port', () => {
    const creds = mkdtempSync(join(tmpdir(), 'secd-state-creds-'));
    writeFileSync(join(creds, 'state_mysql_password'), 'from-systemd\n');
    expect(parse('state: { mysql: { user: secd, database: secd_state } }\n', FILE, { CREDENTIALS_DIRECTORY: creds }).state).toEqual({
      engine: 'mysql',
      host: '127.0.0.1',
      port: 3306,
      user: 'secd',
      password: 'from-systemd',
      database: 'secd_state',
    });
  });

  it.each([
    ['state: postgres\n', `${FILE}: state must be sqlite or a mapping with mysql: {host, port, user, password_file, database} (got "postgres") (line 1)`],
    ['state: {}\n', `${FILE}: state must be sqlite or a mapping with mysql: {host, port, user, password_file, database} (got an empty mapping) (line 1)`],
    ['state: { postgres: { host: x } }\n', `${FILE}: unknown key "state.postgres" (line 1)`],
    ['state: { mysql: { database: secd_state } }\n', `${FILE}: state.mysql.user is required`],
    ['state: { mysql: { user: secd } }\n', `${FILE}: state.mysql.database is required`],
    ['state: { mysql: { user: secd, database: "secd state" } }\n', `${FILE}: state.mysql.database must be a database name: MySQL database name "secd state" must be 1-64 letters, digits, "_", "$" or "-" (line 1)`],
    ['state: { mysql: { user: secd, database: s, port: 0 } }\n', `${FILE}: state.mysql.port must be at least 1 (got 0) (line 1)`],
    ['state: { mysql: { user: secd, database: s, password: a, password_file: b } }\n', `${FILE}: state.mysql.password and state.mysql.password_file are both set; keep one (line 1)`],
    ['state: { mysql: { user: secd, database: s, socket: /run/mysqld.sock } }\n', `${FILE}: unknown key "state.mysql.socket" (line 1)`],
  ])('%j is refused: %s', (text, message) => {
    expect(messageOf(text)).toBe(message);
  });
});

describe('ha:', () => {
  it.each([
    ['ha: { lease_ms: 999 }\n', `${FILE}: ha.lease_ms must be at least 1000 (a renewal is a database round trip every third of it) (line 1)`],
    ['ha: { lease_ms: 600001 }\n', `${FILE}: ha.lease_ms must be at most 600000 (a failover waits up to the lease and one renewal) (line 1)`],
    ['ha: { lease_ms: 1.5 }\n', `${FILE}: ha.lease_ms must be a whole number (got 1.5) (line 1)`],
    ['ha: { lease: 10000 }\n', `${FILE}: unknown key "ha.lease" (line 1)`],
  ])('%j is refused: %s', (text, message) => {
    expect(messageOf(text)).toBe(message);
  });
});
