/** The per-run dataset socket against the real MariaDB. */
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectMysql } from '../../scheduler/policy/mysql-grants.js';
import { MARIADB, MARIADB_ADMIN } from '../../test/support/mariadb.js';
import { startDatasetForwarder } from './dataset-forwarder.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-fwd-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('the dataset socket', () => {
  it('forwards a MySQL session to the dataset server, counts its bytes both ways, and is connectable by any user', async () => {
    const fwd = await startDatasetForwarder(join(root, 'a'), MARIADB);
    expect(statSync(fwd.socketPath).mode & 0o777).toBe(0o666);
    const s = await connectMysql({ socketPath: fwd.socketPath }, MARIADB_ADMIN);
    const rows = (await s.query("SELECT REPEAT('x', 100000) AS big")) as Array<{ big: string }>;
    expect(rows[0]!.big.length).toBe(100_000);
    await s.close();
    const bytes = await fwd.close();
    expect(bytes.fromServer).toBeGreaterThan(100_000);
    expect(bytes.toServer).toBeGreaterThan(30);
  });

  it('closing it ends open sessions and removes the socket', async () => {
    const fwd = await startDatasetForwarder(join(root, 'b'), MARIADB);
    const s = await connectMysql({ socketPath: fwd.socketPath }, MARIADB_ADMIN);
    await fwd.close();
    await expect(s.query('SELECT 1')).rejects.toThrow();
    await s.close();
    expect(existsSync(fwd.socketPath)).toBe(false);
    await expect(connectMysql({ socketPath: fwd.socketPath }, MARIADB_ADMIN)).rejects.toThrow();
  });

  it('a dataset server that is down fails the session at once instead of hanging', async () => {
    const fwd = await startDatasetForwarder(join(root, 'c'), { host: '127.0.0.1', port: 1 });
    await expect(connectMysql({ socketPath: fwd.socketPath }, MARIADB_ADMIN)).rejects.toThrow();
    await fwd.close();
  });

  it('refuses a socket path longer than unix sockets allow', async () => {
    await expect(startDatasetForwarder(join(root, 'x'.repeat(120)), MARIADB)).rejects.toThrow(/shorter work_dir/);
  });
});
