/** How an admin command opens the leader's state: the SQLite file or the MySQL database leader.yml names, migrated, closed after. */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadLeaderConfig } from '../config/leader-config.js';
import { AdminError, withStores } from './admin-command.js';
import { scratchState, type ScratchState } from '../../test/support/scratch-state.js';
import { MARIADB } from '../../test/support/mariadb.js';

const GITLAB = 'gitlab:\n  url: https://gitlab.example.org\n  token: t\n  webhook_secret: s\n';
let dir = '';
let scratch: ScratchState | null = null;
afterEach(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
  await scratch?.dispose();
  scratch = null;
});

function leaderYml(extra = ''): string {
  dir = mkdtempSync(join(tmpdir(), 'secd-admin-state-'));
  const file = join(dir, 'leader.yml');
  writeFileSync(file, `data_dir: ${join(dir, 'data')}\n${GITLAB}${extra}`);
  return file;
}

describe('withStores', () => {
  it('opens the leader\'s secd.db with every store, and what one command writes the next one reads', async () => {
    const config = loadLeaderConfig(leaderYml());
    const token = await withStores(config, (s) => s.nodes.issueToken('gpu-01'));
    expect(existsSync(join(dir, 'data', 'secd.db'))).toBe(true);
    const seen = await withStores(config, async (s) => ({ auth: await s.nodes.authenticate('gpu-01', token), runs: await s.runs.list() }));
    expect(seen.auth).toMatchObject({ ok: true, node: { id: 'gpu-01' } });
    expect(seen.runs).toEqual([]);
  });

  it('closes the state when the command fails, so the next one opens it again', async () => {
    const config = loadLeaderConfig(leaderYml());
    await expect(withStores(config, async () => Promise.reject(new AdminError('no such node')))).rejects.toThrow('no such node');
    expect(await withStores(config, (s) => s.nodes.list())).toEqual([]);
  });

  it('works on a leader whose state is in MySQL: the change lands in that database, and no SQLite file is made', async () => {
    scratch = await scratchState('mysql');
    const config = loadLeaderConfig(leaderYml(`state:\n  mysql: { host: ${MARIADB.host}, port: ${MARIADB.port}, user: root, database: ${scratch.where} }\n`));
    const token = await withStores(config, (s) => s.nodes.issueToken('gpu-07'));
    expect(existsSync(join(dir, 'data'))).toBe(false);
    // Another handle on the same MariaDB database (another leader) sees it.
    const state = scratch.open();
    const row = await state.db.selectFrom('nodes').select(['id']).execute();
    expect(row.map((r) => r.id)).toEqual(['gpu-07']);
    expect(await withStores(config, (s) => s.nodes.authenticate('gpu-07', token))).toMatchObject({ ok: true });
  });

  it('a MySQL state that cannot be reached is said, naming where', async () => {
    const config = loadLeaderConfig(leaderYml('state:\n  mysql: { host: 127.0.0.1, port: 1, user: secd, database: secd_state }\n'));
    await expect(withStores(config, (s) => s.nodes.list())).rejects.toThrow(/could not open the state database mysql:\/\/127\.0\.0\.1:1\/secd_state/);
  });
});
