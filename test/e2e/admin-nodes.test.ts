/**
 * `secd admin node-token` and `secd admin node ...` as an operator runs them against leader.yml.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../storage/database.js';
import { NodeStore } from '../../storage/node-store.js';
import { runSecd as secd } from '../support/secd-cli.js';

describe('secd admin for nodes', () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secd-admin-'));
    config = join(dir, 'leader.yml');
    await writeFile(config, `data_dir: ${join(dir, 'data')}\ngitlab:\n  url: https://gitlab.example.org\n  token: t\n  webhook_secret: s\n`);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('node-token prints a token as the last line; the database keeps only its hash', async () => {
    const result = await secd(['admin', 'node-token', 'gpu-01', '--config', config]);
    expect(result.code, result.stderr).toBe(0);
    const token = result.stdout.trim().split('\n').at(-1)!;
    expect(token).toMatch(/^secdn_[A-Za-z0-9_-]{43}$/);
    const db = openDatabase(join(dir, 'data', 'secd.db'));
    try {
      expect(new NodeStore(db).authenticate('gpu-01', token)).toMatchObject({ ok: true });
      expect(JSON.stringify(db.prepare('SELECT * FROM nodes').all())).not.toContain(token);
    } finally {
      db.close();
    }
  });

  it('drain, undrain and revoke say what they did; an unknown or malformed node id is refused', async () => {
    expect((await secd(['admin', 'node', 'drain', 'gpu-01', '--config', config])).stdout).toContain('node gpu-01 is draining');
    expect((await secd(['admin', 'node', 'list', '--config', config])).stdout).toMatch(/^gpu-01\tdraining\tlast seen never/m);
    expect((await secd(['admin', 'node', 'undrain', 'gpu-01', '--config', config])).stdout).toContain('takes runs again');
    expect((await secd(['admin', 'node', 'revoke', 'gpu-01', '--config', config])).stdout).toContain("gpu-01's token is revoked");
    expect((await secd(['admin', 'node', 'list', '--config', config])).stdout).toMatch(/^gpu-01\trevoked\t/m);

    const unknown = await secd(['admin', 'node', 'drain', 'gpu-99', '--config', config]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no node gpu-99 is known');
    const malformed = await secd(['admin', 'node-token', '../x', '--config', config]);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('is not a node id');
  });
});
