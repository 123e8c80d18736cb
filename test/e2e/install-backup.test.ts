/**
 * `secd admin backup <file> --config leader.yml` as the sysadmin guide tells operators to run it:
 * the real CLI against a database another connection (the leader) holds open and keeps writing.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aNewRun } from '../support/run-rows.js';
import { runSecd as secd } from '../support/secd-cli.js';
import { openStateFile, withStateFile, type StateFile } from '../support/state-file.js';

const aRun = (id: string) => aNewRun({ id, deliveryKey: `delivery-${id}` });

describe('secd admin backup', () => {
  let work: string;
  let config: string;
  let live: StateFile;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'secd-backup-'));
    config = join(work, 'leader.yml');
    await writeFile(
      config,
      'data_dir: data\ngitlab:\n  url: https://gitlab.lab.example\n  token: glpat-backup-test\n  webhook_secret: backup-test-secret\n',
    );
    live = await openStateFile(join(work, 'data', 'secd.db'));
    // Keep every write in the WAL, as between a busy leader's checkpoints: the copy must hold them too.
    live.handle.pragma('wal_autocheckpoint = 0');
  });
  afterAll(async () => {
    await live.close();
    await rm(work, { recursive: true, force: true });
  });

  it('copies the live database, including writes not yet checkpointed, into one self-contained file', async () => {
    const store = live.runs;
    await store.createRun(aRun('run0000001'));
    await store.createRun(aRun('run0000002'));
    const file = join(work, 'secd-backup.db');
    const r = await secd(['admin', 'backup', file, '--config', config]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^secd admin backup: .*\/data\/secd\.db -> .*\/secd-backup\.db \(\d+ bytes, schema version \d+\)\n$/);
    // The leader goes on writing; the copy is what was there when the backup ran.
    await store.createRun(aRun('run0000003'));
    expect(existsSync(`${file}-wal`)).toBe(false);
    await withStateFile(file, async ({ runs: copy }) => {
      expect((await copy.list()).map((run) => run.id).sort()).toEqual(['run0000001', 'run0000002']);
      expect((await copy.events('run0000001')).map((e) => e.to)).toEqual(['received']);
    });
  });

  it('says so, and writes nothing, when the configured data_dir holds no database', async () => {
    const other = join(work, 'other.yml');
    await writeFile(other, 'data_dir: nowhere\ngitlab:\n  url: https://gitlab.lab.example\n  token: t\n  webhook_secret: s\n');
    const file = join(work, 'none.db');
    const r = await secd(['admin', 'backup', file, '--config', other]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`secd admin backup: ${join(work, 'nowhere', 'secd.db')} does not exist (has the leader with this config ever started?)\n`);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(join(work, 'nowhere'))).toBe(false);
  });
});
