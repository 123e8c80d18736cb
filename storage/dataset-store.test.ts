import { describe, expect, it } from 'vitest';
import { migrate, openDatabase, type SqliteDatabase } from './database.js';
import { DatasetStore } from './dataset-store.js';
import { MIGRATIONS } from './migrations.js';
import { RunStore } from './run-store.js';

const ADA = { username: 'ada', userId: 7 };

function stores() {
  const db = openDatabase(':memory:');
  return { db, datasets: new DatasetStore(db, () => new Date('2026-01-02T03:04:05Z')), runs: new RunStore(db) };
}

describe('the access policy', () => {
  it('lists datasets with their source and how many users may read them', () => {
    const { datasets } = stores();
    expect(datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024' }).ok).toBe(true);
    expect(datasets.add({ name: 'scans', kind: 'path', path: 'radiology/scans' }).ok).toBe(true);
    datasets.grant(ADA, 'sales');
    datasets.grant({ username: 'alan', userId: 8 }, 'sales');
    expect(datasets.list()).toEqual([
      { name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024', release: 'review', approvals: null, createdAt: '2026-01-02T03:04:05.000Z', users: 2 },
      { name: 'scans', kind: 'path', path: 'radiology/scans', release: 'review', approvals: null, createdAt: '2026-01-02T03:04:05.000Z', users: 0 },
    ]);
  });

  it('refuses bad names, escaping paths, GRANT wildcards and duplicates with a reason', () => {
    const { datasets } = stores();
    expect(datasets.add({ name: '../x', kind: 'path', path: 'x' })).toMatchObject({ ok: false, code: 'invalid' });
    expect(datasets.add({ name: 'x', kind: 'path', path: '../etc' })).toMatchObject({ ok: false, reason: expect.stringContaining('..') });
    expect(datasets.add({ name: 'x', kind: 'path', path: '/etc' })).toMatchObject({ ok: false, reason: expect.stringContaining('relative') });
    expect(datasets.add({ name: 'x', kind: 'mysql', mysqlDatabase: 'sales%' })).toMatchObject({ ok: false, code: 'invalid' });
    expect(datasets.add({ name: 'x', kind: 'mysql', mysqlDatabase: 'a`b' })).toMatchObject({ ok: false, code: 'invalid' });
    datasets.add({ name: 'x', kind: 'mysql', mysqlDatabase: 'x' });
    expect(datasets.add({ name: 'x', kind: 'mysql', mysqlDatabase: 'y' })).toEqual({ ok: false, code: 'exists', reason: 'dataset x already exists' });
  });

  it('grants, revokes and says what is unknown', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    expect(datasets.grant(ADA, 'nope')).toMatchObject({ ok: false, code: 'unknown_dataset', reason: expect.stringContaining('no dataset named nope') });
    expect(datasets.grant(ADA, 'sales')).toEqual({ ok: true, value: { created: true } });
    expect(datasets.grant(ADA, 'sales')).toEqual({ ok: true, value: { created: false } });
    expect(datasets.datasetsOf(7)).toEqual([{ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales', release: 'review', approvals: null }]);
    expect(datasets.grants()).toEqual([
      { user: 'ada', userId: 7, dataset: 'sales', grantedAt: '2026-01-02T03:04:05.000Z', bound: 'gitlab', boundAt: '2026-01-02T03:04:05.000Z' },
    ]);
    expect(datasets.revoke('alan', 'sales')).toMatchObject({ ok: false, code: 'not_granted', reason: 'alan has no grant on dataset sales' });
    expect(datasets.revoke('ada', 'sales')).toEqual({ ok: true, value: { userId: 7 } });
    expect(datasets.datasetsOf(7)).toEqual([]);
  });

  it('refuses a grant without a usable GitLab user id', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    for (const userId of [0, -3, 1.5, Number.NaN]) {
      expect(datasets.grant({ username: 'ada', userId }, 'sales')).toEqual({
        ok: false,
        code: 'invalid',
        reason: expect.stringContaining(`a grant needs the account's GitLab user id`),
      });
    }
    expect(datasets.grants()).toEqual([]);
  });

  it('removing a dataset removes its grants', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    datasets.grant(ADA, 'sales');
    expect(datasets.remove('sales')).toEqual({ ok: true, value: { grantsRemoved: 1 } });
    expect(datasets.grants('ada')).toEqual([]);
  });

  it('audits what each run was given, when its account was dropped, and its bytes', () => {
    const { datasets, runs } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    runs.createRun({
      id: 'run0000001', projectId: 1, project: 'lab/p', ref: 'refs/heads/main', beforeSha: '0'.repeat(40),
      commit: '1'.repeat(40), user: 'ada', userId: 1, deliveryKey: null, fetchUrl: 'http://x',
    });
    datasets.recordRunAccess('run0000001', 'secd_run0000001', [datasets.get('sales')!]);
    expect(datasets.openAccesses().map((a) => a.runId)).toEqual(['run0000001']);
    // The audit keeps what the run was given, the source; its policy is the release record's business.
    expect(datasets.runAccess('run0000001')!.datasets).toEqual([{ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' }]);
    datasets.markDropped('run0000001');
    datasets.recordBytes('run0000001', { fromServer: 1234, toServer: 56 });
    expect(datasets.openAccesses()).toEqual([]);
    expect(datasets.runsGiven('sales')).toEqual([
      expect.objectContaining({ runId: 'run0000001', user: 'ada', mysqlUser: 'secd_run0000001', bytesFromServer: 1234, bytesToServer: 56, droppedAt: '2026-01-02T03:04:05.000Z' }),
    ]);
  });
});

/**
 * A database as secd left it before output release existed: migrations 1-4 applied, a dataset added
 * by the old code's INSERT (which names no release column).
 */
function databaseAtMigration4(): SqliteDatabase {
  const db = openDatabase(':memory:');
  db.pragma('foreign_keys = OFF');
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as Array<{ name: string }>;
  for (const { name } of tables) db.exec(`DROP TABLE "${name}"`);
  db.pragma('user_version = 0');
  for (const sql of MIGRATIONS.slice(0, 4)) db.exec(sql);
  db.pragma('user_version = 4');
  db.pragma('foreign_keys = ON');
  db.prepare('INSERT INTO datasets (name, kind, mysql_database, path, created_at) VALUES (?, ?, ?, ?, ?)').run('cohort', 'mysql', 'cohort_2024', null, '2025-06-01T00:00:00.000Z');
  return db;
}

describe('release policy per dataset', () => {
  it('a new dataset is held for review with the config\'s approvals unless its owner says otherwise', () => {
    const { datasets } = stores();
    expect(datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' })).toMatchObject({ ok: true, value: { release: 'review', approvals: null } });
    expect(datasets.add({ name: 'open', kind: 'path', path: 'public/open' }, { release: 'direct' })).toMatchObject({ ok: true, value: { release: 'direct', approvals: null } });
    expect(datasets.add({ name: 'icu', kind: 'mysql', mysqlDatabase: 'icu' }, { approvals: 3 })).toMatchObject({ ok: true, value: { release: 'review', approvals: 3 } });
    expect(datasets.get('open')).toEqual({ name: 'open', kind: 'path', path: 'public/open', release: 'direct', approvals: null });
    expect(datasets.list().map((d) => [d.name, d.release, d.approvals])).toEqual([
      ['icu', 'review', 3],
      ['open', 'direct', null],
      ['sales', 'review', null],
    ]);
  });

  it('refuses a policy that is not one, adding nothing', () => {
    const { datasets } = stores();
    const bad = [
      [{ release: 'maybe' as 'direct' }, 'release must be "direct" or "review" (got "maybe")'],
      [{ approvals: 0 }, 'approvals must be a whole number of 1 or more'],
      [{ approvals: 1.5 }, 'approvals must be a whole number of 1 or more'],
      [{ approvals: Number.NaN }, 'approvals must be a whole number of 1 or more'],
    ] as const;
    for (const [policy, reason] of bad) {
      expect(datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' }, policy)).toEqual({ ok: false, code: 'invalid', reason: expect.stringContaining(reason) });
    }
    expect(datasets.list()).toEqual([]);
  });

  it('setPolicy changes what it is given, keeps the rest and says what it was before', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    expect(datasets.setPolicy('sales', { approvals: 3 })).toEqual({
      ok: true,
      value: { before: { release: 'review', approvals: null }, after: { release: 'review', approvals: 3 } },
    });
    expect(datasets.setPolicy('sales', { release: 'direct' })).toEqual({
      ok: true,
      value: { before: { release: 'review', approvals: 3 }, after: { release: 'direct', approvals: 3 } },
    });
    // null goes back to the config's release.approvals.
    expect(datasets.setPolicy('sales', { release: 'review', approvals: null })).toMatchObject({ ok: true, value: { after: { release: 'review', approvals: null } } });
    expect(datasets.get('sales')).toMatchObject({ release: 'review', approvals: null });
  });

  it('setPolicy refuses an unknown dataset, an empty change and a bad value, changing nothing', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' }, { approvals: 2 });
    expect(datasets.setPolicy('salez', { release: 'direct' })).toEqual({ ok: false, code: 'unknown_dataset', reason: expect.stringContaining('no dataset named salez') });
    expect(datasets.setPolicy('sales', {})).toEqual({ ok: false, code: 'invalid', reason: expect.stringMatching(/^nothing to change: give release .* approvals/) });
    expect(datasets.setPolicy('sales', { approvals: -1 })).toMatchObject({ ok: false, code: 'invalid', reason: expect.stringContaining('got -1') });
    expect(datasets.setPolicy('sales', { release: 'never' as 'review' })).toMatchObject({ ok: false, code: 'invalid' });
    expect(datasets.get('sales')).toMatchObject({ release: 'review', approvals: 2 });
  });

  it('a dataset that existed before the upgrade keeps direct: its owner decided before release existed', () => {
    const db = databaseAtMigration4();
    migrate(db);
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    const datasets = new DatasetStore(db);
    expect(datasets.get('cohort')).toEqual({ name: 'cohort', kind: 'mysql', mysqlDatabase: 'cohort_2024', release: 'direct', approvals: null });
    // One added after the upgrade is review, side by side with it.
    datasets.add({ name: 'later', kind: 'mysql', mysqlDatabase: 'later' });
    expect(datasets.list().map((d) => [d.name, d.release])).toEqual([
      ['cohort', 'direct'],
      ['later', 'review'],
    ]);
  });
});
