import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate, openDatabase, type SqliteDatabase } from './database.js';
import { MIGRATIONS } from './migrations.js';
import type { RunStore } from './run-store.js';
import { stateOverSqlite } from './sql/state-database.js';
import { plainScope } from './sql/state-scope.js';
import { stateStores } from './state-stores.js';
import { scratchStores, STATE_ENGINES, type ScratchStores } from '../test/support/scratch-state.js';

const ADA = { username: 'ada', userId: 7 };
const NOW = () => new Date('2026-01-02T03:04:05Z');

async function pushedRun(runs: RunStore, id: string, user = 'ada', userId: number | null = 1): Promise<void> {
  await runs.createRun({
    id, projectId: 1, project: 'lab/p', ref: 'refs/heads/main', beforeSha: '0'.repeat(40),
    commit: '1'.repeat(40), user, userId, deliveryKey: null, fetchUrl: 'http://x',
  });
}

describe.each(STATE_ENGINES)('the access policy (%s)', (engine) => {
  let s: ScratchStores;
  beforeEach(async () => {
    s = await scratchStores(engine, NOW);
  });
  afterEach(() => s.dispose());

  it('lists datasets with their source and how many users may read them', async () => {
    const { datasets } = s;
    expect((await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024' })).ok).toBe(true);
    expect((await datasets.add({ name: 'scans', kind: 'path', path: 'radiology/scans' })).ok).toBe(true);
    await datasets.grant(ADA, 'sales');
    await datasets.grant({ username: 'alan', userId: 8 }, 'sales');
    expect(await datasets.list()).toEqual([
      { name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024', release: 'review', approvals: null, createdAt: '2026-01-02T03:04:05.000Z', users: 2 },
      { name: 'scans', kind: 'path', path: 'radiology/scans', release: 'review', approvals: null, createdAt: '2026-01-02T03:04:05.000Z', users: 0 },
    ]);
  });

  it('refuses bad names, escaping paths, GRANT wildcards and duplicates with a reason', async () => {
    const { datasets } = s;
    expect(await datasets.add({ name: '../x', kind: 'path', path: 'x' })).toMatchObject({ ok: false, code: 'invalid' });
    expect(await datasets.add({ name: 'x', kind: 'path', path: '../etc' })).toMatchObject({ ok: false, reason: expect.stringContaining('..') });
    expect(await datasets.add({ name: 'x', kind: 'path', path: '/etc' })).toMatchObject({ ok: false, reason: expect.stringContaining('relative') });
    expect(await datasets.add({ name: 'x', kind: 'mysql', mysqlDatabase: 'sales%' })).toMatchObject({ ok: false, code: 'invalid' });
    expect(await datasets.add({ name: 'x', kind: 'mysql', mysqlDatabase: 'a`b' })).toMatchObject({ ok: false, code: 'invalid' });
    await datasets.add({ name: 'x', kind: 'mysql', mysqlDatabase: 'x' });
    expect(await datasets.add({ name: 'x', kind: 'mysql', mysqlDatabase: 'y' })).toEqual({ ok: false, code: 'exists', reason: 'dataset x already exists' });
  });

  it('dataset names are exact: one differing only in case is another dataset, and grants of one are not of the other', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    expect(await datasets.get('Sales')).toBeUndefined();
    expect(await datasets.grant(ADA, 'SALES')).toMatchObject({ ok: false, code: 'unknown_dataset' });
    expect((await datasets.add({ name: 'Sales', kind: 'mysql', mysqlDatabase: 'sales_upper' })).ok).toBe(true);
    await datasets.grant(ADA, 'sales');
    expect((await datasets.datasetsOf(7)).map((d) => d.name)).toEqual(['sales']);
    expect(await datasets.revoke('ada', 'Sales')).toMatchObject({ ok: false, code: 'not_granted' });
    expect((await datasets.list()).map((d) => [d.name, d.users])).toEqual([
      ['Sales', 0],
      ['sales', 1],
    ]);
  });

  it('grants, revokes and says what is unknown', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    expect(await datasets.grant(ADA, 'nope')).toMatchObject({ ok: false, code: 'unknown_dataset', reason: expect.stringContaining('no dataset named nope') });
    expect(await datasets.grant(ADA, 'sales')).toEqual({ ok: true, value: { created: true } });
    expect(await datasets.grant(ADA, 'sales')).toEqual({ ok: true, value: { created: false } });
    expect(await datasets.datasetsOf(7)).toEqual([{ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales', release: 'review', approvals: null }]);
    expect(await datasets.grants()).toEqual([
      { user: 'ada', userId: 7, dataset: 'sales', grantedAt: '2026-01-02T03:04:05.000Z', bound: 'gitlab', boundAt: '2026-01-02T03:04:05.000Z' },
    ]);
    expect(await datasets.revoke('alan', 'sales')).toMatchObject({ ok: false, code: 'not_granted', reason: 'alan has no grant on dataset sales' });
    expect(await datasets.revoke('ada', 'sales')).toEqual({ ok: true, value: { userId: 7 } });
    expect(await datasets.datasetsOf(7)).toEqual([]);
  });

  it('refuses a grant without a usable GitLab user id', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    for (const userId of [0, -3, 1.5, Number.NaN]) {
      expect(await datasets.grant({ username: 'ada', userId }, 'sales')).toEqual({
        ok: false,
        code: 'invalid',
        reason: expect.stringContaining(`a grant needs the account's GitLab user id`),
      });
    }
    expect(await datasets.grants()).toEqual([]);
  });

  it('removing a dataset removes its grants', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await datasets.add({ name: 'scans', kind: 'path', path: 'scans' });
    await datasets.grant(ADA, 'sales');
    await datasets.grant(ADA, 'scans');
    expect(await datasets.remove('sales')).toEqual({ ok: true, value: { grantsRemoved: 1 } });
    expect((await datasets.grants('ada')).map((g) => g.dataset)).toEqual(['scans']);
    expect(await datasets.remove('sales')).toMatchObject({ ok: false, code: 'unknown_dataset' });
  });

  it('the database itself cascades a deleted dataset to its grants (the foreign key, not only the store)', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await datasets.add({ name: 'scans', kind: 'path', path: 'scans' });
    await datasets.grant(ADA, 'sales');
    await datasets.grant({ username: 'alan', userId: 8 }, 'sales');
    await datasets.grant(ADA, 'scans');
    await s.state.db.deleteFrom('datasets').where('name', '=', 'sales').execute();
    expect((await datasets.grants()).map((g) => `${g.user}/${g.dataset}`)).toEqual(['ada/scans']);
  });

  it('audits what each run was given, when its account was dropped, and its bytes', async () => {
    const { datasets, runs } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await pushedRun(runs, 'run0000001');
    await datasets.recordRunAccess('run0000001', 'secd_run0000001', [(await datasets.get('sales'))!]);
    // A second record of the same run keeps the first.
    await datasets.recordRunAccess('run0000001', 'secd_other', []);
    expect((await datasets.openAccesses()).map((a) => [a.runId, a.mysqlUser])).toEqual([['run0000001', 'secd_run0000001']]);
    // The audit keeps what the run was given, the source; its policy is the release record's business.
    expect((await datasets.runAccess('run0000001'))!.datasets).toEqual([{ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' }]);
    await datasets.markDropped('run0000001');
    await datasets.recordBytes('run0000001', { fromServer: 5_000_000_000, toServer: 56 });
    expect(await datasets.openAccesses()).toEqual([]);
    expect(await datasets.runsGiven('sales')).toEqual([
      expect.objectContaining({ runId: 'run0000001', user: 'ada', mysqlUser: 'secd_run0000001', bytesFromServer: 5_000_000_000, bytesToServer: 56, droppedAt: '2026-01-02T03:04:05.000Z' }),
    ]);
    expect(await datasets.runsGiven('SALES')).toEqual([]);
    expect(await datasets.runAccess('run0000002')).toBeUndefined();
  });

  it('lists the runs given a dataset newest first, only those that were given it', async () => {
    let at = Date.parse('2026-01-02T03:00:00Z');
    const s2 = stateStores(s.scope, () => new Date((at += 1000)));
    await s.datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    await s.datasets.add({ name: 'scans', kind: 'path', path: 'scans' });
    const sales = (await s.datasets.get('sales'))!;
    const scans = (await s.datasets.get('scans'))!;
    for (const [id, given] of [['run0000001', [sales]], ['run0000002', [scans]], ['run0000003', [scans, sales]]] as const) {
      await pushedRun(s.runs, id);
      await s2.datasets.recordRunAccess(id, null, given);
    }
    expect((await s.datasets.runsGiven('sales')).map((a) => a.runId)).toEqual(['run0000003', 'run0000001']);
    expect((await s.datasets.runsGiven('sales', 1)).map((a) => a.runId)).toEqual(['run0000003']);
    expect((await s.datasets.runsGiven('scans')).map((a) => a.runId)).toEqual(['run0000003', 'run0000002']);
    // Accounts without a MySQL user are not open accesses.
    expect(await s.datasets.openAccesses()).toEqual([]);
  });

  it('refuses to record access for a run that does not exist', async () => {
    await expect(s.datasets.recordRunAccess('run9999999', null, [])).rejects.toThrow();
    expect(await s.datasets.runAccess('run9999999')).toBeUndefined();
  });
});

describe.each(STATE_ENGINES)('release policy per dataset (%s)', (engine) => {
  let s: ScratchStores;
  beforeEach(async () => {
    s = await scratchStores(engine, NOW);
  });
  afterEach(() => s.dispose());

  it('a new dataset is held for review with the config\'s approvals unless its owner says otherwise', async () => {
    const { datasets } = s;
    expect(await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' })).toMatchObject({ ok: true, value: { release: 'review', approvals: null } });
    expect(await datasets.add({ name: 'open', kind: 'path', path: 'public/open' }, { release: 'direct' })).toMatchObject({ ok: true, value: { release: 'direct', approvals: null } });
    expect(await datasets.add({ name: 'icu', kind: 'mysql', mysqlDatabase: 'icu' }, { approvals: 3 })).toMatchObject({ ok: true, value: { release: 'review', approvals: 3 } });
    expect(await datasets.get('open')).toEqual({ name: 'open', kind: 'path', path: 'public/open', release: 'direct', approvals: null });
    expect((await datasets.list()).map((d) => [d.name, d.release, d.approvals])).toEqual([
      ['icu', 'review', 3],
      ['open', 'direct', null],
      ['sales', 'review', null],
    ]);
  });

  it('refuses a policy that is not one, adding nothing', async () => {
    const { datasets } = s;
    const bad = [
      [{ release: 'maybe' as 'direct' }, 'release must be "direct" or "review" (got "maybe")'],
      [{ approvals: 0 }, 'approvals must be a whole number of 1 or more'],
      [{ approvals: 1.5 }, 'approvals must be a whole number of 1 or more'],
      [{ approvals: Number.NaN }, 'approvals must be a whole number of 1 or more'],
    ] as const;
    for (const [policy, reason] of bad) {
      expect(await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' }, policy)).toEqual({ ok: false, code: 'invalid', reason: expect.stringContaining(reason) });
    }
    expect(await datasets.list()).toEqual([]);
  });

  it('the database refuses a row the store would never write (its CHECKs hold on both engines)', async () => {
    const row = { name: 'odd', kind: 'mysql', mysql_database: 'odd', path: null, created_at: '2026-01-02T03:04:05.000Z' };
    await expect(s.state.db.insertInto('datasets').values({ ...row, kind: 'tape' }).execute()).rejects.toThrow();
    await expect(s.state.db.insertInto('datasets').values({ ...row, path: 'odd' }).execute()).rejects.toThrow();
    await expect(s.state.db.insertInto('datasets').values({ ...row, release: 'later' }).execute()).rejects.toThrow();
    await expect(s.state.db.insertInto('datasets').values({ ...row, approvals: 0 }).execute()).rejects.toThrow();
    expect(await s.datasets.list()).toEqual([]);
    // The column's default is `direct` (rows from before release existed), not what add() chooses.
    await s.state.db.insertInto('datasets').values(row).execute();
    expect(await s.datasets.get('odd')).toMatchObject({ release: 'direct', approvals: null });
  });

  it('setPolicy changes what it is given, keeps the rest and says what it was before', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    expect(await datasets.setPolicy('sales', { approvals: 3 })).toEqual({
      ok: true,
      value: { before: { release: 'review', approvals: null }, after: { release: 'review', approvals: 3 } },
    });
    expect(await datasets.setPolicy('sales', { release: 'direct' })).toEqual({
      ok: true,
      value: { before: { release: 'review', approvals: 3 }, after: { release: 'direct', approvals: 3 } },
    });
    // null goes back to the config's release.approvals.
    expect(await datasets.setPolicy('sales', { release: 'review', approvals: null })).toMatchObject({ ok: true, value: { after: { release: 'review', approvals: null } } });
    expect(await datasets.get('sales')).toMatchObject({ release: 'review', approvals: null });
  });

  it('setPolicy refuses an unknown dataset, an empty change and a bad value, changing nothing', async () => {
    const { datasets } = s;
    await datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' }, { approvals: 2 });
    expect(await datasets.setPolicy('salez', { release: 'direct' })).toEqual({ ok: false, code: 'unknown_dataset', reason: expect.stringContaining('no dataset named salez') });
    expect(await datasets.setPolicy('sales', {})).toEqual({ ok: false, code: 'invalid', reason: expect.stringMatching(/^nothing to change: give release .* approvals/) });
    expect(await datasets.setPolicy('sales', { approvals: -1 })).toMatchObject({ ok: false, code: 'invalid', reason: expect.stringContaining('got -1') });
    expect(await datasets.setPolicy('sales', { release: 'never' as 'review' })).toMatchObject({ ok: false, code: 'invalid' });
    expect(await datasets.get('sales')).toMatchObject({ release: 'review', approvals: 2 });
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

describe('upgrading a SQLite file from before output release (migration 5)', () => {
  it('a dataset that existed before the upgrade keeps direct: its owner decided before release existed', async () => {
    const db = databaseAtMigration4();
    migrate(db);
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    const state = stateOverSqlite(db);
    try {
      const { datasets } = stateStores(plainScope(state), NOW);
      expect(await datasets.get('cohort')).toEqual({ name: 'cohort', kind: 'mysql', mysqlDatabase: 'cohort_2024', release: 'direct', approvals: null });
      // One added after the upgrade is review, side by side with it.
      await datasets.add({ name: 'later', kind: 'mysql', mysqlDatabase: 'later' });
      expect((await datasets.list()).map((d) => [d.name, d.release])).toEqual([
        ['cohort', 'direct'],
        ['later', 'review'],
      ]);
    } finally {
      await state.close();
      db.close();
    }
  });
});
