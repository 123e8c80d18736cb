import { describe, expect, it } from 'vitest';
import { openDatabase } from './database.js';
import { DatasetStore } from './dataset-store.js';
import { RunStore } from './run-store.js';

function stores() {
  const db = openDatabase(':memory:');
  return { db, datasets: new DatasetStore(db, () => new Date('2026-01-02T03:04:05Z')), runs: new RunStore(db) };
}

describe('the access policy', () => {
  it('lists datasets with their source and how many users may read them', () => {
    const { datasets } = stores();
    expect(datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024' }).ok).toBe(true);
    expect(datasets.add({ name: 'scans', kind: 'path', path: 'radiology/scans' }).ok).toBe(true);
    datasets.grant('ada', 'sales');
    datasets.grant('alan', 'sales');
    expect(datasets.list()).toEqual([
      { name: 'sales', kind: 'mysql', mysqlDatabase: 'sales_2024', createdAt: '2026-01-02T03:04:05.000Z', users: 2 },
      { name: 'scans', kind: 'path', path: 'radiology/scans', createdAt: '2026-01-02T03:04:05.000Z', users: 0 },
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
    expect(datasets.grant('ada', 'nope')).toMatchObject({ ok: false, code: 'unknown_dataset', reason: expect.stringContaining('no dataset named nope') });
    expect(datasets.grant('ada', 'sales')).toEqual({ ok: true, value: { created: true } });
    expect(datasets.grant('ada', 'sales')).toEqual({ ok: true, value: { created: false } });
    expect(datasets.datasetsOf('ada')).toEqual([{ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' }]);
    expect(datasets.grants()).toEqual([{ user: 'ada', dataset: 'sales', grantedAt: '2026-01-02T03:04:05.000Z' }]);
    expect(datasets.revoke('alan', 'sales')).toMatchObject({ ok: false, code: 'not_granted', reason: 'alan has no grant on dataset sales' });
    expect(datasets.revoke('ada', 'sales')).toEqual({ ok: true });
    expect(datasets.datasetsOf('ada')).toEqual([]);
  });

  it('removing a dataset removes its grants', () => {
    const { datasets } = stores();
    datasets.add({ name: 'sales', kind: 'mysql', mysqlDatabase: 'sales' });
    datasets.grant('ada', 'sales');
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
    datasets.markDropped('run0000001');
    datasets.recordBytes('run0000001', { fromServer: 1234, toServer: 56 });
    expect(datasets.openAccesses()).toEqual([]);
    expect(datasets.runsGiven('sales')).toEqual([
      expect.objectContaining({ runId: 'run0000001', user: 'ada', mysqlUser: 'secd_run0000001', bytesFromServer: 1234, bytesToServer: 56, droppedAt: '2026-01-02T03:04:05.000Z' }),
    ]);
  });
});
